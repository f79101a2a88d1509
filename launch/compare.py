"""One table of several workdirs' results (linear probe, kNN, ...) across encoders.

  python launch/compare.py --config configs/compare.py --workdir DIR \\
    --config.glob='runs/*/probe*' [--config.key=value ...]
"""

from ssl_jax.programs import cli, compare

if __name__ == "__main__":
    cli.launch(compare.run, show=lambda results: results["table"])
