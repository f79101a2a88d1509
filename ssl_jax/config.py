"""Default config sections shared by every experiment, and derived values.

Experiment files in ``configs/`` start from :func:`pretrain_defaults` (or
:func:`probe_defaults`), set their fields and return the config locked, so a
misspelled ``--config.key=value`` is an error rather than a silent no-op.
"""

import math

import ml_collections
from ml_collections.config_dict import placeholder


def data_defaults(**overrides) -> ml_collections.ConfigDict:
    """The ``data`` section: which source, where, and the global batch size."""
    data = ml_collections.ConfigDict(
        dict(
            name="digits",  # digits | npz | folder | records | tfds
            path="",  # npz / folder / records sources
            image_size=placeholder(int),  # resize on the host; None keeps the native size
            # npz: classes when ids are deliberately sparse (otherwise they must be 0..K-1)
            num_classes=placeholder(int),
            tfds_name="cifar10",
            tfds_data_dir=placeholder(str),
            train_split="train",
            test_split="test",
            batch_size=256,  # global, over all devices and processes
            # Processes decoding batches: -1 chooses (none for arrays in memory, else every
            # core but one, at most 16), 0 is one background thread. Batches do not depend on it.
            workers=-1,
        )
    )
    data.update(overrides)
    return data


def pretrain_defaults() -> ml_collections.ConfigDict:
    """Every field a pretraining config has, with neutral defaults."""
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.epochs = 100
    c.total_steps = placeholder(int)  # derived from epochs when unset
    c.data = data_defaults()
    c.augment = ml_collections.ConfigDict(
        dict(
            recipe="simclr",  # a key of ssl_jax.augment.RECIPES
            crop_size=32,
            # Optional overrides of the recipe's ViewSpec fields (None or () = recipe default).
            crop_scale=(),
            crop_ratio=(),
            flip_prob=placeholder(float),
            blur_prob=placeholder(float),
            solarize_prob=placeholder(float),
            gray_prob=placeholder(float),
            jitter_prob=placeholder(float),
            brightness=placeholder(float),
            contrast=placeholder(float),
            saturation=placeholder(float),
            hue=placeholder(float),
            mean=(),
            std=(),
        )
    )
    c.model = ml_collections.ConfigDict(
        dict(
            backbone="resnet18",
            width=64,
            stem="cifar",
            zero_init_residual=True,
            # float32 | bfloat16: the backbone's computation dtype (mixed precision: params,
            # BatchNorm statistics, heads, losses and optimizer stay float32).
            dtype="float32",
            # Recompute each block's activations in the backward pass (less memory on GPU/TPU
            # for about one more forward pass; XLA's CPU compiler drops it for ResNets).
            remat=False,
            # ViTs: "full" keeps only each block's input, "dots_saveable" also its matmuls'
            # outputs (ResNets: "full" only).
            remat_policy="full",
        )
    )
    # Every hyperparameter of one method (its factory's defaults); configs of other methods
    # replace the section: c.method = method_config("byol", ...).
    from ssl_jax.methods.registry import method_config  # noqa: PLC0415 (keeps probe configs light)
    from ssl_jax.param_groups import KINDS, PARTS  # noqa: PLC0415

    c.method = method_config("simclr")
    c.optim = ml_collections.ConfigDict(
        dict(
            name="lars",  # lars | sgd | adamw
            base_learning_rate=0.3,
            lr_scaling="linear",  # linear: lr = base * batch / 256; sqrt; none
            weight_decay=1e-6,
            momentum=0.9,
            b1=0.9,
            b2=0.999,
            trust_coefficient=0.001,
            trust_clip=False,  # LARS: clip the effective lr at the scheduled lr (LARC "clip")
            exclude_bias_and_norm=True,
            grad_clip_norm=placeholder(float),
            # Micro-batches per step, computed in turn (ssl_jax.accumulation): exact for
            # methods whose loss is per-example, on networks without BatchNorm; others refused.
            accumulation_steps=1,
            # Per-group overrides (ssl_jax.param_groups), None = inherit: a part, a kind
            # (weight: >= 2 dims, norm_bias: < 2 dims) or, added in a config file, a
            # "part/kind" label such as "head/norm_bias".
            param_groups={
                group: dict(lr_mult=placeholder(float), weight_decay=placeholder(float))
                for group in (*PARTS, *KINDS)
            },
            layer_decay=placeholder(float),  # ViT backbone: lr * decay ** (depth + 1 - layer)
        )
    )
    c.schedule = ml_collections.ConfigDict(
        dict(name="warmup_cosine", warmup_epochs=10.0, end_lr_factor=0.0)
    )
    c.ckpt = ml_collections.ConfigDict(
        dict(
            every_steps=1000,
            keep=3,  # the newest N checkpoints are kept
            resume_from="",  # explicit run directory to resume from when the workdir is empty
            init_from="",  # run whose params + method state start a fresh run (new optimizer)
            async_save=True,
        )
    )
    c.log = ml_collections.ConfigDict(dict(every_steps=50, tensorboard=False, progress=True))
    # Named entries with a type, each with its evaluator's defaults; every_steps=0 is off.
    from ssl_jax.evaluators.registry import DEFAULTS, eval_entry  # noqa: PLC0415

    c.evals = ml_collections.ConfigDict({kind: eval_entry(kind) for kind in DEFAULTS})
    c.export = ml_collections.ConfigDict(dict(network="online"))
    # num_devices -1: every device. fsdp: split the training state over the devices
    # (ssl_jax.sharding), arrays of at least fsdp_min_size elements; off: replicated.
    c.mesh = ml_collections.ConfigDict(dict(num_devices=-1, fsdp=False, fsdp_min_size=2**14))
    return c


