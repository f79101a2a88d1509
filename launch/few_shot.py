"""Few-shot (N-way K-shot episodes) evaluation of a frozen pretrained encoder.

  python launch/few_shot.py --config configs/few_shot.py[:runlocal] --workdir DIR \\
    --config.pretrained=RUN [--config.key=value ...]
"""

from ssl_jax.programs import cli, few_shot

if __name__ == "__main__":
    cli.launch(few_shot.run)
