"""Evaluators: kNN, feature extraction, and the registry of evaluators run during training."""

from ssl_jax.evaluators.features import extract_features, make_sharded_encode
from ssl_jax.evaluators.knn import knn_accuracy, knn_scores
from ssl_jax.evaluators.knn_monitor import KnnMonitor
from ssl_jax.evaluators.online_linear import OnlineLinearEvaluator, with_online_linear
from ssl_jax.evaluators.registry import EVALUATORS, Evaluators, add_online_linear

__all__ = [
    "EVALUATORS",
    "Evaluators",
    "KnnMonitor",
    "OnlineLinearEvaluator",
    "add_online_linear",
    "extract_features",
    "knn_accuracy",
    "knn_scores",
    "make_sharded_encode",
    "with_online_linear",
]
