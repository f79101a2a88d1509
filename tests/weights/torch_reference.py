"""PyTorch reference fixtures for tests/weights (run with a Python that has torch, timm and
safetensors: ``$SSL_JAX_TORCH_PYTHON tests/weights/torch_reference.py OUT [--slow]``).

For every case: random-weight timm / torchvision models (weights perturbed so that no
LayerNorm or BatchNorm is the identity; BatchNorm statistics estimated on random batches,
so activations stay O(1)), saved as ``OUT/CASE.safetensors``; uint8 test images
``OUT/CASE_images.npy`` and the models' pooled features ``OUT/CASE_features_SIZE.npy``
(eval mode, input ``(x / 255 - mean) / std``); timm's own input normalisation of the tags
the importer knows in ``OUT/timm_cfgs.json``. ``--check-export FILE NAME SIZE`` instead
loads an ssl_jax ``format="timm"`` export with ``timm.create_model(NAME,
pretrained_cfg_overlay=dict(file=FILE))`` and writes its features of ``OUT/..._images.npy``.
"""

import json
import sys

import numpy as np
import safetensors.torch
import timm
import torch
import torchvision

torch.manual_seed(0)
torch.set_num_threads(2)
MEAN = {"imagenet": (0.485, 0.456, 0.406), "inception": (0.5, 0.5, 0.5)}
STD = {"imagenet": (0.229, 0.224, 0.225), "inception": (0.5, 0.5, 0.5)}
# case -> (constructor, sizes the features are computed at, normalisation)
CASES = {
    "vit_patch16": (
        lambda: timm.create_model("vit_tiny_patch16_224", depth=2),
        (224, 256),
        "inception",
    ),
    "vit_patch14": (
        lambda: timm.create_model("vit_tiny_patch16_224", patch_size=14, depth=2, num_classes=0),
        (224, 168),
        "imagenet",
    ),
    "torchvision_resnet18": (lambda: torchvision.models.resnet18(), (64,), "imagenet"),
    "dinov2": (
        lambda: timm.create_model("vit_small_patch14_dinov2", depth=2, img_size=112),
        (112, 140),
        "imagenet",
    ),
    "dinov2_reg4": (
        lambda: timm.create_model("vit_small_patch14_reg4_dinov2", depth=2, img_size=112),
        (112, 84),
        "imagenet",
    ),
}
TIMM_NAMES = {
    "vit_patch16": ("vit_tiny_patch16_224", {}),
    "vit_patch14": ("vit_tiny_patch16_224", {"patch_size": 14, "num_classes": 0}),
    "dinov2": ("vit_small_patch14_dinov2", {}),
    "dinov2_reg4": ("vit_small_patch14_reg4_dinov2", {}),
}
SLOW_CASES = {
    "torchvision_resnet50": (lambda: torchvision.models.resnet50(), (64,), "imagenet"),
    "timm_resnet50": (lambda: timm.create_model("resnet50"), (64,), "imagenet"),
}


def _ends_branch(name: str) -> bool:
    return name.startswith("layer") and name.endswith(("bn3.weight", "downsample.1.weight"))


def randomize(model: torch.nn.Module) -> None:
    """Perturb every parameter (no norm scale left at 1 or 0); calibrate BatchNorm
    statistics on random batches."""
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or "token" in name or "pos_embed" in name:
                p.add_(0.05 * torch.randn(p.shape, generator=gen))
            elif p.ndim == 1 and _ends_branch(name):
                # A residual branch's (and projection shortcut's) last BatchNorm: small scales
                # keep the features O(1), as a trained ResNet's, where 1e-4 is a strict bound.
                p.copy_(0.05 + 0.15 * torch.rand(p.shape, generator=gen))
            elif p.ndim == 1:  # norm scales
                p.copy_(0.5 + torch.rand(p.shape, generator=gen))
            else:
                p.mul_(1.0 + 0.1 * torch.randn(p.shape, generator=gen))
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    if bns:
        for m in bns:
            m.momentum = None  # cumulative average over the calibration batches
        model.train()
        with torch.no_grad():
            for _ in range(3):
                model(torch.randn(8, 3, 64, 64, generator=gen))
    model.eval()


def pooled(model, x):
    if hasattr(model, "forward_head"):
        return model.forward_head(model.forward_features(x), pre_logits=True)
    # torchvision ResNet: everything up to fc.
    m = model
    x = m.maxpool(m.relu(m.bn1(m.conv1(x))))
    x = m.layer4(m.layer3(m.layer2(m.layer1(x))))
    return torch.flatten(m.avgpool(x), 1)


def features(model, images: np.ndarray, norm: str) -> np.ndarray:
    x = (images.astype(np.float32) / 255.0 - np.float32(MEAN[norm])) / np.float32(STD[norm])
    with torch.no_grad():
        return pooled(model, torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()).numpy()


def resized(model, name: str, size: int):
    """The ViT ``model`` at another input size, position embeddings resampled as timm does
    when loading a checkpoint into a model of another size."""
    timm_name, kwargs = TIMM_NAMES[name]
    other = timm.create_model(timm_name, img_size=size, depth=2, **kwargs)
    state = dict(model.state_dict())
    grid = size // other.patch_embed.patch_size[0]
    prefix = 0 if other.no_embed_class else 1
    state["pos_embed"] = timm.layers.resample_abs_pos_embed(
        state["pos_embed"], (grid, grid), num_prefix_tokens=prefix
    )
    other.load_state_dict(state)
    return other.eval()


def main(out: str, slow: bool) -> None:
    rng = np.random.default_rng(0)
    cases = CASES | (SLOW_CASES if slow else {})
    for name, (make, sizes, norm) in cases.items():
        model = make()
        randomize(model)
        safetensors.torch.save_file(
            {k: v.contiguous() for k, v in model.state_dict().items()}, f"{out}/{name}.safetensors"
        )
        for size in sizes:
            images = rng.integers(0, 256, (3, size, size, 3), dtype=np.uint8)
            np.save(f"{out}/{name}_images_{size}.npy", images)
            sized = model if size == sizes[0] else resized(model, name, size)
            np.save(f"{out}/{name}_features_{size}.npy", features(sized, images, norm))
    cfgs = {}
    for tag in (
        "vit_small_patch16_224.dino",
        "vit_base_patch16_224.mae",
        "vit_small_patch16_224.augreg_in21k_ft_in1k",
        "resnet50.a1_in1k",
    ):
        cfg = timm.models.get_pretrained_cfg(tag.split(".")[0] + "." + tag.split(".")[1])
        cfgs[tag] = {"mean": list(cfg.mean), "std": list(cfg.std)}
    with open(f"{out}/timm_cfgs.json", "w") as f:
        json.dump(cfgs, f)


def check_export(out: str, file: str, name: str, size: int, images: str, norm: str) -> None:
    kwargs = {"depth": 2} if name.startswith("vit") else {}
    model = timm.create_model(
        name, pretrained=True, pretrained_cfg_overlay={"file": file}, **kwargs
    ).eval()
    np.save(f"{out}/export_features.npy", features(model, np.load(images), norm))


if __name__ == "__main__":
    if sys.argv[2:3] == ["--check-export"]:
        check_export(sys.argv[1], *sys.argv[3:5], int(sys.argv[5]), *sys.argv[6:8])
    else:
        main(sys.argv[1], "--slow" in sys.argv)
