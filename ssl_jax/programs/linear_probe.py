"""Linear probe of a frozen encoder, ``run(config, workdir)``: two protocols, two baselines.

Restores only the encoder export of ``config.pretrained`` (never optimizer state), trains a
linear classifier on the training split (or a class-balanced ``data.label_fraction`` of it,
seeded by ``config.seed``, its indices saved as ``WORKDIR/label_subset.json``) and reports
top-1/top-5 on the test split in ``WORKDIR/results.json``. ``config.probe.protocol``:

- ``"offline"`` (default): Kornblith, Shlens & Le, "Do Better ImageNet Models Transfer
  Better?" (CVPR 2019), the protocol SimCLR (Chen et al. 2020, appendix B.8) uses for its
  linear evaluation on other datasets: features of the un-augmented images (the export's
  resize), L2-regularised multinomial logistic regression solved to convergence by L-BFGS
  (:func:`~ssl_jax.evaluators.logreg.logistic_regression`), the L2 strength chosen from
  ``probe.l2_grid`` by the top-1 on a validation split carved from the training split
  (``data.val_fraction``, class-balanced, seeded; indices in ``WORKDIR/val_split.json``;
  never the test split), then refit on the whole training split with that strength. The
  results hold the chosen ``l2`` and each grid point's ``val_top1`` (``l2_sweep``).
  Deterministic and free of optimiser hyperparameters; features live on one device, so it
  suits datasets up to a few hundred thousand images.
- ``"augmented"``: the ImageNet linear evaluation of SimCLR (appendix B.6), MoCo, BYOL
  (appendix C.1) and MAE (appendix A.1): SGD with Nesterov momentum and a cosine learning
  rate trains a linear head on one random resized crop + horizontal flip of each training
  image per step, made on the device and encoded by the frozen encoder in evaluation mode,
  batches split over the mesh; the test split is encoded without augmentation. The head
  normalises its input with a BatchNorm without affine parameters (MAE's) unless
  ``probe.head_norm="none"`` (SimCLR's, MoCo's, BYOL's plain layer).
  See :mod:`ssl_jax.evaluators.augmented_linear`.

``probe.epochs``, ``batch_size``, ``learning_rate`` and ``weight_decay`` serve the augmented
protocol; unset (None) they take its defaults, :data:`SGD_DEFAULTS`. The
settings used are in ``results["settings"]``.

Baselines, same protocols: ``config.random_init`` probes a freshly initialised encoder of the
same architecture; ``config.raw_pixels`` the encoder's preprocessed input itself, flattened
(size, colour space, mean and std of the export's spec; no encoder).
"""

import logging

import jax
import ml_collections
import numpy as np

from ssl_jax.data import get_source
from ssl_jax.data.identity import identify
from ssl_jax.data.subset import labelled_subset, save_val_split, validation_split
from ssl_jax.evaluators import extract_features, make_sharded_encode
from ssl_jax.evaluators.augmented_linear import HEAD_NORMS, augmented_linear_probe
from ssl_jax.evaluators.linear import offline_linear_probe
from ssl_jax.metrics import MetricsWriter, write_results
from ssl_jax.parallel import make_mesh
from ssl_jax.paths import resolve
from ssl_jax.programs.common import data_config, load_feature_fn, log_data

log = logging.getLogger(__name__)

PROTOCOLS = ("offline", "augmented")
# Defaults of the augmented protocol's probe.epochs / batch_size / learning_rate / weight_decay.
SGD_DEFAULTS = {
    # SimCLR's 90 epochs; lr 0.1 at batch 256 (SimCLR's and MAE's 0.1 x batch / 256), no wd.
    "augmented": dict(epochs=90, batch_size=256, learning_rate=0.1, weight_decay=0.0),
}


