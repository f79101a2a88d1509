"""ClusterFit: k-means centroids of the frozen teacher's normalised features of the training
set, cached to the workdir; the student's cross-entropy against each image's nearest centroid."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssl_jax.data import make_digits_source
from ssl_jax.evaluators import kmeans
from ssl_jax.export import convert_input, load_export
from ssl_jax.methods import clusterfit, get_method
from ssl_jax.methods.networks import mlp_head
from ssl_jax.methods.registry import make_views
from ssl_jax.parallel import make_mesh
from tests.methods.test_distill import distill_config

KMEANS = {"method.kmeans_restarts": 1, "method.kmeans_iterations": 20}


def config_of(teacher, clusters=5):
    return distill_config("clusterfit", teacher, **{"method.num_clusters": clusters, **KMEANS})


def normalised(features):
    features = np.asarray(features, np.float64)
    return features / np.linalg.norm(features, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def source():
    return make_digits_source("train", image_size=8)


@pytest.fixture(scope="module")
def loaded(pretrained, source, tmp_path_factory):
    """``(method, frozen, workdir)``: ClusterFit of the tiny run with 5 clusters, its frozen
    input loaded on 8 devices (the teacher's features of every training digit clustered)."""
    workdir = str(tmp_path_factory.mktemp("clusterfit"))
    method = get_method(config_of(pretrained[0]))
    frozen = method.load_frozen(make_mesh(8), workdir=workdir, source=source)
    return method, frozen, workdir


def test_centroids_are_the_kmeans_of_the_teachers_normalised_features(pretrained, source, loaded):
    _, frozen, _ = loaded
    images, _ = source.get(np.arange(len(source)))
    features = normalised(load_export(pretrained[0]).encode(images))
    want = kmeans(features, 5, restarts=1, iterations=20, seed=0).centers
    np.testing.assert_allclose(frozen["centroids"], want, atol=1e-5)
    assert frozen["centroids"].shape == (5, 32)  # the width-4 teacher's 32 features


def test_a_resumed_run_reads_its_centroids_back_and_refuses_other_ones(
    pretrained, source, loaded, monkeypatch
):
    method, frozen, workdir = loaded
    assert os.path.exists(os.path.join(workdir, clusterfit.CACHE))

    def fail(*args, **kwargs):
        raise AssertionError("the cached centroids should have been read, not recomputed")

    monkeypatch.setattr(clusterfit, "teacher_centroids", fail)
    again = method.load_frozen(make_mesh(8), workdir=workdir, source=source)
    np.testing.assert_array_equal(again["centroids"], frozen["centroids"])
    other = get_method(config_of(pretrained[0], clusters=6))
    with pytest.raises(ValueError, match="holds ClusterFit centroids of .*use a new workdir"):
        other.load_frozen(make_mesh(8), workdir=workdir, source=source)
    with pytest.raises(ValueError, match="needs the run's workdir and training source"):
        other.load_frozen(make_mesh(8))
    with pytest.raises(ValueError, match="num_clusters must be >= 2"):
        get_method(config_of(pretrained[0], clusters=1))


@pytest.mark.slow  # the student's loss to compile (about 20 s)
def test_loss_is_the_students_cross_entropy_on_the_nearest_centroid(pretrained, loaded):
    method, frozen, _ = loaded
    config = config_of(pretrained[0])
    images, _ = make_digits_source("train", image_size=8).get(np.arange(100, 116))
    batch = {"images": jnp.asarray(images)}
    params, state = jax.jit(method.init)(jax.random.key(0))
    key = jax.random.key(1)
    value, (_, metrics) = jax.jit(method.loss)(params, state, batch, key, 0, frozen)

    # By hand: each image's nearest centroid to the teacher's normalised features of it...
    teacher = normalised(load_export(pretrained[0]).encode(images))
    centroids = np.asarray(frozen["centroids"], np.float64)
    distances = ((teacher[:, None, :] - centroids[None]) ** 2).sum(-1)
    labels = distances.argmin(1)
    assert len(set(labels)) > 1  # not a trivial labelling
    # ... against the student's logits of the augmented view.
    x = make_views(config.augment, "clusterfit")(batch["images"], key)
    stats = state["batch_stats"]
    f, _ = method.backbone.apply(
        params["backbone"], stats["backbone"], convert_input(x, method.input_spec), train=True
    )
    head = mlp_head(method.backbone.feature_dim, 8, 5)
    logits, _ = head.apply(params["projector"], stats["projector"], f, train=True)
    logits = np.asarray(logits, np.float64)
    log_p = logits - logits.max(1, keepdims=True)
    log_p -= np.log(np.exp(log_p).sum(1, keepdims=True))
    np.testing.assert_allclose(float(value), -log_p[np.arange(16), labels].mean(), rtol=1e-4)
    np.testing.assert_allclose(metrics["cluster_top1"], 100 * np.mean(logits.argmax(1) == labels))
