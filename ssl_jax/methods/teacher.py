"""The frozen teacher of a distillation method.

The teacher is another run's encoder export (``load_export``): its structure is read from the
export's spec when the method is built, its arrays are the method's frozen input
(``Method.load_frozen``), loaded at every start of the run and never part of the student's
train state or checkpoints. The step is pinned when the method is built (``step``, else the
newest checkpoint then), so a resumed run distils from the same teacher only if the teacher's
run has not written newer checkpoints meanwhile: set ``teacher_step`` to pin it for good.
The teacher sees the student's view at its own input size, colour space and normalisation
(its spec), in eval mode, under ``stop_gradient``.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import ml_collections

from ssl_jax.encoder import convert_input, load_export, make_backbone, read_spec
from ssl_jax.models import ModuleDef


class Teacher(NamedTuple):
    path: str
    step: int
    spec: dict
    backbone: ModuleDef

    @property
    def feature_dim(self) -> int:
        return int(self.spec["feature_dim"])


def make_teacher(path: str, step: int | None = None) -> Teacher:
    """The teacher of run ``path`` (checkpoint ``step``, else the newest), structure only."""
    if not path:
        raise ValueError(
            "config.teacher is empty: pass the workdir of a pretraining (or fine-tuning) run "
            "whose encoder export is the teacher, e.g. --config.teacher=runs/simclr_cifar10."
        )
    spec = read_spec(path, step)
    backbone = make_backbone(ml_collections.ConfigDict(spec["model"]))
    return Teacher(path=path, step=int(spec["step"]), spec=spec, backbone=backbone)


def load_teacher(teacher: Teacher, mesh) -> dict:
    """The teacher's export arrays ``{"params", "batch_stats"}``, replicated over ``mesh``."""
    return load_export(teacher.path, teacher.step, mesh=mesh).arrays


def teacher_features(teacher: Teacher, arrays: dict, x: jax.Array) -> jax.Array:
    """The teacher's pooled features ``(N, D)`` of float images ``x`` in [0, 1], resized to
    its input size if they differ, converted as its spec says, in eval mode, stop-gradient."""
    spec = teacher.spec["input"]
    n, height, width, channels = x.shape
    if (height, width) != (spec["size"], spec["size"]):
        x = jax.image.resize(x, (n, spec["size"], spec["size"], channels), "linear")
    features, _ = teacher.backbone.apply(
        arrays["params"], arrays["batch_stats"], convert_input(x, spec), train=False
    )
    return jax.lax.stop_gradient(features.astype(jnp.float32))
