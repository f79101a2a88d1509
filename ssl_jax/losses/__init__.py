"""Pure loss functions of arrays: no Flax, no config, no devices.

Under a global-view ``jax.jit`` each loss takes its batch split over devices, on Auto or Explicit
mesh axes (``jax.make_mesh``'s default), and gives one device's value
(:mod:`ssl_jax.explicit_sharding`).
"""

from ssl_jax.losses.clustering import sinkhorn_knopp, swav_codes, swav_loss
from ssl_jax.losses.colorization import ab_regression_loss, rebalanced_cross_entropy
from ssl_jax.losses.contrastive import contrastive_loss, info_nce, moco_v3_ctr, nt_xent
from ssl_jax.losses.distillation import dino_center_update, dino_loss, dino_teacher_temperature
from ssl_jax.losses.jepa import epps_pulley, ijepa_loss, lejepa_loss, sigreg
from ssl_jax.losses.msn import msn_loss, power_law_prior
from ssl_jax.losses.normalize import l2_normalize
from ssl_jax.losses.reconstruction import masked_mse
from ssl_jax.losses.redundancy import barlow_twins_loss, vicreg_loss, vicreg_terms
from ssl_jax.losses.regression import byol_loss, simsiam_loss
from ssl_jax.losses.teacher_student import embedding_cosine, embedding_mse, kd_loss, seed_loss

__all__ = [
    "ab_regression_loss",
    "barlow_twins_loss",
    "byol_loss",
    "contrastive_loss",
    "dino_center_update",
    "dino_loss",
    "dino_teacher_temperature",
    "embedding_cosine",
    "embedding_mse",
    "epps_pulley",
    "ijepa_loss",
    "info_nce",
    "kd_loss",
    "l2_normalize",
    "lejepa_loss",
    "masked_mse",
    "moco_v3_ctr",
    "msn_loss",
    "nt_xent",
    "power_law_prior",
    "rebalanced_cross_entropy",
    "seed_loss",
    "sigreg",
    "simsiam_loss",
    "sinkhorn_knopp",
    "swav_codes",
    "swav_loss",
    "vicreg_loss",
    "vicreg_terms",
]
