"""Whether a recipe fits a TPU topology: compile its train step ahead of time, no TPU, no data.

  python launch/plan.py --config configs/simclr_imagenet.py --topology v5e-32 --workdir DIR \\
    [--find_batch] [--hbm_gib=GIB] [--config.key=value ...]

Writes DIR/plan.json and DIR/plan.md, prints the table; a recipe that does not fit exits
non-zero with one line saying what to change. TPU topologies need libtpu
(``pip install -e .[tpu]``); ``--topology local`` compiles for this machine's devices.
"""

import sys

from absl import flags

from ssl_jax.programs import cli, plan

_TOPOLOGY = flags.DEFINE_string(
    "topology", "local", "v5e:4x8-style libtpu name, an alias (v5e-16, v5p-8, v4-8...) or local."
)
_FIND_BATCH = flags.DEFINE_bool(
    "find_batch", False, "Also bisect the largest global batch that fits (one compile a probe)."
)
_HBM_GIB = flags.DEFINE_float("hbm_gib", None, "Memory of one chip in GiB, instead of the chip's.")


def _run(config, workdir):
    try:
        return plan.run(
            config,
            workdir,
            topology=_TOPOLOGY.value,
            find_batch=_FIND_BATCH.value,
            hbm_gib=_HBM_GIB.value,
        )
    except plan.DoesNotFit as e:
        print(plan.show(e.plan))
        sys.exit(f"plan: {e}")
    except plan.PlanError as e:
        sys.exit(f"plan: {e}")


if __name__ == "__main__":
    # A cached executable would make the reported compile time that of a cache read.
    flags.FLAGS.set_default("compilation_cache", "")
    cli.launch(_run, show=plan.show)
