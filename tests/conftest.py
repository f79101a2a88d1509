"""Test setup: 8 fake CPU devices before the JAX backend starts, so sharding is tested anywhere."""

import atexit
import os
import shutil
import tempfile

import pytest

# Tests check values, not speed: XLA's backend optimisations off compile the suite's many
# small programs faster (the default run 9 min 57 s -> 7 min 35 s on 2 CPU cores).
os.environ.setdefault(
    "XLA_FLAGS", "--xla_force_host_platform_device_count=8 --xla_backend_optimization_level=0"
)
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402

jax.config.update("jax_num_cpu_devices", 8)

# Identical programs (the tiny pretraining runs of tests/programs) compile once per session.
_CACHE = tempfile.mkdtemp(prefix="ssl_jax_test_xla_cache_")
atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)
jax.config.update("jax_compilation_cache_dir", _CACHE)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
# Compressed .npz files are extracted to a cache to be memory-mapped: not into ~/.cache.
_DATA_CACHE = tempfile.mkdtemp(prefix="ssl_jax_test_data_cache_")
atexit.register(shutil.rmtree, _DATA_CACHE, ignore_errors=True)
os.environ.setdefault("SSL_JAX_CACHE", _DATA_CACHE)


@pytest.fixture(scope="session")
def pretrained(tmp_path_factory):
    """``(workdir, results)`` of a 6-step tiny SimCLR run (tests/programs/tiny.py) with kNN
    and online linear probe evaluations at steps 3 and 6 and checkpoints at 2, 4 and 6.
    Shared, read-only, by the program and encoder tests: copy it before changing anything."""
    from ssl_jax.programs import pretrain
    from tests.programs.tiny import tiny_pretrain_config

    workdir = str(tmp_path_factory.mktemp("run"))
    config = tiny_pretrain_config(
        **{
            "total_steps": 6,
            "evals.knn.every_steps": 3,
            "evals.knn.k": (5, 20),
            "evals.online_linear.every_steps": 3,
        }
    )
    results = pretrain.run(config, workdir)
    return workdir, results


# The slow cases of the methods added last (their 1-vs-8-device trajectories, short runs,
# PyTorch equality of imported weights): `pytest -m extended` runs them; CI's slow job leaves
# them out to stay within its time (.ci/run), so run them before landing a change near them.
EXTENDED_METHODS = {
    "data2vec", "dino_kd", "dinov2", "electra", "ibot", "ijepa", "lejepa", "mlm", "mmcr", "msn",
    "simmim", "tico", "wmse",
}  # fmt: skip
EXTENDED_FILES = {
    "tests/methods/test_dinov2.py", "tests/methods/test_electra.py", "tests/methods/test_ibot.py",
    "tests/methods/test_ijepa.py", "tests/methods/test_lejepa.py", "tests/methods/test_msn.py",
    "tests/pretext/test_block_masks.py", "tests/programs/test_text_pretrain.py",
    "tests/weights/test_convert.py",
}  # fmt: skip


def pytest_collection_modifyitems(config, items):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for item in items:
        if item.get_closest_marker("slow") is None:
            continue
        path = os.path.relpath(str(item.path), root)
        param = getattr(getattr(item, "callspec", None), "params", {}).get("name")
        device_case = path == "tests/methods/test_devices.py" and param in EXTENDED_METHODS
        if path in EXTENDED_FILES or device_case:
            item.add_marker(pytest.mark.extended)
