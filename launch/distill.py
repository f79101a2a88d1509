"""Distil a frozen self-supervised teacher into a (smaller) student.

  python launch/distill.py --config configs/distill_cifar10.py:METHOD --config.teacher=DIR \\
    --workdir DIR [--config.key=value ...]

METHOD (the config variant, which sets the method section): seed (default), mse, cosine, kd
(a teacher with a categorical head: a fine-tuning run) or clusterfit.
"""

from ssl_jax.programs import cli, distill

if __name__ == "__main__":
    cli.launch(distill.run)
