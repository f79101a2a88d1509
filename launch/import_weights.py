"""Import a PyTorch checkpoint (timm, torchvision, DINO, MAE, MoCo v3) as an ssl_jax export.

  python launch/import_weights.py --arch timm:vit_small_patch16_224.dino \\
    --checkpoint model.safetensors --workdir runs/dino_vits16 [--img_size 160]

ARCH is SOURCE:MODEL (docs/weights.md lists them). The workdir then reads as
``--config.pretrained=DIR`` (kNN, linear probe, few-shot, fine-tuning) and as
``--config.ckpt.init_from=DIR`` (continued pretraining). With network access, a timm name
may be given instead of a file: ``--checkpoint timm:vit_small_patch16_224.dino`` downloads it
through timm (needs ``pip install -e .[weights]``).
"""

import sys

from absl import app, flags, logging

from ssl_jax.weights import import_weights

_ARCH = flags.DEFINE_string("arch", None, "SOURCE:MODEL, e.g. timm:vit_small_patch16_224.dino.")
_CHECKPOINT = flags.DEFINE_string(
    "checkpoint", None, ".safetensors / .pth / .bin file, or timm:NAME to download."
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory the export is written to.")
_IMG_SIZE = flags.DEFINE_integer(
    "img_size", None, "Input size of the export (a ViT's position embeddings are resampled)."
)
_MEAN = flags.DEFINE_list("mean", None, "Input mean per channel, instead of the source's.")
_STD = flags.DEFINE_list("std", None, "Input std per channel, instead of the source's.")
flags.mark_flags_as_required(["arch", "checkpoint", "workdir"])


def _download(name: str, workdir: str) -> str:
    """A timm model's pretrained weights as a safetensors file (network needed)."""
    import safetensors.torch
    import timm

    model = timm.create_model(name, pretrained=True)
    path = f"{workdir}/source.safetensors"
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    safetensors.torch.save_file(state, path)
    return path


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)  # Orbax logs every file it writes at INFO
    checkpoint = _CHECKPOINT.value
    if checkpoint.startswith("timm:"):
        import os

        os.makedirs(_WORKDIR.value, exist_ok=True)
        checkpoint = _download(checkpoint.removeprefix("timm:"), _WORKDIR.value)
    floats = lambda values: None if values is None else [float(v) for v in values]  # noqa: E731
    try:
        spec = import_weights(
            _ARCH.value,
            checkpoint,
            _WORKDIR.value,
            img_size=_IMG_SIZE.value,
            mean=floats(_MEAN.value),
            std=floats(_STD.value),
        )
    except (ValueError, FileNotFoundError, ImportError) as e:
        sys.exit(f"import_weights: {e}")
    print(
        f"Wrote {_WORKDIR.value}: {spec['model']['backbone']} ({spec['method']}, "
        f"{spec['feature_dim']} features, input {spec['input']['size']}px, head "
        f"{spec['head'] or 'none'})."
    )


if __name__ == "__main__":
    app.run(main)
