"""Distillation methods: the student's projection against the frozen teacher's features (KD:
its head's logits) of the same view, the teacher never trained, SEED's queue filled with
teacher features."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssl_jax.checkpoint import Checkpointer
from ssl_jax.data import make_digits_source
from ssl_jax.export import convert_input, load_export, make_head
from ssl_jax.losses import embedding_cosine, embedding_mse, kd_loss, l2_normalize, seed_loss
from ssl_jax.methods import get_method
from ssl_jax.methods.networks import mlp_head
from ssl_jax.methods.registry import make_views
from tests.programs.tiny import tiny_pretrain_config

# The tiny shared run (tests/conftest.py, 8 px digits, width 4) is the teacher; the student
# is a width-2 ResNet-18 of 8 px views.
# tests/methods/test_devices.py runs these 1 and 8 devices, the tiny shared run the teacher
# (kd's: that run's export with a categorical head, the fixture classifier_teacher).
DEVICE_CONFIGS = {name: {} for name in ("clusterfit", "cosine", "kd", "mse", "seed")}
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
def classifier_teacher(pretrained, tmp_path_factory):
    """The tiny run's export with a 10-class ``bn_linear`` head of random weights, written as
    a checkpoint of its own: what a fine-tuning run exports (tests/programs/test_finetune.py
    checks that it does), without running one."""
    source = load_export(pretrained[0])
    head_spec = {"kind": "bn_linear", "num_classes": 10}
    params, stats = make_head(head_spec, source.feature_dim).init(jax.random.key(3))
    params = jax.tree.map(lambda x: jax.random.normal(jax.random.key(4), x.shape), params)
    encoder = {**source.arrays, "head": {"params": params, "batch_stats": stats}}
    workdir = str(tmp_path_factory.mktemp("classifier"))
    ckpt = Checkpointer(workdir, async_save=False)
    ckpt.save(
        source.step,
        state={"step": jnp.zeros((), jnp.int32)},
        encoder=encoder,
        encoder_spec={**source.spec, "method": "finetune", "head": head_spec},
        config={},
        data={},
        force=True,
    )
    ckpt.close()
    return workdir


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
    t = np.asarray(t)
    if export.head is not None:  # KD: the head's logits, BatchNorm with running statistics
        head, head_stats = export.arrays["head"]["params"], export.arrays["head"]["batch_stats"]
        normed = (t - head_stats["norm"]["mean"][...]) / np.sqrt(
            head_stats["norm"]["var"][...] + 1e-5
        )
        t = normed @ head["linear"]["kernel"][...] + head["linear"]["bias"][...]
    head = mlp_head(method.backbone.feature_dim, 8, t.shape[1])
    s, _ = head.apply(params["projector"], stats["projector"], f, train=True)
    return np.asarray(s), t


SLOW = pytest.mark.slow  # a student step each to compile (about 15 s); seed runs by default


@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=SLOW) for n in ("mse", "cosine", "kd")] + ["seed"],
)
def test_loss_compares_the_student_projection_with_the_teachers_features(
    name, pretrained, classifier_teacher, batch
):
    teacher = classifier_teacher if name == "kd" else pretrained[0]
    config = distill_config(name, teacher, **({"method.temperature": 2.0} if name == "kd" else {}))
    method = get_method(config)
    assert method.network == "student"
    params, state = jax.jit(method.init)(jax.random.key(0))
    assert "teacher" not in params and "teacher" not in state  # the teacher is no parameter
    frozen = method.load_frozen(None)
    key = jax.random.key(1)
    value, (new_state, metrics) = jax.jit(method.loss)(params, state, batch, key, 0, frozen)
    s, t = student_and_teacher(method, config, params, state, batch, key, teacher)
    if name == "kd":
        assert s.shape == t.shape == (16, 10)  # the student's projection to the teacher's classes
        want = kd_loss(s, t, temperature=2.0)
        agree = 100 * np.mean(s.argmax(1) == t.argmax(1))
        np.testing.assert_allclose(float(metrics["teacher_top1"]), agree)
    elif name == "mse":
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


def test_kd_from_a_teacher_without_a_categorical_head_names_the_alternatives(pretrained):
    with pytest.raises(ValueError, match=r"no categorical head.*fine-tuning run.*mse, cosine"):
        get_method(distill_config("kd", pretrained[0]))


def test_kd_with_a_non_positive_temperature_is_a_clear_error(classifier_teacher, batch):
    """The loss validates its temperature (once, for every caller), when it is traced."""
    method = get_method(distill_config("kd", classifier_teacher, **{"method.temperature": 0.0}))
    params, state = jax.eval_shape(method.init, jax.random.key(0))
    frozen = method.load_frozen(None)
    with pytest.raises(ValueError, match="kd_loss needs temperature > 0, got 0.0"):
        jax.eval_shape(method.loss, params, state, batch, jax.random.key(1), 0, frozen)
