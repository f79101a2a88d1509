"""Evaluators: kNN, few-shot episodes, k-means clustering, feature extraction, and the
registry of evaluators run during training."""

from ssl_jax.evaluators.clustering import ClusterEvaluator, cluster_scores, kmeans
from ssl_jax.evaluators.episodes import sample_episodes
from ssl_jax.evaluators.features import extract_features, make_sharded_encode
from ssl_jax.evaluators.few_shot import FewShotEvaluator, few_shot_accuracies
from ssl_jax.evaluators.knn import knn_accuracy, knn_scores
from ssl_jax.evaluators.knn_monitor import KnnMonitor
from ssl_jax.evaluators.online_linear import OnlineLinearEvaluator, with_online_linear
from ssl_jax.evaluators.registry import EVALUATORS, Evaluators, maybe_with_online_linear

__all__ = [
    "EVALUATORS",
    "ClusterEvaluator",
    "Evaluators",
    "FewShotEvaluator",
    "KnnMonitor",
    "OnlineLinearEvaluator",
    "cluster_scores",
    "extract_features",
    "few_shot_accuracies",
    "knn_accuracy",
    "kmeans",
    "knn_scores",
    "make_sharded_encode",
    "maybe_with_online_linear",
    "sample_episodes",
    "with_online_linear",
]
