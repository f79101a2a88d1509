"""Write a run's encoder export as a .safetensors file for PyTorch.

  python launch/export_weights.py RUN --format timm [--out FILE] [--step N]

``--format timm``: timm / torchvision names and layouts, loadable with
``timm.create_model(NAME, pretrained=True, pretrained_cfg_overlay=dict(file=FILE))``;
``--format safetensors``: ssl_jax's own names and layouts (any backbone), imported back with
``launch/import_weights.py --arch ssl_jax``. The spec is in the file's metadata. Default
FILE: RUN/weights/FORMAT.safetensors.
"""

import os
import sys

from absl import app, flags

from ssl_jax.weights import FORMATS, export_weights

_FORMAT = flags.DEFINE_enum("format", "timm", list(FORMATS), "Names and layouts of the file.")
_OUT = flags.DEFINE_string("out", None, "Output file (default RUN/weights/FORMAT.safetensors).")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default: the newest).")


def main(argv):
    if len(argv) != 2:
        sys.exit("usage: launch/export_weights.py RUN --format timm|safetensors [--out FILE]")
    run = argv[1]
    out = _OUT.value or f"{run}/weights/{_FORMAT.value}.safetensors"
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    try:
        spec = export_weights(run, out, format=_FORMAT.value, step=_STEP.value)
    except (ValueError, ImportError) as e:
        sys.exit(f"export_weights: {e}")
    print(f"Wrote {out}: {spec['model']['backbone']} step {spec['step']} ({_FORMAT.value}).")


if __name__ == "__main__":
    app.run(main)
