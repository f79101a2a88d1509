"""Public PyTorch weights in, ssl_jax encoders out: timm / torchvision / official SSL
releases imported as exports, exports written back as safetensors (timm's or ssl_jax's
names). See ``docs/weights.md``.

- :mod:`ssl_jax.weights.io`: state_dict files as flat ``{name: numpy array}``;
- :mod:`ssl_jax.weights.layouts`: architecture names and where each tensor goes;
- :mod:`ssl_jax.weights.convert`: :func:`import_weights`, :func:`export_weights`.
"""

from ssl_jax.weights.convert import (
    FORMATS,
    convert_state_dict,
    export_tensors,
    export_weights,
    import_weights,
)
from ssl_jax.weights.io import read_state_dict, write_safetensors
from ssl_jax.weights.layouts import SOURCES, Arch, get_arch

__all__ = [
    "FORMATS",
    "SOURCES",
    "Arch",
    "convert_state_dict",
    "export_tensors",
    "export_weights",
    "get_arch",
    "import_weights",
    "read_state_dict",
    "write_safetensors",
]
