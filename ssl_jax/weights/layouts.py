"""Where every tensor of a PyTorch checkpoint goes in an ssl_jax export, per architecture.

An architecture is named ``SOURCE:MODEL`` as its library names it (:data:`SOURCES`):
``timm:vit_small_patch16_224.dino``, ``torchvision:resnet50``, ``dino:vits16``,
``mae:vit_base_patch16``, ``mocov3:vit_small``... :func:`get_arch` gives its
:class:`Arch`: the ssl_jax ``model`` section, the input normalisation of the source, the
release layout (which network of the file is the encoder, which other networks it holds)
and the rules ``{torch name: (export path, kind)}`` of :func:`vit_rules` /
:func:`resnet_rules` in timm's names (which torchvision's ResNets share).

Kinds: ``copy``; ``linear`` (PyTorch ``(out, in)`` -> Flax ``(in, out)``); ``conv``
(``OIHW`` -> ``HWIO``); ``pos`` (position embeddings, resampled when the image size
changes); ``count`` (BatchNorm's ``num_batches_tracked``: not an array of the model, written
as 0 on export).
"""

import dataclasses
import re

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INCEPTION_MEAN = (0.5, 0.5, 0.5)  # timm's augreg / original-ViT normalisation
INCEPTION_STD = (0.5, 0.5, 0.5)

# name -> (embed_dim, depth, num_heads), timm's VisionTransformer shapes.
VIT_SHAPES = {
    "tiny": (192, 12, 3),
    "small": (384, 12, 6),
    "base": (768, 12, 12),
    "large": (1024, 24, 16),
    "huge": (1280, 32, 16),
}
RESNET_STAGES = {"resnet18": (2, 2, 2, 2), "resnet34": (3, 4, 6, 3), "resnet50": (3, 4, 6, 3)}
# timm tags whose weights were trained on ImageNet-normalised inputs (the others of a ViT:
# augreg / original ViT, mean = std = 0.5). Checked against timm 1.0.31's pretrained_cfg.
IMAGENET_TAGS = ("dino", "mae", "lvd142m")


@dataclasses.dataclass(frozen=True)
class Arch:
    """What an architecture name stands for.

    ``model``: the ssl_jax ``model`` section (its ``img_size`` is the source's; the importer
    may change it). ``mean`` / ``std``: the source's input normalisation. ``method`` and
    ``network``: the export spec's. ``prefixes``: the name prefixes, tried in order, under
    which a release file holds the encoder (``""``: at the top). ``other``: prefixes of the
    release's other networks or entries (projectors, predictors, decoders, optimizer), named
    and left out. ``head_prefix``: where a classifier head lives in the encoder's names
    (``head.`` / ``fc.``) and ``head_is_projector``: whether the release's ``head`` is a
    pretraining projector (MoCo v3), left out, rather than a classifier, imported.
    """

    name: str
    model: dict
    mean: tuple
    std: tuple
    method: str
    network: str = "online"
    prefixes: tuple = ("",)
    other: tuple = ()
    head_prefix: str = "head."
    head_is_projector: bool = False

    @property
    def family(self) -> str:
        return "vit" if self.model["backbone"].startswith("vit") else "resnet"


def vit_rules(
    depth: int, *, head: bool, layer_scale: bool = False, registers: bool = False
) -> dict[str, tuple[str, str]]:
    """timm ``VisionTransformer`` names -> export paths, for ``depth`` blocks (and the
    classifier ``head`` as a ``linear`` head; DINOv2's ``ls1`` / ``ls2`` LayerScale and
    ``reg_token`` registers). With registers timm's ``pos_embed`` has no [CLS] entry
    (``no_embed_class``): kind ``pos_noclass``, ours gets a zero one."""
    rules = {
        "cls_token": ("params/cls_token", "copy"),
        "pos_embed": ("params/pos_embed", "pos_noclass" if registers else "pos"),
        "patch_embed.proj.weight": ("params/patch_embed/kernel", "conv"),
        "patch_embed.proj.bias": ("params/patch_embed/bias", "copy"),
        "norm.weight": ("params/norm/scale", "copy"),
        "norm.bias": ("params/norm/bias", "copy"),
    }
    for i in range(depth):
        for torch_name, ours in (
            ("norm1", "norm1"),
            ("norm2", "norm2"),
        ):
            rules[f"blocks.{i}.{torch_name}.weight"] = (f"params/blocks/{i}/{ours}/scale", "copy")
            rules[f"blocks.{i}.{torch_name}.bias"] = (f"params/blocks/{i}/{ours}/bias", "copy")
        for linear in ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2"):
            path = f"params/blocks/{i}/{linear.replace('.', '/')}"
            rules[f"blocks.{i}.{linear}.weight"] = (f"{path}/kernel", "linear")
            rules[f"blocks.{i}.{linear}.bias"] = (f"{path}/bias", "copy")
        if layer_scale:
            for ls in ("ls1", "ls2"):
                rules[f"blocks.{i}.{ls}.gamma"] = (f"params/blocks/{i}/{ls}/gamma", "copy")
    if registers:
        rules["reg_token"] = ("params/reg_token", "copy")
    if head:
        rules["head.weight"] = ("head/params/linear/kernel", "linear")
        rules["head.bias"] = ("head/params/linear/bias", "copy")
    return rules


