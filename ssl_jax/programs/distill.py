"""Distil a frozen teacher (another run's encoder export) into a student: the pretraining
program with a distillation method (``method.name``: ``kd``, ``mse``, ``cosine``, ``seed``,
``clusterfit``) and ``config.teacher`` (for ``kd``, a run whose export has a categorical head:
a fine-tuning run). ``clusterfit`` first clusters the teacher's features of the training
images (once; ``WORKDIR/clusterfit_centroids.npz``, read back on resume).

The teacher's arrays are the method's frozen input (:mod:`ssl_jax.methods.teacher`): loaded at
every start, passed to the train step as a separate, non-donated argument, never written into
the student's checkpoints; a resumed run reloads them from ``config.teacher`` and continues the
same trajectory. The student's export is a normal encoder export (network ``student``) that
every downstream program reads.
"""

import ml_collections

from ssl_jax.methods.registry import DISTILL_METHODS
from ssl_jax.programs import pretrain


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Train the student of ``config`` in ``workdir``; returns (and writes) ``results.json``."""
    name = config.method.name
    if name not in DISTILL_METHODS:
        raise ValueError(
            f"method.name={name!r} is not a distillation method; valid: {list(DISTILL_METHODS)} "
            "(other methods run with launch/pretrain.py)."
        )
    if not config.get("teacher"):
        raise ValueError(
            "config.teacher is empty: pass the workdir of the run whose encoder export is the "
            "teacher, e.g. --config.teacher=runs/simclr_cifar10."
        )
    return pretrain.run(config, workdir, program="distill")
