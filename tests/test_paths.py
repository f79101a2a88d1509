"""Run paths are URIs: ``resolve``, and ``gs://`` workdirs, data and caches through epath.

``bucket`` stands in for Google Cloud Storage: epath's backend is mocked so that ``gs://X``
lives in a local folder (and refuses appends, as object stores do), while the current
directory is an empty folder: a ``gs:`` folder made there by ``os.path`` would show.
"""

import io
import json
import os
import pathlib
import tokenize

import numpy as np
import orbax.checkpoint as ocp
import pytest
from etils import epath
from etils.epath import gpath
from etils.epath.testing import mock_epath
from PIL import Image

from ssl_jax.checkpoint import checkpoint_dir
from ssl_jax.data.folder import FolderSource
from ssl_jax.data.npz import make_npz_source
from ssl_jax.data.subset import save_indices
from ssl_jax.methods.clusterfit import cached_centroids
from ssl_jax.metrics import MetricsWriter, read_metrics, truncate_after, write_results
from ssl_jax.paths import is_remote, resolve
from ssl_jax.plotting import plot_metrics

REPO = pathlib.Path(__file__).resolve().parent.parent
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_resolve_makes_local_paths_absolute_and_leaves_uris_alone(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert resolve("runs/a") == epath.Path(tmp_path / "runs" / "a")
    assert str(resolve("runs/../b/")) == str(tmp_path / "b")
    assert str(resolve("~/run")) == str(tmp_path / "home" / "run")
    assert isinstance(resolve("gs://b/x"), epath.Path)
    assert str(resolve("gs://b/x")) == "gs://b/x"
    assert str(resolve(epath.Path("s3://b/x/y"))) == "s3://b/x/y"
    assert is_remote("gs://b/x") and not is_remote(tmp_path)
    with pytest.raises(ValueError, match="unsupported URI scheme"):
        resolve("ftp://host/run")


def test_checkpoint_dir_of_a_uri_is_that_uri():
    assert checkpoint_dir("gs://bucket/run") == epath.Path("gs://bucket/run/checkpoints")
    assert str(checkpoint_dir("gs://bucket/run")) == "gs://bucket/run/checkpoints"


@pytest.fixture
def bucket(tmp_path, monkeypatch):
    """The local folder that holds ``gs://`` paths; the cwd is an empty folder."""
    root = tmp_path / "gcs"
    root.mkdir()
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)

    def local(path):
        path = os.fspath(path)
        return os.path.join(root, path[len("gs://") :]) if path.startswith("gs://") else path

    def one(fn, path, *args, **kwargs):
        return fn(local(path), *args, **kwargs)

    def two(fn, path, dst, *args, **kwargs):
        return fn(local(path), local(dst), *args, **kwargs)

    def open_(fn, path, mode):
        if os.fspath(path).startswith("gs://") and "a" in mode:
            raise AssertionError(f"appended to {path}: gcsfs would overwrite it")
        return fn(local(path), mode)

    def glob_(fn, pattern):
        if not os.fspath(pattern).startswith("gs://"):
            return fn(pattern)
        return ["gs://" + os.path.relpath(m, root) for m in fn(local(pattern))]

    # Without TensorFlow's backend, which would bypass the mock for gs://.
    monkeypatch.setattr(gpath, "_is_tf_installed", lambda: False)
    fns = dict.fromkeys(("exists", "isdir", "listdir", "makedirs", "mkdir", "rmtree"), one)
    fns.update(remove=one, stat=one, rename=two, replace=two, copy=two)
    with mock_epath(open=open_, glob=glob_, **fns):
        yield root
    assert os.listdir(cwd) == []  # nothing went to ./gs:/...


