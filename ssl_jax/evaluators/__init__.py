"""Evaluators on frozen features: kNN, feature extraction, the kNN monitor."""

from ssl_jax.evaluators.features import extract_features, make_sharded_encode
from ssl_jax.evaluators.knn import knn_accuracy, knn_scores
from ssl_jax.evaluators.knn_monitor import KnnMonitor

__all__ = ["KnnMonitor", "extract_features", "knn_accuracy", "knn_scores", "make_sharded_encode"]
