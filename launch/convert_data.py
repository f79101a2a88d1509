"""Write a dataset (image folder, npz, tfds, digits) as ArrayRecord shards with a manifest.

  python launch/convert_data.py --config configs/convert_data.py --workdir OUT \\
    --config.data.name=folder --config.data.path=/data/images [--config.key=value ...]

Rerun the same command to resume. Train on the result with --config.data.name=records
--config.data.path=OUT.
"""

from ssl_jax.programs import cli, convert_data

if __name__ == "__main__":
    cli.launch(convert_data.run)
