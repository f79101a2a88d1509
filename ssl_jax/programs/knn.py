"""kNN evaluation of a frozen encoder (InstDisc/DINO protocol), ``run(config, workdir)``."""

import ml_collections

from ssl_jax.evaluators.knn import knn_accuracies
from ssl_jax.metrics import write_results
from ssl_jax.parallel import make_mesh
from ssl_jax.paths import resolve
from ssl_jax.programs.common import split_features


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
    mesh = make_mesh(config.mesh.num_devices)
    feats, info = split_features(config, mesh, ("train", "test"))
    acc = knn_accuracies(
        feats["train"],  # the memory bank
        feats["test"],
        ks=config.knn.k,
        temperature=config.knn.temperature,
        num_classes=info["num_classes"],
    )
    results = {**acc, "program": "knn", "split": "test", **info}
    write_results(resolve(workdir), results)
    return results
