"""Linear probe on a frozen pretrained encoder: a thin entry point.

  python launch/linear_probe.py --config configs/CONFIG.py[:runlocal] --workdir DIR \
    [--config.key=value ...]
"""

from absl import app, flags
from ml_collections import config_flags

from ssl_jax.programs import cli, linear_probe

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file (configs/*.py[:variant]).")
_WORKDIR = flags.DEFINE_string("workdir", None, "Output directory (checkpoints, metrics, results).")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    cli.main(linear_probe.run, _CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
    app.run(main)
