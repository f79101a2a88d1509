"""Fine-tune a pretrained encoder (or its random-init baseline) end to end.

  python launch/finetune.py --config configs/finetune.py[:runlocal] \\
    --config.pretrained=RUN_DIR --workdir DIR [--config.key=value ...]
"""

from ssl_jax.programs import cli, finetune

if __name__ == "__main__":
    cli.launch(finetune.run)
