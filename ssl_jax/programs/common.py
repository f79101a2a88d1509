"""What the downstream programs share: the encoder of a pretraining run and its features."""

import logging

import jax
import ml_collections

from ssl_jax.checkpoint import read_config, resolve_step, restore_encoder
from ssl_jax.data import get_source
from ssl_jax.encoder import make_backbone, make_encode_fn
from ssl_jax.evaluators import extract_features, make_sharded_encode
from ssl_jax.methods.views import eval_settings
from ssl_jax.parallel import replicated

log = logging.getLogger(__name__)


def load_encoder(config: ml_collections.ConfigDict, mesh):
    """``(backbone, export, run_config, info)`` for ``config.pretrained``.

    With ``config.random_init`` the export is a fresh initialisation (seed
    ``config.seed``) of the same architecture: the baseline an SSL encoder must beat.
    """
    if not config.pretrained:
        raise ValueError(
            "config.pretrained is empty: pass the workdir of a pretraining run, e.g. "
            "--config.pretrained=/tmp/simclr_run."
        )
    step = resolve_step(config.pretrained, config.step)
    run_config = ml_collections.ConfigDict(read_config(config.pretrained, step))
    backbone = make_backbone(run_config.model)
    init = jax.jit(
        lambda key: dict(zip(("params", "batch_stats"), backbone.init(key), strict=True)),
        out_shardings=replicated(mesh),
    )
    if config.random_init:
        export = init(jax.random.key(config.seed))
        info = {"encoder": "random_init", "seed": config.seed}
    else:
        abstract = jax.eval_shape(init, jax.random.key(0))
        export, step = restore_encoder(config.pretrained, abstract, step)
        info = {"encoder": "pretrained", "step": step}
    info["pretrained"] = config.pretrained
    return backbone, export, run_config, info


def data_config(config: ml_collections.ConfigDict, run_config) -> ml_collections.ConfigDict:
    """The probe's ``data`` section, or the pretraining run's when ``data.name`` is empty."""
    if config.data.name:
        return config.data
    data = ml_collections.ConfigDict(run_config.data.to_dict())
    data.batch_size = config.data.batch_size
    return data


def features(config, mesh):
    """Frozen features of both splits: ``(train_x, train_y, test_x, test_y, info)``."""
    backbone, export, run_config, info = load_encoder(config, mesh)
    data = data_config(config, run_config)
    encode = make_sharded_encode(
        make_encode_fn(backbone, **eval_settings(run_config.augment)), mesh
    )
    kw = dict(batch_size=data.batch_size, mesh=mesh, progress=config.log.progress)
    train_src, test_src = get_source(data, "train"), get_source(data, "test")
    train_x, train_y = extract_features(encode, export, train_src, desc="train features", **kw)
    test_x, test_y = extract_features(encode, export, test_src, desc="test features", **kw)
    info.update(
        num_train=len(train_x),
        num_test=len(test_x),
        feature_dim=int(train_x.shape[1]),
        num_classes=max(train_src.num_classes, test_src.num_classes),
        data=data.name,
    )
    return train_x, train_y, test_x, test_y, info