def test_metrics_results_plots_and_subsets_on_a_uri(bucket):
    writer = MetricsWriter("gs://b/run")
    writer.write(1, {"loss": 2.0})
    writer.write(2, {"loss": 1.0})
    assert read_metrics("gs://b/run/metrics.jsonl") == [
        {"step": 1, "loss": 2.0},
        {"step": 2, "loss": 1.0},
    ]
    MetricsWriter("gs://b/run").write(3, {"loss": 0.5})  # a resumed run keeps the rows
    truncate_after("gs://b/run/metrics.jsonl", 2)
    assert [r["step"] for r in read_metrics(bucket / "b/run/metrics.jsonl")] == [1, 2]

    assert write_results("gs://b/run", {"top1": 50.0}) == "gs://b/run/results.json"
    assert json.loads((bucket / "b/run/results.json").read_text()) == {"top1": 50.0}
    assert save_indices("gs://b/run", "subset", np.arange(3)) == "gs://b/run/subset.json"
    assert json.loads((bucket / "b/run/subset.json").read_text())["indices"] == [0, 1, 2]
    assert plot_metrics("gs://b/run") == "gs://b/run/loss.png"
    assert (bucket / "b/run/loss.png").read_bytes().startswith(PNG_MAGIC)


def test_tensorboard_needs_a_local_workdir():
    with pytest.raises(ValueError, match="local workdir only.*gs://b/run"):
        MetricsWriter("gs://b/run", tensorboard=True)


def test_clusterfit_centroid_cache_on_a_uri(bucket):
    about = {"teacher": "gs://b/teacher", "num_clusters": 2}
    centroids = np.eye(2, dtype=np.float32)
    path = "gs://b/run/clusterfit_centroids.npz"
    np.testing.assert_array_equal(cached_centroids(path, about, lambda: centroids), centroids)
    assert sorted(os.listdir(bucket / "b/run")) == ["clusterfit_centroids.npz"]
    again = cached_centroids(path, about, lambda: pytest.fail("the cache was not read"))
    np.testing.assert_array_equal(again, centroids)
    with pytest.raises(ValueError, match="holds ClusterFit centroids"):
        cached_centroids(path, {**about, "num_clusters": 3}, lambda: centroids)


def test_compare_reads_and_writes_uris(bucket):
    import ml_collections

    from ssl_jax.programs import compare

    for name, top1 in (("a", 60.0), ("b", 70.0)):
        results = {"program": "linear_probe", "protocol": "offline", "top1": top1}
        epath.Path(f"gs://b/runs/{name}/probe").mkdir(parents=True)
        epath.Path(f"gs://b/runs/{name}/probe/results.json").write_text(json.dumps(results))
    config = ml_collections.ConfigDict(
        dict(
            workdirs=(),
            glob="gs://b/runs/*/probe",
            metrics=compare.DEFAULT_METRICS,
            exclude=compare.DEFAULT_EXCLUDE,
            group_by="workdir",
            title="",
        )
    )
    out = compare.run(config, "gs://b/cmp")
    assert out["inputs"] == [f"gs://b/runs/{n}/probe/results.json" for n in ("a", "b")]
    assert [row["label"] for row in out["rows"]] == ["a/probe", "b/probe"]
    assert out["outputs"]["markdown"] == "gs://b/cmp/compare.md"
    assert (bucket / "b/cmp/compare.md").read_text() == out["table"]
    assert (bucket / "b/cmp/compare.png").read_bytes().startswith(PNG_MAGIC)
    with pytest.raises(ValueError, match="'\\*\\*', which only recurses on local paths"):
        compare.find_results(pattern="gs://b/**/probe")