def settings(config: ml_collections.ConfigDict) -> dict:
    """The protocol's settings from ``config.probe`` and ``config.data``, defaults filled in.

    Raises ``ValueError`` for an unknown protocol or a config without the fields (one not
    made from ``configs/linear_probe.py``).
    """
    p = config.probe
    protocol = p.get("protocol")
    if protocol not in PROTOCOLS:
        raise ValueError(
            f"probe.protocol={protocol!r} is unknown; valid: {list(PROTOCOLS)} (a config "
            "without the field: start from configs/linear_probe.py)."
        )
    if protocol == "offline":
        out = dict(
            l2_grid=[float(v) for v in p.l2_grid],
            val_fraction=float(config.data.val_fraction),
            max_iter=int(p.max_iter),
            tol=float(p.tol),
        )
    else:
        out = {k: v if p[k] is None else p[k] for k, v in SGD_DEFAULTS[protocol].items()}
    if protocol == "augmented":
        if p.head_norm not in HEAD_NORMS:
            raise ValueError(
                f"probe.head_norm={p.head_norm!r} is unknown; valid: {list(HEAD_NORMS)}."
            )
        out.update(
            momentum=float(p.momentum),
            crop_scale=[float(v) for v in p.crop_scale],
            flip_prob=float(p.flip_prob),
            head_norm=p.head_norm,
        )
    return {"protocol": protocol, **out}


def _features(encode, arrays, train_src, test_src, *, data, mesh, progress):
    """Frozen features ``(train_x, train_y, test_x, test_y)`` of the un-augmented images."""
    encode = make_sharded_encode(encode, mesh)
    kw = dict(batch_size=data.batch_size, mesh=mesh, progress=progress)
    train = extract_features(encode, arrays, train_src, desc="train features", **kw)
    test = extract_features(encode, arrays, test_src, desc="test features", **kw)
    return (*train, *test)


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
    workdir = resolve(workdir)
    setup = settings(config)
    protocol = setup["protocol"]
    mesh = make_mesh(config.mesh.num_devices)
    encode, arrays, spec, info = load_feature_fn(config, mesh)
    data, origin = data_config(config, spec)
    train_src, test_src = get_source(data, "train"), get_source(data, "test")
    log_data(data, origin, {"train": train_src, "test": test_src})
    fraction = config.data.get("label_fraction", 1.0)
    train_src, subset_info = labelled_subset(train_src, fraction, seed=config.seed, workdir=workdir)
    num_classes = max(train_src.num_classes, test_src.num_classes)
    progress = config.log.progress
    if protocol == "augmented":
        feature_dim = _feature_dim(encode, arrays, spec)
        writer = MetricsWriter(workdir)
        acc = augmented_linear_probe(
            encode,
            arrays,
            train_src,
            test_src,
            input_size=spec["input"]["size"],
            num_classes=num_classes,
            feature_dim=feature_dim,
            mesh=mesh,
            **{k: v for k, v in setup.items() if k != "protocol"},
            eval_batch_size=data.batch_size,
            seed=config.seed,
            progress=progress,
            log_fn=writer.write,
        )
        writer.close()
    else:
        train_x, train_y, test_x, test_y = _features(
            encode, arrays, train_src, test_src, data=data, mesh=mesh, progress=progress
        )
        feature_dim = int(train_x.shape[1])
        acc = offline_linear_probe(
            train_x,
            train_y,
            test_x,
            test_y,
            num_classes=num_classes,
            val_indices=_val_positions(config, train_y, train_src, workdir),
            l2_grid=setup["l2_grid"],
            max_iter=setup["max_iter"],
            tol=setup["tol"],
        )
    results = {
        **acc,
        "program": "linear_probe",
        "protocol": protocol,
        "split": "test",
        **info,
        "num_train": len(train_src),
        "num_test": len(test_src),
        "feature_dim": feature_dim,
        "num_classes": num_classes,
        "data": data.name,
        "dataset": identify(data),
        **subset_info,
        "settings": setup,
    }
    write_results(workdir, results)
    return results


def _feature_dim(encode, arrays, spec) -> int:
    """The width of ``encode``'s features, from the shapes alone (nothing is computed)."""
    size = spec["input"]["size"]
    images = jax.ShapeDtypeStruct((1, size, size, 3), np.uint8)
    return int(jax.eval_shape(encode, arrays, images).shape[-1])


def _val_positions(config, train_y, train_src, workdir) -> np.ndarray:
    """Positions in the training features of the validation split (saved, as indices into the
    training split, in ``WORKDIR/val_split.json``)."""
    _, val = validation_split(train_y, config.data.val_fraction, seed=config.seed)
    save_val_split(
        workdir,
        val,
        train_src,
        split="train",
        val_fraction=float(config.data.val_fraction),
        seed=config.seed,
    )
    return val