def _bn_rules(torch_name: str, ours: str) -> dict[str, tuple[str, str]]:
    return {
        f"{torch_name}.weight": (f"params/{ours}/scale", "copy"),
        f"{torch_name}.bias": (f"params/{ours}/bias", "copy"),
        f"{torch_name}.running_mean": (f"batch_stats/{ours}/mean", "copy"),
        f"{torch_name}.running_var": (f"batch_stats/{ours}/var", "copy"),
        f"{torch_name}.num_batches_tracked": ("", "count"),
    }


def resnet_rules(backbone: str, *, head: bool) -> dict[str, tuple[str, str]]:
    """torchvision / timm ResNet names (``conv1``, ``bn1``, ``layer{1-4}.{j}``, ``downsample``,
    ``fc``) -> export paths."""
    convs = 3 if backbone == "resnet50" else 2
    rules = {"conv1.weight": ("params/conv1/kernel", "conv"), **_bn_rules("bn1", "bn1")}
    for s, blocks in enumerate(RESNET_STAGES[backbone]):
        for j in range(blocks):
            torch_block, ours = f"layer{s + 1}.{j}", f"stages/{s}/{j}"
            for k in range(1, convs + 1):
                rules[f"{torch_block}.conv{k}.weight"] = (f"params/{ours}/conv{k}/kernel", "conv")
                rules.update(_bn_rules(f"{torch_block}.bn{k}", f"{ours}/bn{k}"))
            if j == 0 and (s > 0 or backbone == "resnet50"):
                conv = f"{torch_block}.downsample.0.weight"
                rules[conv] = (f"params/{ours}/shortcut/conv/kernel", "conv")
                rules.update(_bn_rules(f"{torch_block}.downsample.1", f"{ours}/shortcut/bn"))
    if head:
        rules["fc.weight"] = ("head/params/linear/kernel", "linear")
        rules["fc.bias"] = ("head/params/linear/bias", "copy")
    return rules


def _vit_model(size: str, patch: int, img_size: int, **overrides) -> dict:
    if size not in VIT_SHAPES:
        raise ValueError(f"ViT size {size!r} is not supported; valid: {sorted(VIT_SHAPES)}.")
    model = {"backbone": f"vit_{size}", "patch_size": patch, "img_size": img_size, "pool": "cls"}
    return model | overrides


def _resnet_model(backbone: str) -> dict:
    return {"backbone": backbone, "width": 64, "stem": "imagenet", "zero_init_residual": True}


_TIMM_VIT = re.compile(r"vit_(\w+?)_patch(\d+)_(\d+)$")
# timm's DINOv2 ViTs (Oquab et al., 2024): 518 px, LayerScale, with or without 4 registers
# (Darcet et al., 2024). ViT-g/14's SwiGLU MLP is not an ssl_jax block.
_TIMM_DINOV2 = re.compile(r"vit_(small|base|large)_patch14(_reg(\d+))?_dinov2$")
DINOV2_LAYER_SCALE = 1e-5  # only the initial value: the checkpoint's gammas replace it


def _timm(model: str, name: str) -> Arch:
    base, _, tag = model.partition(".")
    if base in RESNET_STAGES:
        return Arch(
            name, _resnet_model(base), IMAGENET_MEAN, IMAGENET_STD, "supervised", head_prefix="fc."
        )
    dinov2 = _TIMM_DINOV2.match(base)
    if dinov2 is not None:
        registers = int(dinov2.group(3) or 0)
        extra = {"layer_scale": DINOV2_LAYER_SCALE} | (
            {"num_registers": registers} if registers else {}
        )
        model = _vit_model(dinov2.group(1), 14, 518, **extra)
        return Arch(name, model, IMAGENET_MEAN, IMAGENET_STD, "dinov2", "target")
    match = _TIMM_VIT.match(base)
    if match is None:
        raise ValueError(
            f"timm model {base!r} is not supported; supported: vit_{{{','.join(VIT_SHAPES)}}}"
            f"_patch{{14,16}}_{{224,...}}[.tag], "
            "vit_{small,base,large}_patch14[_reg4]_dinov2[.tag] "
            f"and {sorted(RESNET_STAGES)}."
        )
    size, patch, img = match.group(1), int(match.group(2)), int(match.group(3))
    method = {"dino": "dino", "mae": "mae"}.get(tag.split("_")[0], "supervised")
    imagenet = any(tag.startswith(t) for t in IMAGENET_TAGS)
    mean, std = (IMAGENET_MEAN, IMAGENET_STD) if imagenet else (INCEPTION_MEAN, INCEPTION_STD)
    network = "target" if method == "dino" else "online"
    return Arch(name, _vit_model(size, patch, img), mean, std, method, network)


