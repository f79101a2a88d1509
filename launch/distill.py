"""Distil a frozen self-supervised teacher into a (smaller) student.

  python launch/distill.py --config configs/distill_cifar10.py --config.teacher=DIR \\
    --workdir DIR [--config.method.name=seed|mse|cosine|kd|clusterfit] [--config.key=value ...]
"""

from ssl_jax.programs import cli, distill

if __name__ == "__main__":
    cli.launch(distill.run)
