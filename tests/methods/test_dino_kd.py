"""Distillation from a DINO-family teacher's prototype head: the export carries the teacher's
[CLS] head, center and temperature (spec head ``kind: "prototypes"``), ``dino_kd`` learns its
centred (or Sinkhorn-Knopp) prototype distribution, and the teacher receives no gradient."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssl_jax.augment import IMAGENET_MEAN, IMAGENET_STD
from ssl_jax.checkpoint import Checkpointer
from ssl_jax.data import make_digits_source
from ssl_jax.export import (
    check_head,
    check_spec,
    convert_input,
    load_export,
    make_prototype_head_spec,
    make_spec,
    read_spec,
)
from ssl_jax.losses import prototype_kd_loss
from ssl_jax.methods import get_method
from ssl_jax.methods.networks import dino_head
from ssl_jax.methods.registry import make_views
from ssl_jax.programs import distill
from tests.methods.test_dinov2 import DINOV2
from tests.methods.test_ibot import IBOT
from tests.programs.tiny import tiny_pretrain_config

TOTAL, STEP, OUT = 10, 2, 32
# One-block ViTs (fast to compile): a width-16 teacher, a width-8 student.
VIT = {"model.backbone": "vit_tiny", "model.patch_size": 2, "model.img_size": 8}
VIT.update({"model.depth": 1, "model.num_heads": 2, "model.embed_dim": 16})
STUDENT = {**VIT, "model.embed_dim": 8, "augment.recipe": "crop_flip"}
DINO = {
    **VIT,
    "method.name": "dino",
    "method.out_dim": OUT,
    "method.warmup_teacher_temp": 0.04,
    "method.teacher_temp": 0.07,
    "method.warmup_teacher_temp_steps": 4,
    "augment.recipe": "dino",
    "augment.crop_scale": (),
    "augment.global_crop_scale": (0.5, 1.0),
    "augment.local_crop_size": 4,
    "augment.num_local_crops": 2,
    "export.network": "target",
}
# tests/methods/test_devices.py runs this 1 and 8 devices, dino_teacher the teacher.
DEVICE_CONFIGS = {"dino_kd": {}}
PROTOTYPES = dict(
    out_dim=OUT, hidden_dim=16, bottleneck_dim=8, num_layers=3, use_bn=False,
    norm_last_layer=True, teacher_temp=0.05,
)  # fmt: skip


def student_config(teacher, **fields):
    config = tiny_pretrain_config(**{"method.name": "dino_kd", **STUDENT, **fields})
    config.unlock()
    config.teacher = teacher
    config.teacher_step = None
    config.lock()
    return config


def _save(workdir, step, encoder, spec):
    ckpt = Checkpointer(workdir, async_save=False)
    state = {"step": jnp.zeros((), jnp.int32)}
    ckpt.save(step, state=state, encoder=encoder, encoder_spec=spec, config={}, data={}, force=True)
    ckpt.close()


@pytest.fixture(scope="session")  # shared with test_devices.py and test_protocol.py
def dino_run(tmp_path_factory):
    """A DINO method's export written as pretraining writes it (its ``export`` and
    ``head_spec`` at step 2), from a state whose teacher differs from the student and whose
    center is not zero; and a copy of it without the head, and one with Sinkhorn-Knopp
    centering."""
    config = tiny_pretrain_config(**DINO)
    method = get_method(config, total_steps=TOTAL)
    params, state = method.init(jax.random.key(0))
    noise = jax.random.key(5)
    target = jax.tree.map(lambda x: x + 0.1 * jax.random.normal(noise, x.shape), state["target"])
    center = jax.random.normal(jax.random.key(6), (OUT,))
    state = {**state, "target": target, "center": center}
    input_spec = {"size": 8, "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}
    spec = make_spec(
        config.model, input=input_spec, network=method.network, method="dino",
        feature_dim=method.backbone.feature_dim, step=STEP, head=method.head_spec(STEP),
    )  # fmt: skip
    encoder = method.export(params, state)
    root = tmp_path_factory.mktemp("dino")
    runs = {"dino": str(root / "dino"), "headless": str(root / "h"), "sk": str(root / "sk")}
    _save(runs["dino"], STEP, encoder, spec)
    bare = {k: encoder[k] for k in ("params", "batch_stats")}
    _save(runs["headless"], STEP, bare, {**spec, "head": False})
    sk_head = {**spec["head"], "centering": "sinkhorn_knopp", "sinkhorn_iters": 3}
    sk_arrays = {**bare, "head": {k: encoder["head"][k] for k in ("params", "batch_stats")}}
    _save(runs["sk"], STEP, sk_arrays, {**spec, "head": sk_head})
    return method, params, state, runs


@pytest.fixture(scope="session")
def dino_teacher(dino_run):
    """The directory of the DINO export with a prototype head (a teacher for dino_kd)."""
    return dino_run[3]["dino"]


@pytest.fixture(scope="module")
def images():
    return jnp.asarray(make_digits_source("train", image_size=8).get(np.arange(16))[0])


def softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def sinkhorn_np(t, eps, iters):
    """DINOv2's ``SinkhornKnoppTeacher.sinkhorn_knopp_teacher`` on one device, float64."""
    q = np.exp(t / eps).T  # (K, B)
    k, b = q.shape
    q /= q.sum()
    for _ in range(iters):
        q /= q.sum(axis=1, keepdims=True)
        q /= k
        q /= q.sum(axis=0, keepdims=True)
        q /= b
    return (q * b).T


