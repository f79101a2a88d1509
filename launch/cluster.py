"""k-means clustering (accuracy, NMI, ARI) of a frozen pretrained encoder's features.

  python launch/cluster.py --config configs/cluster.py[:runlocal] --workdir DIR \\
    --config.pretrained=RUN [--config.key=value ...]
"""

from ssl_jax.programs import cli, cluster

if __name__ == "__main__":
    cli.launch(cluster.run)
