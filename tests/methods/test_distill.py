"""Distillation methods: the student's projection against the frozen teacher's features of the
same view, the teacher never trained, SEED's queue filled with teacher features."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssl_jax.data import make_digits_source
from ssl_jax.encoder import convert_input, load_export
from ssl_jax.losses import embedding_cosine, embedding_mse, l2_normalize, seed_loss
from ssl_jax.methods import get_method
from ssl_jax.methods.networks import mlp_head
from ssl_jax.methods.registry import make_views
from tests.programs.tiny import tiny_pretrain_config

# The tiny shared run (tests/conftest.py, 8 px digits, width 4) is the teacher; the student
# is a width-2 ResNet-18 of 8 px views.
STUDENT = {"model.width": 2, "augment.recipe": "crop_flip", "method.proj_hidden_dim": 8}


def distill_config(name, teacher, **fields):
    overrides = {"method.name": name, **STUDENT, **fields}
    if name == "seed":
        overrides["method.queue_length"] = 32
    config = tiny_pretrain_config(**overrides)
    config.unlock()
    config.teacher = teacher
    config.teacher_step = None
    config.lock()
    return config


@pytest.fixture(scope="module")
def batch():
    images, _ = make_digits_source("train", image_size=8).get(np.arange(16))
    return {"images": jnp.asarray(images)}


def student_and_teacher(method, config, params, state, batch, key, teacher_run):
    """``(s, t)`` rebuilt by hand: the student's projection and the teacher export's
    features of the method's one view."""
    x = make_views(config.augment, config.method.name)(batch["images"], key)
    export = load_export(teacher_run)
    t = export.backbone.apply(
        export.arrays["params"], export.arrays["batch_stats"],
        convert_input(x, export.spec["input"]), train=False,
    )[0]  # fmt: skip
    stats = state["batch_stats"]
    f, _ = method.backbone.apply(
        params["backbone"], stats["backbone"], convert_input(x, method.input_spec), train=True
    )
    head = mlp_head(method.backbone.feature_dim, 8, export.feature_dim)
    s, _ = head.apply(params["projector"], stats["projector"], f, train=True)
    return np.asarray(s), np.asarray(t)


SLOW = pytest.mark.slow  # a student step each to compile (about 15 s); seed runs by default


@pytest.mark.parametrize(
    "name", [pytest.param("mse", marks=SLOW), pytest.param("cosine", marks=SLOW), "seed"]
)
def test_loss_compares_the_student_projection_with_the_teachers_features(name, pretrained, batch):
    config = distill_config(name, pretrained[0])
    method = get_method(config)
    assert method.network == "student"
    params, state = jax.jit(method.init)(jax.random.key(0))
    assert "teacher" not in params and "teacher" not in state  # the teacher is no parameter
    frozen = method.load_frozen(None)
    key = jax.random.key(1)
    value, (new_state, metrics) = jax.jit(method.loss)(params, state, batch, key, 0, frozen)
    s, t = student_and_teacher(method, config, params, state, batch, key, pretrained[0])
    if name == "mse":
        want = embedding_mse(s, t)
    elif name == "cosine":
        want = embedding_cosine(s, t)
    else:
        want = seed_loss(s, t, state["queue"][0])
        # The step's teacher features go into the queue after the loss reads it.
        np.testing.assert_allclose(new_state["queue"][0, :16], l2_normalize(t), atol=1e-5)
        assert int(new_state["queue_ptr"]) == 16
    np.testing.assert_allclose(float(value), float(want), rtol=1e-4)
    assert -1.0 <= float(metrics["teacher_cosine"]) <= 1.0

    # Gradients reach the student only: the frozen input is a separate, non-differentiated
    # argument, and its own gradient (were one asked) is zero.
    grad_frozen = jax.grad(lambda f: method.loss(params, state, batch, key, 0, f)[0])(frozen)
    assert all(float(jnp.abs(g).max()) == 0.0 for g in jax.tree.leaves(grad_frozen))


def test_a_missing_teacher_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="config.teacher is empty"):
        get_method(distill_config("mse", ""))
    with pytest.raises(Exception, match="No checkpoint found under"):
        get_method(distill_config("mse", str(tmp_path / "nowhere")))