def probe_defaults() -> ml_collections.ConfigDict:
    """Fields shared by the downstream programs (linear probe, kNN)."""
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.pretrained = ""  # a pretraining workdir (its newest checkpoint's encoder export)
    c.step = placeholder(int)  # which checkpoint step; None = newest
    c.random_init = False  # probe a randomly initialised encoder of the same architecture
    # An intermediate output instead of the pooled features (ResNet: stem, stage1..stage4,
    # average-pooled; ViT: block1..blockN, [CLS] token), as pretext papers judge features.
    c.layer = placeholder(str)
    # Empty data.name: the dataset the export was trained on (its spec records it), with the
    # other identifying data.* fields set here (path, tfds_data_dir, image_size, ...) on top.
    c.data = data_defaults(name="", batch_size=512)
    c.mesh = ml_collections.ConfigDict(dict(num_devices=-1))
    c.log = ml_collections.ConfigDict(dict(progress=True))
    return c


def scaled_learning_rate(optim: ml_collections.ConfigDict, batch_size: int) -> float:
    """The peak learning rate after scaling with the global batch size (SimCLR, BYOL)."""
    scaling = optim.lr_scaling
    if scaling == "linear":
        return optim.base_learning_rate * batch_size / 256
    if scaling == "sqrt":
        return optim.base_learning_rate * math.sqrt(batch_size)
    if scaling == "none":
        return optim.base_learning_rate
    raise ValueError(f"optim.lr_scaling={scaling!r} is not one of 'linear', 'sqrt', 'none'.")


def total_steps(config: ml_collections.ConfigDict, steps_per_epoch: int) -> int:
    """``config.total_steps`` if set, else ``epochs * steps_per_epoch``."""
    if config.total_steps is not None:
        if config.total_steps <= 0:
            raise ValueError(f"total_steps must be positive, got {config.total_steps}.")
        return int(config.total_steps)
    if config.epochs <= 0:
        raise ValueError(f"epochs must be positive, got {config.epochs}.")
    return max(1, round(config.epochs * steps_per_epoch))


