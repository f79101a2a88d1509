"""k-means clustering of a frozen encoder's features, scored, ``run(config, workdir)``.

No label is used but to score: the L2-normalised features of ``config.cluster.split``
(``test`` by default; ``train``, or ``both`` concatenated) are clustered by k-means into
``k`` clusters (-1: the number of classes; k-means++ seeds, ``restarts`` seeded restarts,
the lowest inertia kept) and scored by accuracy after Hungarian matching, NMI and ARI (all
in %) in ``WORKDIR/results.json``. The protocol: :mod:`ssl_jax.evaluators.clustering`.
Baselines: ``config.random_init``, ``config.raw_pixels``; ``config.data.*`` evaluates on
another dataset than pretrained on.
"""

import ml_collections
import numpy as np

from ssl_jax.evaluators.clustering import cluster_options, cluster_scores, cluster_splits
from ssl_jax.metrics import write_results
from ssl_jax.parallel import make_mesh
from ssl_jax.paths import resolve
from ssl_jax.programs.common import split_features


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
    mesh = make_mesh(config.mesh.num_devices)
    splits = cluster_splits(config.cluster.split)
    options = cluster_options(config.cluster)
    feats, info = split_features(config, mesh, splits)
    x = np.concatenate([feats[s][0] for s in splits])
    y = np.concatenate([feats[s][1] for s in splits])
    k = len(np.unique(y)) if options["k"] == -1 else options["k"]
    scores = cluster_scores(x, y, seed=config.seed, **{**options, "k": k})
    results = {
        **scores,
        "program": "cluster",
        "split": config.cluster.split,
        "k": k,
        "num_clustered": len(x),
        **info,
    }
    write_results(resolve(workdir), results)
    return results
