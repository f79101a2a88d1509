"""Compare the results of several programs' workdirs in one table (ssl_jax/programs/compare.py).

  python launch/compare.py --config configs/compare.py --workdir runs/compare \
    --config.workdirs="('runs/simclr/probe', 'runs/simclr/knn', 'runs/random_probe')"
  python launch/compare.py --config configs/compare.py --workdir runs/compare \
    --config.glob='runs/cifar10_methods/*/*'

Prints the table and writes WORKDIR/compare.md, compare.json and compare.png. Rows are the
encoders the results were measured on (pretrained run and step, random init, raw pixels);
--config.group_by=workdir gives a row per workdir instead. Columns name the program (each
results.json says which; older files without it: "unknown program") and, when the results span
several datasets, the dataset. In the plot, a random-init row is a dashed reference line.
"""

import ml_collections

from ssl_jax.programs.compare import DEFAULT_EXCLUDE, DEFAULT_METRICS


def get_config(arg=None):
    if arg not in (None, "runlocal"):
        raise ValueError(f"Unknown config variant {arg!r}; valid: runlocal.")
    c = ml_collections.ConfigDict()
    c.workdirs = ()  # workdirs or results.json files; each may be a glob pattern
    c.glob = ""  # one more pattern (** recurses), e.g. "runs/*/probe"
    c.metrics = DEFAULT_METRICS  # fnmatch patterns of the results keys to show
    c.exclude = DEFAULT_EXCLUDE  # ... and of those to leave out
    c.group_by = "encoder"  # encoder | workdir
    c.title = ""
    c.random_init_line = True  # plot random-init rows as horizontal reference lines, not bars
    c.lock()
    return c
