"""kNN evaluation of a frozen pretrained encoder.

  python launch/knn.py --config configs/CONFIG.py[:runlocal] --workdir DIR \\
    [--config.key=value ...]
"""

from ssl_jax.programs import cli, knn

if __name__ == "__main__":
    cli.launch(knn.run)
