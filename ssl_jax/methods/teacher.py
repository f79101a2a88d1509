"""The frozen teacher of a distillation method.

The teacher is another run's encoder export (``load_export``): its structure is read from the
export's spec when the method is built, its arrays are the method's frozen input
(``Method.load_frozen``), loaded at every start of the run and never part of the student's
train state or checkpoints. The step is pinned when the method is built (``step``, else the
newest checkpoint then), so a resumed run distils from the same teacher only if the teacher's
run has not written newer checkpoints meanwhile: set ``teacher_step`` to pin it for good.
The teacher sees the student's view at its own input size, colour space and normalisation
(its spec), in eval mode, under ``stop_gradient``. Its outputs are its pooled features
(:func:`teacher_features`) or, for a teacher whose export includes a head (a fine-tuning
run's categorical one, a DINO-family run's prototypes), that head's logits
(:func:`teacher_logits`).
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import ml_collections

from ssl_jax.export import PROTOTYPES, convert_input, export_head, load_export, read_spec
from ssl_jax.methods.networks import mlp_head
from ssl_jax.models import ModuleDef, make_backbone


class Teacher(NamedTuple):
    path: str
    step: int
    spec: dict
    backbone: ModuleDef
    head: ModuleDef | None = None  # the export's categorical head, if it has one

    @property
    def feature_dim(self) -> int:
        return int(self.spec["feature_dim"])

    @property
    def num_classes(self) -> int | None:
        """The categorical head's classes; None without one (or with a prototype head)."""
        head = self.spec["head"]
        return head["num_classes"] if head and head["kind"] != PROTOTYPES else None

    @property
    def prototypes(self) -> dict | None:
        """The spec of a DINO-family prototype head (``kind: "prototypes"``), else None."""
        head = self.spec["head"]
        return head if head and head["kind"] == PROTOTYPES else None


def make_teacher(path: str, step: int | None = None) -> Teacher:
    """The teacher of run ``path`` (checkpoint ``step``, else the newest), structure only."""
    if not path:
        raise ValueError(
            "config.teacher is empty: pass the workdir of a pretraining (or fine-tuning) run "
            "whose encoder export is the teacher, e.g. --config.teacher=runs/simclr_cifar10."
        )
    spec = read_spec(path, step)
    backbone = make_backbone(ml_collections.ConfigDict(spec["model"]))
    return Teacher(
        path=path, step=int(spec["step"]), spec=spec, backbone=backbone, head=export_head(spec)
    )


def student_parts(backbone: ModuleDef, proj_hidden_dim: int, out_dim: int) -> dict:
    """A student's parts: its ``backbone`` (the export) and an MLP projector to ``out_dim``,
    the width of what it learns from the teacher (features, classes or clusters)."""
    return {
        "backbone": backbone,
        "projector": mlp_head(backbone.feature_dim, proj_hidden_dim, out_dim),
    }


def load_teacher(teacher: Teacher, mesh) -> dict:
    """The teacher's export arrays ``{"params", "batch_stats"}`` (and ``"head"`` when it has
    one), replicated over ``mesh``."""
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


def teacher_logits(teacher: Teacher, arrays: dict, x: jax.Array) -> jax.Array:
    """The teacher's head's logits ``(N, num_classes)`` (a prototype head: its raw
    ``(N, out_dim)`` outputs) of its features (:func:`teacher_features`), eval mode,
    stop-gradient."""
    head = arrays["head"]
    logits, _ = teacher.head.apply(
        head["params"], head["batch_stats"], teacher_features(teacher, arrays, x), train=False
    )
    return jax.lax.stop_gradient(logits.astype(jnp.float32))
