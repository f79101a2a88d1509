"""Linear probe on a frozen pretrained encoder.

  python launch/linear_probe.py --config configs/CONFIG.py[:runlocal] --workdir DIR \\
    [--config.key=value ...]
"""

from ssl_jax.programs import cli, linear_probe

if __name__ == "__main__":
    cli.launch(linear_probe.run)
