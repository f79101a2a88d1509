import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssl_jax.export import load_export, make_input_spec, preprocess
from ssl_jax.method import Method
from ssl_jax.models import module_def, vit_tiny
from ssl_jax.programs.finetune_step import (
    get_head,
    make_classifier,
    make_logits_fn,
    supervised_view,
)

SPEC = make_input_spec(size=8, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3))
# A crop of the whole image, never flipped: the view is the evaluation preprocessing.
IDENTITY_VIEW = dict(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip_prob=0.0)


@pytest.fixture(scope="module")
def export(pretrained):
    """The shared tiny run's encoder (restored, not initialised: a jitted ResNet
    initialisation takes long to compile)."""
    return load_export(pretrained[0])


@pytest.fixture(scope="module")
def backbone(export):
    return export.backbone


def images_and_labels(n=8, size=8, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    return images, rng.integers(0, 5, n).astype(np.int32)


def start(head, export, key):
    """``(params, state)``: the export's backbone and a ``head`` with random (not zero)
    params, so that the logits differ."""
    head_params, head_stats = head.init(key)
    leaves, tree = jax.tree.flatten(head_params)
    keys = jax.random.split(key, len(leaves))
    leaves = [jax.random.normal(k, x.shape) for k, x in zip(keys, leaves, strict=True)]
    params = {"backbone": export.arrays["params"], "head": jax.tree.unflatten(tree, leaves)}
    return params, {"backbone": export.arrays["batch_stats"], "head": head_stats}


def numpy_smoothed_ce(logits, labels, num_classes, eps):
    log_p = logits - logits.max(1, keepdims=True)
    log_p -= np.log(np.exp(log_p).sum(1, keepdims=True))
    targets = (1 - eps) * np.eye(num_classes)[labels] + eps / num_classes
    return float(np.mean(-(targets * log_p).sum(1)))


def test_supervised_view_of_the_whole_image_is_the_evaluation_preprocessing():
    images, _ = images_and_labels(size=12)
    spec = {**SPEC, "size": 6}
    identity = jax.jit(lambda x, key: supervised_view(x, key, spec, **IDENTITY_VIEW))
    view = identity(images, jax.random.key(0))
    np.testing.assert_allclose(view, jax.jit(lambda x: preprocess(x, spec))(images), atol=1e-5)
    random = jax.jit(lambda x, key: supervised_view(x, key, spec))(images, jax.random.key(0))
    assert random.shape == (8, 6, 6, 3) and not np.allclose(random, view)


def test_loss_is_the_smoothed_cross_entropy_of_the_network_on_the_view(backbone, export):
    images, labels = images_and_labels()
    head_def = get_head("linear", backbone.feature_dim, 5)
    clf = make_classifier(
        backbone, SPEC, num_classes=5, head=head_def, label_smoothing=0.1, **IDENTITY_VIEW
    )
    params, state = start(head_def, export, jax.random.key(1))
    batch = {"images": jnp.asarray(images), "labels": jnp.asarray(labels)}
    loss = jax.jit(clf.loss)
    value, (new_state, metrics) = loss(params, state, batch, jax.random.key(2), 0, None)

    x = preprocess(images, SPEC)
    features, stats = backbone.apply(params["backbone"], state["backbone"], x, train=True)
    head = jax.device_get(params["head"]["linear"])
    logits = np.asarray(features) @ head["kernel"][...] + head["bias"][...]
    np.testing.assert_allclose(value, numpy_smoothed_ce(logits, labels, 5, 0.1), rtol=1e-5)
    np.testing.assert_allclose(metrics["train_top1"], 100 * np.mean(logits.argmax(1) == labels))
    for a, b in zip(jax.tree.leaves(new_state["backbone"]), jax.tree.leaves(stats), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)  # BatchNorm in train mode

    # Eval-mode logits: the running statistics, the same preprocessing.
    arrays = {"params": params, "method_state": state}
    eval_features, _ = backbone.apply(params["backbone"], state["backbone"], x, train=False)
    want = np.asarray(eval_features) @ head["kernel"][...] + head["bias"][...]
    logits_fn = make_logits_fn(backbone, head_def, SPEC)
    np.testing.assert_allclose(jax.jit(logits_fn)(arrays, batch["images"]), want, atol=1e-5)
    assert isinstance(clf, Method) and clf.input_spec == SPEC


def test_classifier_rejects_bad_hyperparameters(backbone):
    with pytest.raises(ValueError, match="label_smoothing"):
        make_classifier(backbone, SPEC, num_classes=5, label_smoothing=1.0)
    with pytest.raises(ValueError, match="cutmix_alpha"):
        make_classifier(backbone, SPEC, num_classes=5, cutmix_alpha=-0.5)
    with pytest.raises(ValueError, match="at least 2 classes"):
        make_classifier(backbone, SPEC, num_classes=1)
    with pytest.raises(ValueError, match="finetune.head='mlp' is not a head"):
        get_head("mlp", 32, 5)


def test_bn_linear_head_normalises_features_by_the_batch_in_training_and_running_stats_in_eval():
    rng = np.random.default_rng(0)
    features = (100.0 * rng.normal(size=(16, 6)) + 30.0).astype(np.float32)  # a large norm
    head = get_head("bn_linear", 6, 3)
    params, stats = head.init(jax.random.key(0))
    kernel = rng.normal(size=(6, 3)).astype(np.float32)
    params["linear"]["kernel"] = jnp.asarray(kernel)
    train = jax.jit(lambda p, s, x: head.apply(p, s, x, train=True))
    logits, new_stats = train(params, stats, features)
    normed = (features - features.mean(0)) / np.sqrt(features.var(0) + 1e-5)
    np.testing.assert_allclose(logits, normed @ kernel, rtol=1e-4, atol=1e-4)
    mean = jax.device_get(new_stats["norm"]["mean"][...])
    np.testing.assert_allclose(mean, 0.1 * features.mean(0), rtol=1e-5)  # momentum 0.9 from 0
    eval_logits, _ = head.apply(params, new_stats, features, train=False)
    var = jax.device_get(new_stats["norm"]["var"][...])
    want = (features - mean) / np.sqrt(var + 1e-5) @ kernel
    np.testing.assert_allclose(eval_logits, want, rtol=1e-4, atol=1e-3)
    assert jax.tree.leaves(params["linear"]) and "norm" not in params  # affine-free: no params


@pytest.mark.slow  # three ViT losses to compile (about 5 s)
def test_backbone_rngs_give_a_vit_drop_path_in_training_only():
    def tiny_vit(rate):
        return module_def(
            lambda rngs: vit_tiny(
                rngs=rngs, depth=2, embed_dim=16, num_heads=2, patch_size=4, img_size=8,
                drop_path_rate=rate,
            )
        )  # fmt: skip

    plain = make_classifier(tiny_vit(0.0), SPEC, num_classes=5, **IDENTITY_VIEW)
    dropped = make_classifier(
        tiny_vit(0.9), SPEC, num_classes=5, backbone_rngs=True, **IDENTITY_VIEW
    )
    params, state = plain.init(jax.random.key(0))
    head = jax.tree.map(lambda x: jax.random.normal(jax.random.key(3), x.shape), params["head"])
    params = {**params, "head": head}  # not the zero-initialised head: the logits differ
    images, labels = images_and_labels()
    batch = {"images": jnp.asarray(images), "labels": jnp.asarray(labels)}
    arrays = {"params": params, "method_state": state}

    def loss(clf, key):
        return float(jax.jit(clf.loss)(params, state, batch, jax.random.key(key), 0, None)[0])

    assert loss(dropped, 1) == loss(dropped, 1)  # seeded
    assert loss(dropped, 1) != loss(dropped, 2) and loss(plain, 1) == loss(plain, 2)
    assert loss(dropped, 1) != loss(plain, 1)
    head_def = get_head("linear", plain.backbone.feature_dim, 5)
    np.testing.assert_allclose(
        jax.jit(make_logits_fn(dropped.backbone, head_def, SPEC))(arrays, batch["images"]),
        jax.jit(make_logits_fn(plain.backbone, head_def, SPEC))(arrays, batch["images"]),
    )  # evaluation is deterministic: no drop path
    with pytest.raises(ValueError, match="rngs"):  # without the flag the ViT asks for a key
        make_classifier(tiny_vit(0.9), SPEC, num_classes=5).loss(
            params, state, batch, jax.random.key(1), 0, None
        )
