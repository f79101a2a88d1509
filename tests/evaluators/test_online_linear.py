"""The online linear probe: a classifier on stop-gradient features, trained with the method."""

from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssl_jax.evaluators import with_online_linear
from ssl_jax.method import Method, no_state_update

N, D, C = 6, 4, 3


def inner_method() -> Method:
    """Params ``w`` (D, D); features ``encode(export, x) = x_flat @ w``; loss ``sum(w^2)``."""

    def loss(params, method_state, batch, key, step, frozen):
        del batch, key, step, frozen
        return jnp.sum(params["w"] ** 2), (method_state, {"inner": jnp.float32(1.0)})

    return Method(
        name="inner",
        init=lambda key: ({"w": jax.random.normal(key, (D, D))}, {}),
        loss=loss,
        update_state=no_state_update,
        export=lambda params, state: {"params": params["w"], "batch_stats": {}},
        backbone=SimpleNamespace(feature_dim=D),
        project_params=lambda params: {"w": params["w"] / jnp.linalg.norm(params["w"])},
    )


def encode(export, images):
    return images.reshape(images.shape[0], -1).astype(jnp.float32) / 255.0 @ export["params"]


@pytest.fixture(scope="module")
def setup():
    method = with_online_linear(inner_method(), num_classes=C, encode=encode)
    params, state = method.init(jax.random.key(0))
    rng = np.random.default_rng(0)
    batch = {
        "images": jnp.asarray(rng.integers(0, 256, (N, 2, 2, 1)), jnp.uint8),
        "labels": jnp.asarray([0, 1, 2, 0, 1, 2], jnp.int32),
    }
    params = {
        **params,
        "online_linear": {
            "kernel": jnp.asarray(rng.normal(size=(D, C)), jnp.float32),
            "bias": jnp.asarray(rng.normal(size=(C,)), jnp.float32),
        },
    }
    return method, params, state, batch


def test_init_adds_a_zero_classifier_of_the_feature_width():
    method = with_online_linear(inner_method(), num_classes=C, encode=encode)
    params, _ = method.init(jax.random.key(0))
    assert params["online_linear"]["kernel"].shape == (D, C)
    assert not np.any(params["online_linear"]["kernel"]) and not np.any(
        params["online_linear"]["bias"]
    )
    with pytest.raises(ValueError, match=">= 2 classes"):
        with_online_linear(inner_method(), num_classes=1, encode=encode)


def test_loss_adds_the_probes_cross_entropy_and_leaves_the_encoder_gradient_alone(setup):
    method, params, state, batch = setup
    grad_fn = jax.value_and_grad(method.loss, has_aux=True)
    (value, (_, metrics)), grads = grad_fn(params, state, batch, jax.random.key(1), 0, None)
    # NumPy reference: softmax cross-entropy of f W + b, f = stop_gradient(features).
    f = np.asarray(batch["images"]).reshape(N, -1) / 255.0 @ np.asarray(params["w"])
    logits = f @ np.asarray(params["online_linear"]["kernel"]) + np.asarray(
        params["online_linear"]["bias"]
    )
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    y = np.asarray(batch["labels"])
    ce = -np.mean(np.log(p[np.arange(N), y]))
    np.testing.assert_allclose(metrics["online_linear_loss"], ce, rtol=1e-5)
    np.testing.assert_allclose(value, np.sum(np.asarray(params["w"]) ** 2) + ce, rtol=1e-5)
    np.testing.assert_allclose(
        metrics["online_linear_train_top1"], 100 * np.mean(logits.argmax(1) == y), rtol=1e-6
    )
    assert metrics["inner"] == 1.0
    onehot = np.eye(C)[y]
    np.testing.assert_allclose(
        grads["online_linear"]["kernel"], f.T @ (p - onehot) / N, rtol=1e-4, atol=1e-6
    )
    np.testing.assert_allclose(grads["online_linear"]["bias"], (p - onehot).mean(0), atol=1e-6)
    # The encoder's gradient is the inner loss's alone (2 w): exactly none from the probe.
    np.testing.assert_array_equal(grads["w"], 2 * params["w"])


def test_export_update_and_projection_ignore_the_probe(setup):
    method, params, state, _ = setup
    assert method.export(params, state)["params"] is params["w"]
    projected = method.project_params(params)
    assert projected["online_linear"] is params["online_linear"]
    np.testing.assert_allclose(np.linalg.norm(projected["w"]), 1.0, rtol=1e-6)
    assert method.update_state(params, state, 0) == state


def test_unlabelled_batches_are_a_clear_error(setup):
    method, params, state, batch = setup
    with pytest.raises(ValueError, match="needs labelled batches"):
        method.loss(params, state, {"images": batch["images"]}, jax.random.key(1), 0, None)


def test_evaluator_entries_are_validated_and_scheduled():
    import ml_collections

    from ssl_jax.evaluators.registry import active_entries

    def evals(**entries):
        return ml_collections.ConfigDict(entries)

    knn = dict(type="knn", every_steps=5, k=(5,), temperature=0.07, batch_size=8)
    assert list(active_entries(evals(a=knn, b={**knn, "every_steps": 0}))) == ["a"]
    with pytest.raises(ValueError, match=r"evals.a.type='knm' is not an evaluator type"):
        active_entries(evals(a={**knn, "type": "knm"}))
    with pytest.raises(ValueError, match="every_steps must be >= 0"):
        active_entries(evals(a={**knn, "every_steps": -1}))
    probe = dict(type="online_linear", every_steps=2, batch_size=8)
    with pytest.raises(ValueError, match="At most one online_linear"):
        active_entries(evals(a=probe, b=probe))
