"""kNN evaluation of a frozen encoder (InstDisc/DINO protocol), ``run(config, workdir)``.

Both splits' features stay split over the devices (:func:`ssl_jax.evaluators.knn.
bank_accuracies`): no host or device holds the memory bank whole."""

import ml_collections

from ssl_jax.evaluators.knn import bank_accuracies
from ssl_jax.metrics import write_results
from ssl_jax.parallel import make_mesh
from ssl_jax.paths import resolve
from ssl_jax.programs.common import split_features


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
    mesh = make_mesh(config.mesh.num_devices)
    banks, info = split_features(config, mesh, ("train", "test"), banks=True)
    acc = bank_accuracies(
        banks["train"],  # the memory bank
        banks["test"],
        ks=config.knn.k,
        temperature=config.knn.temperature,
        num_classes=info["num_classes"],
        mesh=mesh,
    )
    results = {**acc, "program": "knn", "split": "test", **info}
    write_results(resolve(workdir), results)
    return results
