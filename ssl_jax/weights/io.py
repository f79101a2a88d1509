"""Reading and writing PyTorch-side weight files as flat ``{name: numpy array}`` dicts.

``.safetensors`` files are read and written with the ``safetensors`` package's NumPy API
(no PyTorch); ``.pth`` / ``.pt`` / ``.bin`` / ``.tar`` pickles need PyTorch, imported only
then. Nested checkpoints (``{"model": {...}}``, ``{"state_dict": {...}}``, a release's
several networks) are flattened with ``.``-joined names; the layouts
(:mod:`ssl_jax.weights.layouts`) pick the network they want from the flat names.
"""

import json
from collections.abc import Mapping

import numpy as np
from etils import epath

TORCH_SUFFIXES = (".pth", ".pt", ".bin", ".tar", ".ckpt")
EXTRA = "pip install -e .[weights]"


def _safetensors_numpy():
    try:
        import safetensors.numpy
    except ImportError as e:
        raise ImportError(
            f"Reading or writing .safetensors files needs the safetensors package: {EXTRA} "
            "(or pip install safetensors)."
        ) from e
    return safetensors.numpy


def _flatten(tree, prefix: str, out: dict) -> dict:
    if isinstance(tree, Mapping):
        for key, value in tree.items():
            _flatten(value, f"{prefix}{key}.", out)
        return out
    if hasattr(tree, "detach"):  # a torch.Tensor
        tensor = tree.detach().cpu()
        if str(tensor.dtype) == "torch.bfloat16":
            tensor = tensor.float()
        out[prefix[:-1]] = tensor.numpy()
    elif isinstance(tree, np.ndarray):
        out[prefix[:-1]] = tree
    # Anything else (an epoch counter, the argparse namespace of a release) is not a tensor.
    return out


def read_state_dict(path: epath.PathLike) -> dict[str, np.ndarray]:
    """The tensors of a weight file as ``{dotted name: array}`` (``.safetensors`` or a torch
    pickle); ``ValueError`` for another suffix, ``ImportError`` naming the extra to install."""
    path = epath.Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} does not exist.")
    if path.suffix == ".safetensors":
        return dict(_safetensors_numpy().load(path.read_bytes()))
    if path.suffix in TORCH_SUFFIXES:
        try:
            import torch
        except ImportError as e:
            raise ImportError(
                f"{path.name} is a PyTorch pickle, which needs torch to read: {EXTRA} (or pip "
                "install torch), or convert it to .safetensors where torch is installed."
            ) from e
        with path.open("rb") as f:
            tree = torch.load(f, map_location="cpu", weights_only=True)
        return _flatten(tree, "", {})
    raise ValueError(
        f"checkpoint {path.name}: unknown suffix {path.suffix!r}; expected .safetensors or one "
        f"of {list(TORCH_SUFFIXES)} (a PyTorch state_dict)."
    )


def write_safetensors(
    path: epath.PathLike, tensors: Mapping[str, np.ndarray], metadata: Mapping | None = None
) -> None:
    """``tensors`` to ``path`` as safetensors; ``metadata`` (JSON-able) under the header key
    ``ssl_jax`` (safetensors metadata are strings)."""
    meta = None if metadata is None else {"ssl_jax": json.dumps(metadata)}
    arrays = {k: np.ascontiguousarray(v) for k, v in tensors.items()}
    epath.Path(path).write_bytes(_safetensors_numpy().save(arrays, metadata=meta))


def read_safetensors_metadata(path: epath.PathLike) -> dict | None:
    """The ``ssl_jax`` metadata :func:`write_safetensors` stored, or None (read from the
    header only: 8 bytes of length, then JSON)."""
    with epath.Path(path).open("rb") as f:
        size = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(size))
    text = header.get("__metadata__", {}).get("ssl_jax")
    return None if text is None else json.loads(text)


__all__ = ["read_safetensors_metadata", "read_state_dict", "write_safetensors"]
