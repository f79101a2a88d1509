"""Pretrain a self-supervised model.

  python launch/pretrain.py --config configs/CONFIG.py[:runlocal] --workdir DIR \\
    [--config.key=value ...]
"""

from ssl_jax.programs import cli, pretrain

if __name__ == "__main__":
    cli.launch(pretrain.run)
