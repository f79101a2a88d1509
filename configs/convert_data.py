"""Convert a dataset to ArrayRecord shards, read back with ``--config.data.name=records``.

  python launch/convert_data.py --config configs/convert_data.py --workdir /data/cifar10_records \
    --config.data.name=npz --config.data.path=../shared/data/cifar10
  python launch/convert_data.py --config configs/convert_data.py --workdir /data/imagenet_records \
    --config.data.name=folder --config.data.path=/data/imagenet

An image folder's files are stored as they are (decoded in the training pipeline's workers);
npz, tfds and digits store raw pixels, resized first when ``data.image_size`` is set. Rerunning
the same command resumes an interrupted conversion.
"""

import ml_collections

from ssl_jax.config import data_defaults


def get_config(arg=None):
    c = ml_collections.ConfigDict()
    c.data = data_defaults(name="folder")
    c.splits = "train,test"  # comma-separated
    c.shard_size = 10_000  # records per shard
    c.progress = True
    if arg == "runlocal":
        c.data.name = "digits"
        c.shard_size = 500
    elif arg is not None:
        raise ValueError(f"Unknown config variant {arg!r}; valid: runlocal.")
    c.lock()
    return c