def test_npz_and_image_folders_on_uris(bucket):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (4, 5, 5, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    np.savez(buffer, images=images, labels=np.arange(4))
    epath.Path("gs://b/npz").mkdir(parents=True)
    epath.Path("gs://b/npz/train_00.npz").write_bytes(buffer.getvalue())
    source = make_npz_source("gs://b/npz", "train")
    np.testing.assert_array_equal(source.get(np.arange(4))[0], images)

    for label in ("cat", "dog"):
        epath.Path(f"gs://b/images/{label}").mkdir(parents=True)
        for i in range(10):
            png = io.BytesIO()
            Image.fromarray(images[i % 4]).save(png, format="PNG")
            epath.Path(f"gs://b/images/{label}/{i}.png").write_bytes(png.getvalue())
    folder = FolderSource("gs://b/images", "train")
    assert folder.class_names == ["cat", "dog"] and len(folder) == 18
    got, labels = folder.get(np.array([0, 17]))
    np.testing.assert_array_equal(got, images[[0, 0]])  # cat/0.png; dog/8.png (sorted names)
    assert labels.tolist() == [0, 1]


class Sentinel(Exception):
    pass


def _program_and_config(name):
    if name == "pretrain":
        from ssl_jax.programs import pretrain
        from tests.programs.tiny import tiny_pretrain_config

        return pretrain, tiny_pretrain_config()
    from ssl_jax.programs import finetune
    from tests.programs.test_finetune import finetune_config

    return finetune, finetune_config("gs://b/source")


@pytest.mark.parametrize("name", ["pretrain", "finetune"])
def test_a_uri_workdir_reaches_orbax_unchanged(bucket, monkeypatch, name):
    program, config = _program_and_config(name)
    directories = []

    def spy(self, directory, *args, **kwargs):
        directories.append(directory)
        raise Sentinel

    monkeypatch.setattr(ocp.CheckpointManager, "__init__", spy)
    with pytest.raises(Sentinel):
        program.run(config, "gs://b/run")
    assert [str(d) for d in directories] == ["gs://b/run/checkpoints"]
    assert (bucket / "b" / "run").is_dir()


# Calls that only know local files, on a path: forbidden in ssl_jax/ (run paths are URIs).
LOCAL_ONLY_OS = {"path", "makedirs", "mkdir", "listdir", "scandir", "walk", "remove", "unlink"}
LOCAL_ONLY_OS |= {"rmdir", "rename", "replace"}
ALLOWED = {
    # resolve: the one place a local path is made absolute (URIs are left alone before it).
    ("ssl_jax/paths.py", "os.path.abspath(os.path.expanduser(path))"),
    # The default XLA compilation cache: a folder of this host, not a run path.
    ("ssl_jax/programs/cli.py", 'os.path.join(os.path.expanduser("~"), ".cache"'),
    # compare's local patterns (URIs go through epath): the standard glob keeps ** recursion.
    ("ssl_jax/programs/compare.py", "glob.glob(pattern, recursive=True)"),
}


def local_file_calls(source: str) -> list[tuple[int, str]]:
    """``(line, what)`` of each builtin ``open(``, ``os.path``/``os.makedirs``/... use,
    ``shutil``, ``pathlib`` and ``glob.glob`` in ``source``, strings and comments aside."""
    tokens = [
        t
        for t in tokenize.generate_tokens(io.StringIO(source).readline)
        if t.type in (tokenize.NAME, tokenize.OP)
    ]
    found = []
    for i, t in enumerate(tokens):
        before = tokens[i - 1].string if i else ""
        after = [u.string for u in tokens[i + 1 : i + 3]]
        if t.string == "open" and after[:1] == ["("] and before != ".":
            found.append((t.start[0], "open("))
        elif t.string == "os" and after[:1] == ["."] and after[1:] and after[1] in LOCAL_ONLY_OS:
            found.append((t.start[0], f"os.{after[1]}"))
        elif t.string in ("shutil", "pathlib") and before != ".":
            found.append((t.start[0], t.string))
        elif t.string == "glob" and after[:1] == ["."] and after[1:] in (["glob"], ["iglob"]):
            found.append((t.start[0], f"glob.{after[1]}"))
    return found


def test_the_scan_finds_local_file_calls_and_nothing_else():
    source = (
        'import shutil\nx = os.path.join(a, "b")\nwith open(p) as f:\n    pass\n'
        "os.makedirs(d)\nglob.glob(p)\n"
        '# open(p)\ns = "os.path"\npath.open("a")\nImage.open(p)\nos.fspath(p)\n'
    )
    assert [what for _, what in local_file_calls(source)] == [
        "shutil",
        "os.path",
        "open(",
        "os.makedirs",
        "glob.glob",
    ]


def test_no_local_only_file_calls_on_run_paths():
    """Run directories, exports and data may be ``gs://`` URIs: ``ssl_jax/`` reads and
    writes them through ``etils.epath`` (:mod:`ssl_jax.paths`), never through calls that
    only know local files. Each exception is in ``ALLOWED`` with its reason."""
    offending = []
    for file in sorted((REPO / "ssl_jax").rglob("*.py")):
        name = file.relative_to(REPO).as_posix()
        source = file.read_text()
        lines = source.splitlines()
        for line, what in local_file_calls(source):
            text = lines[line - 1].strip()
            if not any(name == f and snippet in text for f, snippet in ALLOWED):
                offending.append(f"{name}:{line}: {what} in {text!r}")
    assert not offending, "use etils.epath (ssl_jax.paths.resolve) instead:\n" + "\n".join(
        offending
    )
