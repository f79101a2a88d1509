"""A linear classifier trained on augmented views through the frozen encoder.

The ImageNet linear evaluation of SimCLR (Chen et al. 2020, appendix B.6), MoCo (He et al.
2020), BYOL (Grill et al. 2020, appendix C.1) and MAE (He et al. 2022, appendix A.1, "linear
probing"): the encoder is frozen in evaluation mode (running BatchNorm statistics, no
gradient), each step draws a batch of training images, makes one random resized crop +
horizontal flip of each on the device, recomputes their features and takes an SGD step
(momentum, cosine learning rate) on the cross-entropy of a linear head; the test split is
encoded without augmentation (the export's deterministic resize). With
``head_norm="batchnorm"`` the head is MAE's: a BatchNorm without affine parameters before the
linear layer (still a linear classifier: at test time it is a fixed affine map, foldable into
the weights), which makes one learning rate fit encoders whose features differ in scale (a
random and a trained encoder); ``"none"`` is SimCLR's, MoCo's and BYOL's plain linear layer,
whose learning rate then has to suit the feature scale (MoCo's is 30).

Views are made as a PIL/torchvision pipeline makes them: the crop is resized to the
encoder's input size with antialiased bilinear weights and rounded back to uint8, and the
export's own ``encode`` (which resizes a ``size``-sided image by an exact copy, converts the
colour space and normalises) gives the features, so the encoder sees exactly the input its
spec describes.
"""

import logging
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh
from tqdm.auto import tqdm

from ssl_jax.augment import random_horizontal_flip, random_resized_crop, to_unit_float
from ssl_jax.data import BatchIterator, stream
from ssl_jax.evaluators.features import extract_features, make_sharded_encode
from ssl_jax.metrics import topk_accuracy
from ssl_jax.parallel import batch_sharded, check_batch_size, global_batch, replicated

log = logging.getLogger(__name__)

HEAD_NORMS = ("batchnorm", "none")
BN_MOMENTUM = 0.9  # running statistics: new = 0.9 old + 0.1 batch (PyTorch's momentum 0.1)
BN_EPS = 1e-6  # MAE's


def make_views_fn(
    size: int,
    *,
    crop_scale: tuple[float, float] = (0.08, 1.0),
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3),
    flip_prob: float = 0.5,
) -> Callable[[jax.Array, jax.Array], jax.Array]:
    """``views(images_uint8 (N, H, W, 3), key) -> uint8 (N, size, size, 3)``: an Inception
    random resized crop (area ``crop_scale``, aspect ``crop_ratio``) and a horizontal flip
    (probability ``flip_prob``) per image, rounded to uint8."""

    def views(images: jax.Array, key: jax.Array) -> jax.Array:
        crop_key, flip_key = jax.random.split(key)
        x = random_resized_crop(
            to_unit_float(images), crop_key, size=size, scale=crop_scale, ratio=crop_ratio
        )
        x = random_horizontal_flip(x, flip_key, prob=flip_prob)
        return jnp.round(jnp.clip(x, 0.0, 1.0) * 255.0).astype(jnp.uint8)

    return views


def init_head(feature_dim: int, num_classes: int) -> tuple[dict, dict]:
    """``(params {"w" (D, C), "b" (C,)} zeros, stats {"mean" zeros, "var" ones} (D,))``."""
    params = {"w": jnp.zeros((feature_dim, num_classes)), "b": jnp.zeros((num_classes,))}
    stats = {"mean": jnp.zeros((feature_dim,)), "var": jnp.ones((feature_dim,))}
    return params, stats


def head_logits(params: dict, stats: dict, features, *, head_norm: str):
    """Evaluation-mode logits: features normalised with the running ``stats`` (batchnorm)."""
    if head_norm == "batchnorm":
        features = (features - stats["mean"]) / np.sqrt(stats["var"] + BN_EPS)
    return features @ params["w"] + params["b"]


