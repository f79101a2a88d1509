"""The online linear probe: a linear classifier trained alongside pretraining.

DeepMind's BYOL and solo-learn report this cheap signal: a linear layer on stop-gradient
features of the encoder being trained, fitted with the labels of the training batches by the
run's own optimizer, so its accuracy follows the representation step by step at almost no cost
(one eval-mode forward pass of the batch, no backward pass through the encoder).

:func:`with_online_linear` wraps any method: its params gain ``"online_linear"`` (``kernel``
``(D, C)`` and ``bias`` ``(C,)``, zero at init), and its loss adds the classifier's softmax
cross-entropy on ``stop_gradient(encode(export, images))``: the features downstream programs
see (the export network, eval-mode BatchNorm, the export's deterministic resize and
normalisation of the uint8 batch). The encoder gets exactly zero gradient from the probe; the
classifier gets gradient only from the probe. Logged per step: ``online_linear_loss`` and
``online_linear_train_top1`` (%, on the batch, before the update); the logged ``loss`` is the
sum being minimised. :class:`OnlineLinearEvaluator` reports ``online_linear_top1`` on the test
split. Its parameter group is ``online_linear`` (``optim.param_groups``). A program applies the
wrapper from its config with :func:`ssl_jax.evaluators.registry.maybe_with_online_linear`.
"""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from ssl_jax.evaluators.features import SplitFeatures

PART = "online_linear"


def _split(params: dict) -> tuple[dict, dict]:
    inner = {k: v for k, v in params.items() if k != PART}
    return inner, params[PART]


def with_online_linear(method, *, num_classes: int, encode):
    """``method`` with an online linear probe of ``num_classes`` classes on ``encode(export,
    images_uint8) -> (N, D)`` features of its export (see the module docstring)."""
    if num_classes < 2:
        raise ValueError(f"The online linear probe needs >= 2 classes, got {num_classes}.")
    dim = method.backbone.feature_dim

    def init(key):
        params, state = method.init(key)
        probe = {
            "kernel": jnp.zeros((dim, num_classes), jnp.float32),
            "bias": jnp.zeros((num_classes,), jnp.float32),
        }
        return {**params, PART: probe}, state

    def loss(params, method_state, batch, key, step, frozen):
        if "labels" not in batch:
            raise ValueError(
                "The online linear probe needs labelled batches ('labels'); remove the "
                "online_linear entry from config.evals for unlabelled data."
            )
        inner, probe = _split(params)
        value, (new_state, metrics) = method.loss(inner, method_state, batch, key, step, frozen)
        export = method.export(inner, method_state)
        features = jax.lax.stop_gradient(encode(export, batch["images"]))
        logits = features @ probe["kernel"] + probe["bias"]
        labels = batch["labels"]
        ce = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels))
        top1 = 100.0 * jnp.mean(jnp.argmax(logits, axis=-1) == labels)
        metrics = {**metrics, "online_linear_loss": ce, "online_linear_train_top1": top1}
        return value + ce, (new_state, metrics)

    def update_state(params, method_state, step):
        return method.update_state(_split(params)[0], method_state, step)

    def export(params, method_state):
        return method.export(_split(params)[0], method_state)

    project_params = None
    if method.project_params is not None:

        def project_params(params):
            inner, probe = _split(params)
            return {**method.project_params(inner), PART: probe}

    return method._replace(
        init=init,
        loss=loss,
        update_state=update_state,
        export=export,
        project_params=project_params,
    )


class OnlineLinearEvaluator:
    """Yields ``top1``: the online probe's accuracy (%) on the test split."""

    def __init__(self, entry: ml_collections.ConfigDict, features: SplitFeatures):
        self.cfg = entry
        self.features = features
        features.source("test")  # a missing split fails when built

    def __call__(self, params) -> dict:
        bank = self.features.bank("test", batch_size=self.cfg.batch_size)
        hits = _probe_hits(params[PART], bank)
        return {"top1": 100.0 * int(np.asarray(hits)) / bank.count}


@jax.jit
def _probe_hits(probe, bank):
    """Test examples the probe classifies right, the features left split over the devices."""
    logits = bank.features @ probe["kernel"] + probe["bias"]
    return jnp.sum(bank.mask & (jnp.argmax(logits, axis=-1) == bank.labels))
