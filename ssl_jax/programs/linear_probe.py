"""Linear probe: softmax regression on frozen encoder features, ``run(config, workdir)``.

Restores only the encoder export of ``config.pretrained`` (never optimizer state),
extracts features of the train and test splits without augmentation, trains the
classifier on train and reports top-1/top-5 on test in ``WORKDIR/results.json``.
"""

import os

import ml_collections

from ssl_jax.evaluators.linear import linear_probe
from ssl_jax.metrics import write_results
from ssl_jax.parallel import make_mesh
from ssl_jax.programs.common import features


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
    mesh = make_mesh(config.mesh.num_devices)
    train_x, train_y, test_x, test_y, info = features(config, mesh)
    p = config.probe
    acc = linear_probe(
        train_x,
        train_y,
        test_x,
        test_y,
        num_classes=info["num_classes"],
        epochs=p.epochs,
        batch_size=p.batch_size,
        learning_rate=p.learning_rate,
        weight_decay=p.weight_decay,
        seed=config.seed,
    )
    results = {**acc, "split": "test", **info}
    write_results(os.path.abspath(workdir), results)
    return results
