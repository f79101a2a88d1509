"""kNN evaluation of a frozen encoder (InstDisc/DINO protocol), ``run(config, workdir)``."""

import os

import ml_collections

from ssl_jax.evaluators.knn import knn_accuracy
from ssl_jax.metrics import write_results
from ssl_jax.parallel import make_mesh
from ssl_jax.programs.common import features


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
    mesh = make_mesh(config.mesh.num_devices)
    train_x, train_y, test_x, test_y, info = features(config, mesh)
    results = {"split": "test", **info}
    for k in config.knn.k:
        acc = knn_accuracy(
            train_x,
            train_y,
            test_x,
            test_y,
            k=min(k, len(train_x)),
            temperature=config.knn.temperature,
            num_classes=info["num_classes"],
        )
        results[f"top1_k{k}"] = acc["top1"]
        results[f"top5_k{k}"] = acc["top5"]
    write_results(os.path.abspath(workdir), results)
    return results