def reference_loss(s, t, center, student_temp, teacher_temp, iters=0):
    """H(q, softmax(s / tau_s)) in float64 with DINO's or DINOv2's teacher targets q."""
    s, t = np.float64(s), np.float64(t)
    q = (
        sinkhorn_np(t, teacher_temp, iters)
        if center is None
        else softmax((t - center) / teacher_temp)
    )
    log_p = np.log(softmax(s / student_temp))
    return -np.mean(np.sum(q * log_p, axis=-1))


def test_prototype_kd_loss_matches_numpy():
    s, t = jax.random.normal(jax.random.key(0), (2, 6, 10))
    center = jax.random.normal(jax.random.key(1), (10,))
    got = prototype_kd_loss(s, t, center, student_temp=0.1, teacher_temp=0.04)
    np.testing.assert_allclose(got, reference_loss(s, t, np.float64(center), 0.1, 0.04), rtol=1e-5)
    t = 0.5 * t  # scores of DINOv2's range, so exp(t / eps) stays finite in NumPy
    got = prototype_kd_loss(s, t, None, student_temp=0.2, teacher_temp=0.07, sinkhorn_iters=3)
    np.testing.assert_allclose(got, reference_loss(s, t, None, 0.2, 0.07, 3), rtol=1e-5)
    with pytest.raises(ValueError, match="center .* or sinkhorn_iters"):
        prototype_kd_loss(s, t, None)
    with pytest.raises(ValueError, match=r"\(10,\) center"):
        prototype_kd_loss(s, t, jnp.zeros(3))


def test_the_prototype_head_spec_is_validated():
    proto = make_prototype_head_spec(**PROTOTYPES, centering="centering")
    assert proto["kind"] == "prototypes" and proto["sinkhorn_iters"] == 0
    spec = make_spec(
        {"backbone": "resnet18"}, input={"size": 8, "mean": [0.5] * 3, "std": [0.5] * 3},
        network="target", method="dino", feature_dim=32, step=1, head=proto,
    )  # fmt: skip
    assert check_spec(spec)["head"] == proto
    for head in (False, {"kind": "linear", "num_classes": 10}):  # the old heads are unchanged
        assert check_spec({**spec, "head": head})["head"] == head
    sk = make_prototype_head_spec(**PROTOTYPES, centering="sinkhorn_knopp", sinkhorn_iters=3)
    assert check_spec({**spec, "head": sk})["head"]["sinkhorn_iters"] == 3
    bad = {
        "centering=": {**proto, "centering": "mean"},
        "sinkhorn_iters must be a positive": {**sk, "sinkhorn_iters": 0},
        "is for centering='sinkhorn_knopp'": {**sk, "centering": "centering"},
        "teacher_temp must be > 0": {**sk, "teacher_temp": 0.0},
        "not a prototype head": {k: v for k, v in sk.items() if k != "out_dim"},
    }
    for message, head in bad.items():
        with pytest.raises(ValueError, match=message):
            check_spec({**spec, "head": head})


