"""Downstream code reaches an encoder only through its export (``ssl_jax.export``).

DESIGN.md: downstream programs never import ``ssl_jax.methods`` nor read a pretraining
augment recipe; the export's spec says what input the encoder expects. Only pretraining and
distillation, which build a method and write the spec, may. The export package itself is
held to the same rule.
"""

import ast
import os
import pathlib
import subprocess
import sys

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "ssl_jax"
FORBIDDEN = ("ssl_jax.methods", "ssl_jax.augment.from_config")
DOWNSTREAM = sorted(
    path
    for path in [
        *PACKAGE.glob("programs/*.py"),
        *PACKAGE.glob("evaluators/*.py"),
        *PACKAGE.glob("export/*.py"),
    ]
    if path.name not in ("pretrain.py", "distill.py")  # the programs that build a method
)


def imported_modules(source: str) -> set[str]:
    """Every module an ``import`` or ``from ... import`` statement of ``source`` names,
    including ``from package import module`` forms (``from ssl_jax import methods``)."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def forbidden_imports(source: str, forbidden=FORBIDDEN) -> list[str]:
    return sorted(
        name
        for name in imported_modules(source)
        if any(name == f or name.startswith(f + ".") for f in forbidden)
    )


@pytest.mark.parametrize(
    "source",
    [
        "import ssl_jax.methods",
        "from ssl_jax.methods.views import eval_settings",
        "from ssl_jax import methods",
        "def f():\n    from ssl_jax.methods import get_method",
        "from ssl_jax.augment.from_config import eval_settings",
        "from ssl_jax.augment import from_config",
    ],
)
def test_the_check_finds_every_import_form(source):
    assert forbidden_imports(source), source


def test_the_check_allows_other_imports():
    assert not forbidden_imports("import ssl_jax.export\nfrom ssl_jax.augment import eval_view")


def test_downstream_modules_do_not_import_methods_or_the_augment_recipe():
    assert len(DOWNSTREAM) >= 8  # programs/{cli,common,knn,linear_probe,loop}, evaluators/...
    found = {
        str(path.relative_to(PACKAGE.parent)): forbidden_imports(path.read_text())
        for path in DOWNSTREAM
    }
    assert not {path: names for path, names in found.items() if names}
    assert "ssl_jax/export/load.py" in found


def test_downstream_modules_do_not_read_the_augment_section():
    """``<config>.augment`` is the pretraining recipe: downstream reads the spec's input."""
    readers = []
    for path in DOWNSTREAM:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr == "augment":
                readers.append(f"{path.name}:{node.lineno}")
    assert not readers


def test_loading_the_downstream_programs_loads_no_method():
    """Transitively too: no module they import pulls ``ssl_jax.methods`` in."""
    code = (
        "import sys\n"
        "import ssl_jax.export, ssl_jax.evaluators\n"
        "import ssl_jax.programs.knn, ssl_jax.programs.linear_probe\n"
        "import ssl_jax.programs.finetune\n"
        "import ssl_jax.programs.few_shot, ssl_jax.programs.cluster\n"
        "print(sorted(m for m in sys.modules if m.startswith('ssl_jax.methods')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=PACKAGE.parent,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
    )
    assert out.stdout.strip() == "[]", out.stdout
