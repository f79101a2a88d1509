"""Pure loss functions of arrays: no Flax, no config, no devices.

Under a global-view ``jax.jit`` each loss takes its batch split over devices, on Auto or Explicit
mesh axes (``jax.make_mesh``'s default), and gives one device's value
(:mod:`ssl_jax.explicit_sharding`).
"""

from ssl_jax.losses.capacity import mmcr_loss, nuclear_norm
from ssl_jax.losses.clustering import sinkhorn_knopp, swav_codes, swav_loss
from ssl_jax.losses.colorization import ab_regression_loss, rebalanced_cross_entropy
from ssl_jax.losses.contrastive import (
    contrastive_loss,
    dcl_loss,
    dclw_loss,
    dclw_weights,
    info_nce,
    moco_v3_ctr,
    nt_xent,
)
from ssl_jax.losses.distillation import (
    dino_center_update,
    dino_cross_entropy,
    dino_loss,
    dino_teacher_temperature,
    ibot_patch_loss,
    masked_patch_cross_entropy,
)
from ssl_jax.losses.jepa import epps_pulley, ijepa_loss, lejepa_loss, sigreg
from ssl_jax.losses.koleo import koleo_loss
from ssl_jax.losses.language import masked_lm_loss, replaced_token_detection_loss
from ssl_jax.losses.latent import data2vec_targets
from ssl_jax.losses.msn import msn_loss, power_law_prior
from ssl_jax.losses.normalize import l2_normalize
from ssl_jax.losses.reconstruction import masked_l1, masked_mse
from ssl_jax.losses.redundancy import barlow_twins_loss, tico_loss, vicreg_loss, vicreg_terms
from ssl_jax.losses.regression import byol_loss, simsiam_loss
from ssl_jax.losses.teacher_student import (
    embedding_cosine,
    embedding_mse,
    kd_loss,
    prototype_kd_loss,
    seed_loss,
)
from ssl_jax.losses.whitening import cholesky_whiten, wmse_loss

__all__ = [
    "ab_regression_loss",
    "barlow_twins_loss",
    "byol_loss",
    "cholesky_whiten",
    "contrastive_loss",
    "data2vec_targets",
    "dcl_loss",
    "dclw_loss",
    "dclw_weights",
    "dino_center_update",
    "dino_cross_entropy",
    "dino_loss",
    "dino_teacher_temperature",
    "embedding_cosine",
    "embedding_mse",
    "ibot_patch_loss",
    "epps_pulley",
    "ijepa_loss",
    "info_nce",
    "kd_loss",
    "prototype_kd_loss",
    "koleo_loss",
    "l2_normalize",
    "masked_lm_loss",
    "lejepa_loss",
    "masked_mse",
    "masked_patch_cross_entropy",
    "masked_l1",
    "mmcr_loss",
    "moco_v3_ctr",
    "msn_loss",
    "nt_xent",
    "nuclear_norm",
    "power_law_prior",
    "rebalanced_cross_entropy",
    "replaced_token_detection_loss",
    "seed_loss",
    "sigreg",
    "simsiam_loss",
    "sinkhorn_knopp",
    "swav_codes",
    "swav_loss",
    "tico_loss",
    "vicreg_loss",
    "vicreg_terms",
    "wmse_loss",
]