def test_the_export_restores_the_teachers_head_center_and_temperature(dino_run, images):
    method, _, state, runs = dino_run
    spec = read_spec(runs["dino"])
    assert spec["network"] == "target" and spec["head"]["centering"] == "centering"
    assert spec["head"]["out_dim"] == OUT
    # The warm-up schedule's value at the export's step (the authors' np.linspace, 4 steps).
    want_temp = np.linspace(0.04, 0.07, 4)[STEP]
    np.testing.assert_allclose(spec["head"]["teacher_temp"], want_temp, rtol=1e-6)
    export = load_export(runs["dino"])
    np.testing.assert_array_equal(export.arrays["head"]["center"], state["center"])
    # The teacher's logits from the export equal the pretraining teacher's forward pass.
    target, target_stats = state["target"], state["target_batch_stats"]
    x = convert_input(images.astype(jnp.float32) / 255.0, export.spec["input"])
    features, _ = method.backbone.apply(
        target["backbone"], target_stats["backbone"], x, train=False
    )
    head = dino_head(method.backbone.feature_dim, OUT, hidden_features=16, bottleneck_features=8)
    want, _ = head.apply(target["head"], target_stats["head"], features, train=False)
    np.testing.assert_allclose(export.logits(images), want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "fields, centering",
    [
        (IBOT, "centering"),
        (DINOV2, "sinkhorn_knopp"),
        ({**DINOV2, "method.centering": "centering"}, "centering"),
    ],
    ids=["ibot", "dinov2", "dinov2_centering"],
)
def test_ibot_and_dinov2_export_their_cls_prototype_head(fields, centering):
    config = tiny_pretrain_config(**{**fields, "export.network": "target"})
    method = get_method(config, total_steps=TOTAL)
    params, state = jax.eval_shape(method.init, jax.random.key(0))
    arrays = jax.eval_shape(method.export, params, state)
    head = check_head(method.head_spec(0))
    assert (head["kind"], head["centering"], head["out_dim"]) == ("prototypes", centering, 32)
    assert head["sinkhorn_iters"] == (3 if centering == "sinkhorn_knopp" else 0)
    assert head["teacher_temp"] == pytest.approx(config.method.warmup_teacher_temp)
    want = {"params", "batch_stats"} | ({"center"} if centering == "centering" else set())
    assert set(arrays["head"]) == want
    # The [CLS] head of the teacher, not the patch head.
    shapes = jax.tree.map(lambda x: x.shape, arrays["head"]["params"])
    assert shapes == jax.tree.map(lambda x: x.shape, state["target"]["head"])


@pytest.mark.parametrize("run", ["dino", pytest.param("sk", marks=pytest.mark.slow)])
def test_dino_kd_loss_matches_numpy_and_the_teacher_gets_zero_gradient(run, dino_run, images):
    runs = dino_run[3]
    config = student_config(runs[run])
    method = get_method(config)
    assert method.network == "student"
    assert (method.batch_terms == "") == (run == "dino")  # Sinkhorn-Knopp couples the batch
    params, state = method.init(jax.random.key(0))
    export = load_export(runs[run])
    frozen = export.arrays  # what method.load_frozen loads (load_teacher: load_export)
    assert ("center" in frozen["head"]) == (run == "dino")
    batch, key = {"images": images}, jax.random.key(1)

    def loss(params, frozen):
        return method.loss(params, state, batch, key, 0, frozen)

    (value, (_, metrics)), (grads, teacher_grads) = jax.jit(
        jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)
    )(params, frozen)
    assert all(not np.any(g) for g in jax.tree.leaves(teacher_grads))
    assert any(np.any(g) for g in jax.tree.leaves(grads["projector"]))
    # The same loss rebuilt by hand from the export and the student's parts.
    x = make_views(config.augment, "dino_kd")(images, key)
    t = export.logits(x)
    f, _ = method.backbone.apply(
        params["backbone"], state["batch_stats"]["backbone"],
        convert_input(x, method.input_spec), train=True,
    )  # fmt: skip
    head = dino_head(method.backbone.feature_dim, OUT, hidden_features=16, bottleneck_features=8)
    s, _ = head.apply(params["projector"], state["batch_stats"]["projector"], f, train=True)
    temp = export.spec["head"]["teacher_temp"]
    if run == "dino":
        want = reference_loss(s, t, np.float64(export.arrays["head"]["center"]), 0.1, temp)
    else:
        want = reference_loss(s, t, None, 0.1, temp, 3)
    np.testing.assert_allclose(value, want, rtol=1e-4)
    np.testing.assert_allclose(metrics["teacher_top1"], 100 * np.mean(s.argmax(1) == t.argmax(1)))


def test_kd_points_at_dino_kd_and_dino_kd_needs_a_prototype_head(dino_run):
    runs = dino_run[3]
    with pytest.raises(ValueError, match="method.name='dino_kd'"):
        get_method(student_config(runs["dino"], **{"method.name": "kd"}))
    with pytest.raises(ValueError, match="no head .*DINO, iBOT or DINOv2"):
        get_method(student_config(runs["headless"]))
    with pytest.raises(ValueError, match="student_temp must be > 0"):
        get_method(student_config(runs["dino"], **{"method.student_temp": 0.0}))


@pytest.mark.slow  # a distillation run of the student (about 15 s)
def test_the_distill_program_trains_a_student_on_the_teachers_prototypes(dino_run, tmp_path):
    workdir = str(tmp_path / "student")
    results = distill.run(student_config(dino_run[3]["dino"]), workdir)
    assert results["final_step"] == 4 and np.isfinite(results["loss"])
    spec = read_spec(workdir)
    assert (spec["method"], spec["network"], spec["head"]) == ("dino_kd", "student", False)
    assert spec["feature_dim"] == 8  # the student's width, not the teacher's (16)
