"""Run-directory paths are URIs: a local folder or ``gs://bucket/run``, through ``etils.epath``.

Workdirs, exports, teachers, resume and init sources and data folders enter through
:func:`resolve`; from there on they are ``epath.Path`` objects, read and written with their own
methods (``/``, ``exists``, ``mkdir``, ``read_text``, ``write_bytes``, ``replace``), never
``os.path``, ``open`` or ``shutil``, which only know local files (``os.path.abspath`` turns
``gs://bucket/run`` into the local folder ``./gs:/bucket/run``). Orbax takes the same paths.
"""

import os

from etils import epath


def is_remote(path: epath.PathLike) -> bool:
    """Whether ``path`` is a URI with a scheme (``gs://``, ``s3://``), as epath decides."""
    return "://" in os.fspath(path)


def resolve(path: epath.PathLike) -> epath.Path:
    """``path`` as an ``epath.Path``: a URI unchanged, a local path with ``~`` expanded and
    made absolute (normalised as ``os.path.abspath`` does, symbolic links kept).

    Raises ``ValueError`` for a scheme epath cannot open.
    """
    if not is_remote(path):
        return epath.Path(os.path.abspath(os.path.expanduser(path)))
    try:
        return epath.Path(path)
    except KeyError:
        raise ValueError(
            f"{os.fspath(path)!r}: unsupported URI scheme. Use a local path or one of "
            "gs://, s3://, az://, hf://."
        ) from None