def make_head_train_step(encode, views, tx: optax.GradientTransformation, *, head_norm: str):
    """``step(params, stats, opt_state, arrays, images, labels, key) -> (params, stats,
    opt_state, {"loss", "train_top1"})``: one SGD step of the head on fresh views.

    ``encode(arrays, images_uint8) -> (N, D)`` is the frozen feature function; no gradient
    reaches ``arrays``. ``train_top1`` (%) is measured on the views, before the update.
    """
    if head_norm not in HEAD_NORMS:
        raise ValueError(f"probe.head_norm={head_norm!r} is unknown; valid: {list(HEAD_NORMS)}.")

    def step(params, stats, opt_state, arrays, images, labels, key):
        features = encode(arrays, views(images, key)).astype(jnp.float32)
        features = jax.lax.stop_gradient(features)
        if head_norm == "batchnorm":
            mean, var = jnp.mean(features, axis=0), jnp.var(features, axis=0)
            features = (features - mean) * jax.lax.rsqrt(var + BN_EPS)
            stats = jax.tree.map(
                lambda old, new: BN_MOMENTUM * old + (1.0 - BN_MOMENTUM) * new,
                stats,
                {"mean": mean, "var": var},
            )

        def loss_fn(p):
            logits = features @ p["w"] + p["b"]
            loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
            return loss, logits

        (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        top1 = 100.0 * jnp.mean(jnp.argmax(logits, axis=-1) == labels)
        metrics = {"loss": loss, "train_top1": top1}
        return optax.apply_updates(params, updates), stats, opt_state, metrics

    return step


def make_head_optimizer(
    learning_rate: float, total_steps: int, *, momentum: float = 0.9, weight_decay: float = 0.0
) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """SGD with Nesterov momentum and a cosine decay to 0 over ``total_steps``, no warm-up;
    ``weight_decay`` adds ``wd * w`` to the gradient of the weights (not the bias)."""
    schedule = optax.cosine_decay_schedule(learning_rate, total_steps)
    tx = optax.chain(
        optax.add_decayed_weights(weight_decay, mask={"w": True, "b": False}),
        optax.sgd(schedule, momentum=momentum, nesterov=True),
    )
    return tx, schedule


def fit_batch_size(batch_size: int, num_examples: int, mesh: Mesh) -> int:
    """``batch_size``, lowered to the largest multiple of the device count that fits in
    ``num_examples`` (a small labelled subset); ``ValueError`` if none does."""
    check_batch_size(batch_size, mesh)
    fitted = min(batch_size, num_examples - num_examples % mesh.size)
    if fitted <= 0:
        raise ValueError(
            f"{num_examples} labelled training images cannot fill a batch over {mesh.size} "
            "devices; raise data.label_fraction or use fewer devices (mesh.num_devices)."
        )
    if fitted != batch_size:
        log.warning(
            "probe.batch_size=%d is more than the %d training images allow; using %d.",
            batch_size,
            num_examples,
            fitted,
        )
    return fitted


def augmented_linear_probe(
    encode,
    arrays,
    train_source,
    test_source,
    *,
    input_size: int,
    num_classes: int,
    feature_dim: int,
    mesh: Mesh,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    weight_decay: float = 0.0,
    momentum: float = 0.9,
    crop_scale: tuple[float, float] = (0.08, 1.0),
    flip_prob: float = 0.5,
    head_norm: str = "batchnorm",
    eval_batch_size: int = 512,
    seed: int = 0,
    progress: bool = True,
    log_fn: Callable[[int, dict], object] | None = None,
) -> dict:
    """Train a linear head on augmented views of ``train_source`` through the frozen
    ``encode(arrays, images_uint8)`` (see the module docstring); test top-1/top-5 on the
    un-augmented ``test_source``.

    Batches are :class:`~ssl_jax.data.BatchIterator`'s (seeded, remainder of each epoch
    dropped), split over ``mesh``; the step key is ``fold_in(key(seed), step)``. ``log_fn(step,
    metrics)`` receives each epoch's mean ``loss`` and ``train_top1`` (on the views) and the
    ``learning_rate``. Returns ``top1``, ``top5``, ``final_train_loss`` and
    ``train_top1_augmented`` (the last epoch's means), ``batch_size``, ``steps``.
    """
    if epochs < 1:
        raise ValueError(f"probe.epochs must be >= 1 for the augmented protocol, got {epochs}.")
    batch_size = fit_batch_size(batch_size, len(train_source), mesh)
    batches = BatchIterator(
        train_source,
        global_batch_size=batch_size,
        seed=seed,
        process_index=jax.process_index(),
        process_count=jax.process_count(),
    )
    total = epochs * batches.steps_per_epoch
    tx, schedule = make_head_optimizer(
        learning_rate, total, momentum=momentum, weight_decay=weight_decay
    )
    views = make_views_fn(input_size, crop_scale=tuple(crop_scale), flip_prob=flip_prob)
    rep, split = replicated(mesh), batch_sharded(mesh)
    step_fn = jax.jit(
        make_head_train_step(encode, views, tx, head_norm=head_norm),
        in_shardings=(rep, rep, rep, rep, split, split, rep),
        out_shardings=rep,
        donate_argnums=(0, 1, 2),
    )
    params, stats = init_head(feature_dim, num_classes)
    params, stats, opt_state = jax.device_put((params, stats, tx.init(params)), rep)
    key = jax.random.key(seed)
    epoch_metrics, last = [], {}
    train = stream(batches.batch_at, 0, total)
    for step, local in enumerate(tqdm(train, total=total, desc="probe", disable=not progress)):
        batch = global_batch(local, mesh)
        params, stats, opt_state, metrics = step_fn(
            params,
            stats,
            opt_state,
            arrays,
            batch["images"],
            batch["labels"],
            jax.random.fold_in(key, step),
        )
        epoch_metrics.append(metrics)
        if (step + 1) % batches.steps_per_epoch == 0:
            last = {k: float(np.mean([m[k] for m in epoch_metrics])) for k in metrics}
            epoch_metrics = []
            if log_fn is not None:
                epoch = (step + 1) // batches.steps_per_epoch
                log_fn(step + 1, {"epoch": epoch, **last, "learning_rate": schedule(step)})
    encode_test = make_sharded_encode(encode, mesh)
    test_x, test_y = extract_features(
        encode_test,
        arrays,
        test_source,
        batch_size=eval_batch_size,
        mesh=mesh,
        desc="test features",
        progress=progress,
    )
    params, stats = jax.tree.map(np.asarray, jax.device_get((params, stats)))
    logits = head_logits(params, stats, test_x, head_norm=head_norm)
    return {
        **topk_accuracy(logits, test_y),
        "final_train_loss": last["loss"],
        "train_top1_augmented": last["train_top1"],
        "batch_size": batch_size,
        "steps": total,
    }