def _torchvision(model: str, name: str) -> Arch:
    if model not in RESNET_STAGES:
        raise ValueError(
            f"torchvision model {model!r} is not supported; valid: {sorted(RESNET_STAGES)}."
        )
    return Arch(
        name, _resnet_model(model), IMAGENET_MEAN, IMAGENET_STD, "supervised", head_prefix="fc."
    )


# DINO's releases (facebookresearch/dino hubconf): backbone-only teacher weights in timm's
# names, or a full training checkpoint holding teacher and student with their heads.
_DINO = {
    "vits16": ("small", 16),
    "vits8": ("small", 8),
    "vitb16": ("base", 16),
    "vitb8": ("base", 8),
}
_DINO_OTHER = (
    "student.",
    "teacher.head.",
    "optimizer.",
    "epoch",
    "args",
    "dino_loss.",
    "fp16_scaler.",
)


def _dino(model: str, name: str) -> Arch:
    prefixes = ("teacher.backbone.", "teacher.module.backbone.", "")
    if model == "resnet50":
        return Arch(
            name,
            _resnet_model("resnet50"),
            IMAGENET_MEAN,
            IMAGENET_STD,
            "dino",
            "target",
            prefixes,
            _DINO_OTHER,
            head_prefix="fc.",
        )
    if model not in _DINO:
        raise ValueError(f"dino model {model!r} is unknown; valid: {[*_DINO, 'resnet50']}.")
    size, patch = _DINO[model]
    return Arch(
        name,
        _vit_model(size, patch, 224),
        IMAGENET_MEAN,
        IMAGENET_STD,
        "dino",
        "target",
        prefixes,
        _DINO_OTHER,
    )


# MAE's releases (facebookresearch/mae): {"model": encoder in timm's names}; the
# visualisation checkpoints also hold the decoder, fine-tuned ones a head and fc_norm.
_MAE = {
    "vit_base_patch16": ("base", 16),
    "vit_large_patch16": ("large", 16),
    "vit_huge_patch14": ("huge", 14),
}
_MAE_OTHER = ("model.decoder_", "model.mask_token", "optimizer.", "epoch", "scaler.", "args")


def _mae(model: str, name: str) -> Arch:
    if model not in _MAE:
        raise ValueError(f"mae model {model!r} is unknown; valid: {sorted(_MAE)}.")
    size, patch = _MAE[model]
    return Arch(
        name,
        _vit_model(size, patch, 224),
        IMAGENET_MEAN,
        IMAGENET_STD,
        "mae",
        "online",
        ("model.", ""),
        _MAE_OTHER,
    )


# MoCo v3's releases (facebookresearch/moco-v3): {"state_dict": {"module.base_encoder.*",
# "module.momentum_encoder.*", "module.predictor.*"}}; the encoders' ``head`` / ``fc`` is the
# projection MLP. Its ViT-S has 12 heads (moco-v3 vits.py), not timm's 6.
_MOCOV3 = {"vit_small": ("small", {"num_heads": 12}), "vit_base": ("base", {})}
_MOCOV3_OTHER = (
    "state_dict.module.momentum_encoder.",
    "state_dict.module.predictor.",
    "optimizer.",
    "epoch",
    "arch",
    "scaler.",
)


def _mocov3(model: str, name: str) -> Arch:
    prefixes = ("state_dict.module.base_encoder.", "module.base_encoder.", "")
    if model == "resnet50":
        return Arch(
            name,
            _resnet_model("resnet50"),
            IMAGENET_MEAN,
            IMAGENET_STD,
            "mocov3",
            "online",
            prefixes,
            _MOCOV3_OTHER,
            "fc.",
            head_is_projector=True,
        )
    if model not in _MOCOV3:
        raise ValueError(f"mocov3 model {model!r} is unknown; valid: {[*_MOCOV3, 'resnet50']}.")
    size, overrides = _MOCOV3[model]
    return Arch(
        name,
        _vit_model(size, 16, 224, **overrides),
        IMAGENET_MEAN,
        IMAGENET_STD,
        "mocov3",
        "online",
        prefixes,
        _MOCOV3_OTHER,
        head_is_projector=True,
    )


SOURCES = {
    "timm": _timm,
    "torchvision": _torchvision,
    "dino": _dino,
    "mae": _mae,
    "mocov3": _mocov3,
}


def get_arch(name: str) -> Arch:
    """The :class:`Arch` of ``SOURCE:MODEL``; ``ValueError`` naming the valid sources."""
    source, sep, model = name.partition(":")
    if not sep or source not in SOURCES:
        raise ValueError(
            f"--arch {name!r}: expected SOURCE:MODEL with SOURCE one of {sorted(SOURCES)}, "
            "e.g. timm:vit_small_patch16_224.dino or torchvision:resnet50."
        )
    return SOURCES[source](model, name)


__all__ = ["SOURCES", "Arch", "get_arch", "resnet_rules", "vit_rules"]