def epoch_steps(c: ml_collections.ConfigDict, epochs: float, train_images: int):
    """``epochs`` epochs of ``train_images`` images in steps, as a lazy reference.

    ``epochs * (train_images // data.batch_size)``, recomputed when ``data.batch_size`` is
    overridden. Each call returns a new reference: assigning one reference to two fields
    would make a ``--config.a=...`` override silently change ``b`` as well.
    """
    return (train_images // c.data.get_ref("batch_size")) * epochs


def cifar10_preset(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The CIFAR-10 setting shared by the ``*_cifar10`` configs (solo-learn's scale).

    ResNet-18 with the CIFAR stem, 32 px views, global batch 256, 1000 epochs, 10 warmup
    epochs, CIFAR-10 through tensorflow-datasets (``--config.data.name=npz
    --config.data.path=../shared/data/cifar10`` for the local copy). LARS keeps trust
    coefficient 0.001 without clipping (MoCo v3's config: 0.02); solo-learn's recipes use
    0.02 with the clipped lr (``--config.optim.trust_coefficient=0.02
    --config.optim.trust_clip=True``; docs/results.md compares the two).
    """
    c.epochs = 1000
    c.data.name = "tfds"
    c.data.tfds_name = "cifar10"
    c.data.batch_size = 256
    c.augment.crop_size = 32
    c.model.backbone = "resnet18"
    c.model.stem = "cifar"
    c.model.width = 64
    c.schedule.warmup_epochs = 10
    c.ckpt.every_steps = 2000
    c.log.every_steps = 100
    c.evals.knn.every_steps = 10000
    return c


def cifar10_vit(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The CIFAR-10 ViT (on top of ``cifar10_preset``): ViT-Tiny with 4-pixel patches on the
    32-pixel images (64 patches), the [CLS] token as the feature, and AdamW, the optimizer of
    the ViT recipes (each config sets its learning rate and weight decay)."""
    c.model.backbone = "vit_tiny"
    c.model.patch_size = 4
    c.model.img_size = 32
    c.model.pool = "cls"
    c.optim.name = "adamw"
    return c


def text_preset(
    c: ml_collections.ConfigDict, *, learning_rate: float, runlocal: bool = False
) -> ml_collections.ConfigDict:
    """The text setting the ``*_text`` configs share (on top of ``pretrain_defaults``): the
    Brown corpus's ``train.jsonl`` / ``test.jsonl`` packed into 128-token sequences of 256, an
    8k WordPiece vocabulary learned from the training split, BERT-Mini without dropout, AdamW
    at ``learning_rate`` (betas 0.9, 0.999; weight decay 0.01; not scaled with the batch), one
    warm-up epoch and a cosine decay over 20 epochs; the image evaluators off. ``runlocal``:
    20 steps of 16 sequences of 64 tokens on 200 passages, BERT-Tiny, a 1k vocabulary, lr 1e-3.
    """
    c.epochs = 20
    c.data.update(
        dict(
            name="jsonl",  # jsonl | text (a folder of .txt files)
            path="../shared/data/text/brown",
            batch_size=256,
            seq_len=128,  # tokens per sequence; documents packed ([CLS] d1 [SEP] d2 [SEP] ...)
            pack=True,
            vocab_size=8000,  # of the tokenizer learned from the training split
            lowercase=True,
            tokenizer="",  # empty: WORKDIR/tokenizer.json, learned on the first run
            text_unit="file",  # data.name=text: one document per file or per line
            max_documents=placeholder(int),  # the first N documents only (quick runs)
            workers=0,
        )
    )
    c.model.update(
        dict(backbone="bert_mini", vocab_size=8000, max_len=128, pool="cls", drop_rate=0.0)
    )
    c.optim.update(
        name="adamw",
        base_learning_rate=learning_rate,
        lr_scaling="none",
        weight_decay=0.01,
        b2=0.999,
    )
    c.schedule.warmup_epochs = 1.0
    for entry in c.evals.values():  # the evaluators take images only
        entry.every_steps = 0
    c.ckpt.every_steps = 500
    c.log.every_steps = 20
    if runlocal:
        c.total_steps = 20
        c.data.update(dict(max_documents=200, seq_len=64, vocab_size=1000, batch_size=16))
        c.model.update(dict(backbone="bert_tiny", vocab_size=1000, max_len=64))
        c.optim.base_learning_rate = 1e-3
        c.ckpt.every_steps = 10
        c.log.every_steps = 5
    return c


def pretext_preset(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The training setting the pretext-task configs share (on top of ``cifar10_preset`` or
    ``imagenet_preset``): one crop-and-flip view (the task makes its own input), SGD with
    momentum 0.9, lr 0.1 x batch/256, weight decay 5e-4 (RotNet's), cosine decay after 1 warmup
    epoch, 100 epochs."""
    c.augment.recipe = "crop_flip"
    c.epochs = 100
    c.schedule.warmup_epochs = 1
    c.optim.name = "sgd"
    c.optim.base_learning_rate = 0.1
    c.optim.momentum = 0.9
    c.optim.weight_decay = 5e-4
    return c


def imagenet_preset(c: ml_collections.ConfigDict, *, batch_size: int) -> ml_collections.ConfigDict:
    """The ImageNet setting shared by the ``*_imagenet`` configs: ResNet-50, 224 px views."""
    c.data.name = "tfds"
    c.data.tfds_name = "imagenet2012"
    c.data.test_split = "validation"
    c.data.image_size = 256  # decoded images are resized on the host; views crop 224
    c.data.batch_size = batch_size
    c.augment.crop_size = 224
    c.model.backbone = "resnet50"
    c.model.stem = "imagenet"
    c.model.width = 64
    c.ckpt.every_steps = 5000
    c.log.every_steps = 100
    c.evals.knn.every_steps = 0
    return c


def runlocal(
    c: ml_collections.ConfigDict,
    *,
    crop_size: int = 16,
    total_steps: int = 20,
    batch_size: int = 64,
    width: int = 16,
) -> ml_collections.ConfigDict:
    """Shrink any pretraining config into a smoke test that runs anywhere in about a minute.

    The embedded digits (no download) at ``crop_size`` px, ``total_steps`` steps of
    ``batch_size`` images, a ResNet of ``width`` (ViTs: depth kept, patch 4), heads at most 64
    wide, a queue (``queue_length > 0``) of at most 2 batches, a multiple of the batch; two
    checkpoints and four log rows; the kNN monitor off.
    """
    c.total_steps = total_steps
    c.data.name = "digits"
    c.data.image_size = crop_size
    c.data.batch_size = batch_size
    c.augment.crop_size = crop_size
    if c.model.backbone.startswith("resnet"):
        c.model.width = width
    if c.model.backbone.startswith("vit"):
        c.model.patch_size = 4
        c.model.img_size = crop_size
    for key, value in c.method.items():
        if key.endswith("_dim") and isinstance(value, int):
            c.method[key] = min(value, 64)
    if c.method.get("queue_length", 0) > 0:
        c.method.queue_length = (
            max(1, min(c.method.queue_length, 2 * batch_size) // batch_size) * batch_size
        )
    c.ckpt.every_steps = total_steps // 2
    c.log.every_steps = -(-total_steps // 4)
    c.evals.knn.every_steps = 0
    return c


def finish(c: ml_collections.ConfigDict, arg: str | None, **small) -> ml_collections.ConfigDict:
    """Apply the ``arg`` variant (``runlocal``, shrunk by :func:`runlocal` with ``small``, or
    none) and lock the config."""
    if arg == "runlocal":
        runlocal(c, **small)
    elif arg is not None:
        raise ValueError(f"Unknown config variant {arg!r}; valid: runlocal.")
    c.lock()
    return c


def config_changes(saved: dict, current: dict) -> dict[str, list]:
    """``{"section.field": [saved value, current value]}`` for every field that differs
    between two configs as plain dicts (a checkpoint's config item and this run's), values
    compared as JSON (tuples and lists alike); a field only one of them has counts too."""
    import json  # noqa: PLC0415

    def flat(tree, prefix=""):
        out = {}
        for key, value in tree.items():
            if isinstance(value, dict):
                out.update(flat(value, f"{prefix}{key}."))
            else:
                out[f"{prefix}{key}"] = json.loads(json.dumps(value, default=str))
        return out

    old, new = flat(saved), flat(current)
    return {
        key: [old.get(key), new.get(key)]
        for key in sorted(set(old) | set(new))
        if old.get(key) != new.get(key)
    }


def switch_method(config: ml_collections.ConfigDict, name: str, fields: dict) -> None:
    """Make ``config.method`` method ``name``'s section with ``fields`` set: re-seeded with its
    defaults when the section holds another method's fields (``--config.method.name=X``)."""
    from ssl_jax.methods.registry import hyperparameters, method_config  # noqa: PLC0415

    defaults = hyperparameters(name)
    if set(config.method) - {"name"} != set(defaults):  # the config file's method is another
        with config.unlocked():
            config.method = method_config(name)
    config.method.name = name
    unknown = sorted(set(fields) - set(defaults))
    if unknown:
        method_config(name, **dict.fromkeys(unknown))  # raises, listing the valid fields
    for key, value in fields.items():
        config.method[key] = value
