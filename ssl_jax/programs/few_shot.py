"""Few-shot classification on a frozen encoder's features, ``run(config, workdir)``.

N-way K-shot episodes (``config.few_shot``: ``ways``, -1 for all-way; ``shots``) with
support images from the train split and ``queries`` query images per class from the test
split (``query_split="train"``: from the train split, disjoint from each episode's
support), classified by prototypes (Snell et al. 2017) and logistic regression (Tian et al.
2020) on L2-normalised features; the mean accuracy over ``episodes`` seeded episodes
(``config.seed``) with its 95% confidence interval, in ``WORKDIR/results.json``. The
protocol: :mod:`ssl_jax.evaluators.few_shot`. Baselines: ``config.random_init``,
``config.raw_pixels``; ``config.data.*`` evaluates on another dataset than pretrained on.
"""

import ml_collections
import numpy as np

from ssl_jax.evaluators.few_shot import (
    check_few_shot,
    check_query_split,
    few_shot_accuracies,
    few_shot_options,
)
from ssl_jax.metrics import write_results
from ssl_jax.parallel import make_mesh
from ssl_jax.paths import resolve
from ssl_jax.programs.common import split_features


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
    mesh = make_mesh(config.mesh.num_devices)
    options = few_shot_options(config.few_shot)
    query_split = check_query_split(config.few_shot.query_split)
    splits = ("train",) if query_split == "train" else ("train", "test")

    def check(labels):
        check_few_shot(labels["train"], labels.get("test"), **options)

    feats, info = split_features(config, mesh, splits, check=check)
    train_x, train_y = feats["train"]
    test_x, test_y = feats.get("test", (None, None))
    acc = few_shot_accuracies(train_x, train_y, test_x, test_y, seed=config.seed, **options)
    all_way = len(np.union1d(train_y, train_y if test_y is None else test_y))
    results = {
        **acc,
        "program": "few_shot",
        "support_split": "train",
        "query_split": query_split,
        "episodes": options["episodes"],
        "queries": options["queries"],
        "all_way": all_way,
        **info,
    }
    write_results(resolve(workdir), results)
    return results
