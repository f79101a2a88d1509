"""MkDocs hook: the measured results under benchmarks/results/ (tables, plots) are part of the
site at the same relative paths, so the docs link to the files the benchmarks write instead
of copies."""

from pathlib import Path

from mkdocs.structure.files import File

REPO = Path(__file__).resolve().parent.parent
RESULTS = "benchmarks/results"


def on_files(files, config):
    for path in sorted((REPO / RESULTS).rglob("*")):
        if path.suffix in (".png", ".md") and path.is_file():
            uri = path.relative_to(REPO).as_posix()
            files.append(
                File(uri, src_dir=str(REPO), dest_dir=config.site_dir, use_directory_urls=False)
            )
    return files
