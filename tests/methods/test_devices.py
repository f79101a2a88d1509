"""Every method: one device and eight devices give the same training trajectory.

The train step holds the state replicated and splits the batch over the ``data`` axis, so
batch-norm statistics, negatives, queues, centers and Sinkhorn codes are all computed over
the global batch. Three steps of the sharded step on 8 fake devices must give the losses and
the final method state (queues, centers, EMA targets, batch statistics) of 1 device.
"""

import functools
import importlib
import pkgutil

import jax
import numpy as np
import pytest

import tests.methods
from ssl_jax.data import get_source
from ssl_jax.data.loader import make_batch
from ssl_jax.methods import METHODS, get_method
from ssl_jax.methods.registry import DISTILL_METHODS
from ssl_jax.optim import make_optimizer, make_schedule
from ssl_jax.parallel import global_batch, make_mesh
from ssl_jax.train_step import make_init_fn, make_train_step, state_sharding
from tests.methods.test_dino_kd import dino_run, dino_teacher
from tests.methods.test_distill import classifier_teacher, distill_config
from tests.programs.tiny import tiny_pretrain_config

STEPS = 3
# Fixtures of tests/methods/test_distill.py and test_dino_kd.py used here too.
__all__ = ["classifier_teacher", "dino_run", "dino_teacher"]
TEACHERS = {"kd": "classifier_teacher", "dino_kd": "dino_teacher"}  # else: "pretrained"


@functools.cache
def device_configs() -> dict[str, dict]:
    """Each method's ``tiny_pretrain_config`` overrides for these runs, by name: the
    ``DEVICE_CONFIGS`` its own test module of ``tests/methods`` declares (found here, listed
    nowhere else; distillation methods' teacher is supplied by :func:`method_config`).
    Called at test time, when every module is imported (they import this one)."""
    found: dict[str, dict] = {}
    for info in pkgutil.iter_modules(tests.methods.__path__):
        module = importlib.import_module(f"tests.methods.{info.name}")
        for name, fields in getattr(module, "DEVICE_CONFIGS", {}).items():
            assert name not in found, f"DEVICE_CONFIGS[{name!r}] is declared twice"
            found[name] = {"method.name": name, **fields}
    return found


def trajectory(config, num_devices, workdir=None, *, fsdp=False, keep=None):
    """The losses of STEPS steps and the final method state (with ``keep``: the final
    TrainState's arrays, fetched to the host, under ``keep["state"]``)."""
    mesh = make_mesh(num_devices)
    schedule = make_schedule(config, steps_per_epoch=1, total_steps=STEPS)
    tx = make_optimizer(config.optim, schedule)
    method = get_method(config, total_steps=STEPS)
    sharding = state_sharding(method, tx, mesh, fsdp=fsdp, min_size=0)
    state = make_init_fn(method, tx, mesh, sharding)(config.seed)
    step = make_train_step(method, tx, schedule, mesh, sharding)
    source = get_source(config.data, "train", workdir=workdir)  # digits, or a text corpus
    frozen = None
    if method.load_frozen is not None:  # ClusterFit's k-means runs on the mesh, cached per run
        frozen = method.load_frozen(mesh, workdir=workdir, source=source)
    losses = []
    for i in range(STEPS):
        batch = global_batch(make_batch(source, np.arange(16 * i, 16 * (i + 1))), mesh)
        state, metrics = step(state, batch, frozen)
        losses.append(float(metrics["loss"]))
    # No recompilation after the first step. A second program usually means a weakly typed
    # leaf of the initial state (jnp.full(n, 0.5)) that the first update made strongly typed.
    assert step.compilations() == 1
    if keep is not None:
        keep["state"] = jax.device_get(state)
    return losses, jax.device_get(state.method_state)


def test_every_method_is_covered():
    missing = sorted(set(METHODS) - set(device_configs()))
    assert not missing, (
        f"{missing}: declare DEVICE_CONFIGS = {{name: tiny_pretrain_config overrides}} in the "
        "method's test module (tests/methods/test_<name>.py)"
    )
    assert sorted(device_configs()) == sorted(METHODS)


def method_config(name, request):
    if name in DISTILL_METHODS:
        fixture = TEACHERS.get(name, "pretrained")
        teacher = request.getfixturevalue(fixture)
        teacher = teacher[0] if fixture == "pretrained" else teacher
        fields = {"method.num_clusters": 5} if name == "clusterfit" else {}
        return distill_config(name, teacher, total_steps=STEPS, **fields)
    return tiny_pretrain_config(**{**device_configs()[name], "total_steps": STEPS})


@pytest.mark.slow  # every method x 2 meshes of a compiled ResNet step, several minutes
@pytest.mark.parametrize("name", sorted(METHODS))
def test_one_and_eight_devices_give_the_same_trajectory(name, request, tmp_path):
    config = method_config(name, request)
    one_losses, one_state = trajectory(config, 1, str(tmp_path / "one"))
    eight_losses, eight_state = trajectory(config, 8, str(tmp_path / "eight"))
    assert np.all(np.isfinite(one_losses)) and len(set(one_losses)) == STEPS
    # atol: SimSiam's loss (a negative cosine, in [-1, 1]) can sit near 0, where float32
    # reduction order alone moves it by ~5e-7 (CI: -0.0194286 vs -0.0194291, relative 2.3e-5).
    np.testing.assert_allclose(eight_losses, one_losses, rtol=2e-5, atol=2e-6)
    paths = jax.tree_util.tree_leaves_with_path(one_state)
    for (path, a), b in zip(paths, jax.tree.leaves(eight_state), strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5, err_msg=jax.tree_util.keystr(path))


@pytest.mark.slow  # two SimCLR trajectories to compile (about 30 s)
def test_a_bfloat16_backbone_follows_the_float32_trajectory_closely():
    """``model.dtype=bfloat16`` (mixed precision): the losses of 3 steps stay within 2% of
    float32's, the BatchNorm statistics stay float32, and the step compiles once (trajectory
    checks it)."""
    want, _ = trajectory(tiny_pretrain_config(total_steps=STEPS), 1)
    config = tiny_pretrain_config(**{"model.dtype": "bfloat16", "total_steps": STEPS})
    got, state = trajectory(config, 1)
    np.testing.assert_allclose(got, want, rtol=0.02)
    assert got != want  # it did compute in bfloat16
    assert all(x.dtype == np.float32 for x in jax.tree.leaves(state))
