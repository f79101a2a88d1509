"""Distillation of a self-supervised teacher into a small student on CIFAR-10.

The teacher is any pretraining (or fine-tuning) run's encoder export, frozen; the student is
the ``model`` section (ResNet-18 width 16 here: about 1/16 of a standard ResNet-18's
parameters). The variant names the method: ``:seed`` (the default; Fang et al. 2021: student
temperature 0.2, teacher 0.01, a queue of teacher features), ``:mse`` or ``:cosine``
(embedding regression), ``:kd`` (Hinton et al. 2015, temperature 4: a teacher whose export has
a categorical head, i.e. a fine-tuning run's), ``:clusterfit`` (Yan et al. 2020: k-means with
100 clusters of the teacher's features of the training images, cached to the workdir, and the
student classifying them), ``:dino_kd`` (a DINO, iBOT or DINOv2 run as teacher, best exported
with ``export.network=target``: the student, with a DINO head to the teacher's prototypes,
learns the teacher's centred, sharpened prototype distribution at the export's teacher
temperature, or its Sinkhorn-Knopp targets for DINOv2; student temperature 0.1), each also
``,runlocal`` (``:mse,runlocal``).
DINOv2's recipe for its ViT-S/B/L: facebookresearch/dinov2's MODEL_CARD.md says distillation
"follows the standard DINOv2 pretraining procedure, except the teacher is a pretrained ViT-g,
frozen" (DINO multi-crop and iBOT losses, KoLeo); its released code has no distillation path.
The paper's further details (section 5: masking and stochastic depth removed, the iBOT loss on
the two global crops, a spare EMA of the student as the final model) are unverified here.
``dino_kd`` keeps only the [CLS] term on one view: no iBOT patch term, no multi-crop, no EMA.
One view per image: crop and flip with MoCo v2's colour jitter and grayscale, seen by both
networks. SEED trains
its students with SGD at lr 0.03 x batch/256 (momentum 0.9, weight decay 1e-4, cosine) for
200 ImageNet epochs; the same optimizer here, 200 epochs. Our shorter runs are in
docs/results.md (Distillation).

  python launch/distill.py --config configs/distill_cifar10.py \\
    --config.teacher=runs/simclr_cifar10 --workdir runs/seed_cifar10 \\
    --config.data.name=npz --config.data.path=../shared/data/cifar10
Smoke test on the embedded digits with any teacher (it sees the 16 px views at its own
input size): --config configs/distill_cifar10.py:seed,runlocal
"""

from ml_collections.config_dict import placeholder

from ssl_jax.config import cifar10_preset, finish, pretrain_defaults
from ssl_jax.methods import method_config

METHODS = ("seed", "mse", "cosine", "kd", "clusterfit", "dino_kd")


def get_config(arg=None):
    variants = [v for v in (arg or "").split(",") if v]
    names = [v for v in variants if v in METHODS] or ["seed"]
    others = [v for v in variants if v not in METHODS]
    if len(names) > 1 or others not in ([], ["runlocal"]):
        raise ValueError(
            f"Unknown config variant {arg!r}; valid: one of {METHODS}, optionally with "
            "',runlocal' (e.g. 'mse,runlocal')."
        )
    c = cifar10_preset(pretrain_defaults())
    c.teacher = ""  # the teacher's run directory (required)
    c.teacher_step = placeholder(int)  # its checkpoint; None = the newest when the run starts
    c.epochs = 200
    c.model.width = 16
    c.augment.recipe = "crop_flip"
    c.augment.crop_scale = (0.2, 1.0)
    c.augment.update(jitter_prob=0.8, gray_prob=0.2)
    if names == ["seed"]:
        c.method = method_config(
            "seed", queue_length=4096, student_temperature=0.2, teacher_temperature=0.01
        )
    elif names == ["clusterfit"]:
        c.method = method_config("clusterfit", num_clusters=100)
    elif names == ["kd"]:
        c.method = method_config("kd", temperature=4.0)
    elif names == ["dino_kd"]:
        c.method = method_config("dino_kd", student_temp=0.1)
    else:
        c.method = method_config(names[0])
    c.optim.update(name="sgd", base_learning_rate=0.03, momentum=0.9, weight_decay=1e-4)
    c.schedule.warmup_epochs = 0
    return finish(c, "runlocal" if others else None)
