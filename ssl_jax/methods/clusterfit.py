"""ClusterFit (Yan et al. 2020, https://arxiv.org/abs/1912.03330): cluster a frozen teacher's
embeddings of the training set with k-means, then train the student to classify each image's
cluster with cross-entropy.

The k-means runs once per run, when the method's frozen input is first loaded: the teacher's
pooled features of every training image (its export's evaluation view: center crop at its
input size, eval-mode BatchNorm; extracted sharded over the mesh), L2-normalised as the
``cluster`` program does, clustered by :func:`ssl_jax.evaluators.kmeans` (k-means++ seeds,
Lloyd iterations, the lowest inertia of ``kmeans_restarts``). The centroids are cached to
``WORKDIR/clusterfit_centroids.npz`` with what they were computed from, so a resumed run reads
them back instead of clustering again; a cache of another teacher or setting is an error.

Each step, an image's pseudo-label is the centroid nearest to the teacher's L2-normalised
features of that image's evaluation view: the same features the k-means saw, so the label is
fixed per image, as ClusterFit's precomputed labels are, without the data pipeline having to
carry example indices. The student (``backbone`` and a projector to ``num_clusters`` logits, an
MLP like the other distillation methods' where the paper trains a standard classifier) sees
the augmented view; the loss is the mean softmax cross-entropy against the pseudo-labels, and
``cluster_top1`` the share of the batch it classifies right.
"""

import io
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
from etils import epath

from ssl_jax.evaluators.clustering import kmeans, nearest_center
from ssl_jax.evaluators.features import extract_features, make_sharded_encode
from ssl_jax.export import convert_input, make_encode_fn
from ssl_jax.losses import l2_normalize
from ssl_jax.method import ONE_RAW_VIEW, Method, method_factory, no_state_update
from ssl_jax.methods.common import make_init, online_export
from ssl_jax.methods.networks import apply_chain
from ssl_jax.methods.pretext_task import one_view
from ssl_jax.methods.teacher import load_teacher, make_teacher, student_parts
from ssl_jax.paths import resolve

CACHE = "clusterfit_centroids.npz"


def teacher_centroids(
    encode,
    arrays: dict,
    source,
    *,
    num_clusters: int,
    mesh,
    batch_size: int,
    restarts: int,
    iterations: int,
    seed: int,
) -> np.ndarray:
    """``(num_clusters, D)`` k-means centroids of the L2-normalised features
    ``encode(arrays, images)`` (the teacher's) of every image of ``source``."""
    sharded = make_sharded_encode(encode, mesh)
    features, _ = extract_features(
        sharded, arrays, source, batch_size=batch_size, mesh=mesh, desc="teacher features"
    )
    features = l2_normalize(jnp.asarray(features, jnp.float32))
    result = kmeans(features, num_clusters, restarts=restarts, iterations=iterations, seed=seed)
    return np.asarray(result.centers, np.float32)


def cached_centroids(path: epath.PathLike, about: dict, compute) -> np.ndarray:
    """The centroids of ``path`` (a local path or a URI) when they were computed from
    ``about``; else ``compute()``'s, written there (atomically, by process 0). A cache made
    from something else is a ``ValueError``: the run's classifier was trained on its clusters."""
    path = epath.Path(path)
    if path.exists():
        with path.open("rb") as f, np.load(f) as cache:
            saved = json.loads(str(cache["about"]))
            if saved != about:
                raise ValueError(
                    f"{path} holds ClusterFit centroids of {saved}, but this run asks for "
                    f"{about}. A run keeps the clusters it started with: use a new workdir "
                    "for another teacher or clustering."
                )
            return cache["centroids"]
    centroids = compute()
    if jax.process_index() == 0:
        buffer = io.BytesIO()
        np.savez(buffer, centroids=centroids, about=json.dumps(about))
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(buffer.getvalue())
        tmp.replace(path)
    return centroids


@method_factory("clusterfit", views=ONE_RAW_VIEW)
def make_clusterfit(
    backbone,
    views,
    *,
    input_spec: dict,
    teacher: str,
    teacher_step: int | None = None,
    batch_size: int | None = None,
    proj_hidden_dim: int = 2048,
    num_clusters: int = 100,
    kmeans_restarts: int = 3,
    kmeans_iterations: int = 100,
    kmeans_seed: int = 0,
) -> Method:
    """ClusterFit: the student classifies the k-means cluster (``num_clusters``) of the
    teacher's embedding of each image. Its frozen input, ``{"teacher", "centroids"}``, needs
    the run's ``workdir`` (the centroid cache) and training ``source``."""
    if num_clusters < 2:
        raise ValueError(f"method.num_clusters must be >= 2, got {num_clusters}.")
    teacher = make_teacher(teacher, teacher_step)
    parts = student_parts(backbone, proj_hidden_dim, num_clusters)
    encode = make_encode_fn(teacher.backbone, teacher.spec["input"])
    about = {
        "teacher": str(resolve(teacher.path)),
        "teacher_step": teacher.step,
        "num_clusters": num_clusters,
        "kmeans_restarts": kmeans_restarts,
        "kmeans_iterations": kmeans_iterations,
        "kmeans_seed": kmeans_seed,
    }

    def load_frozen(mesh, *, workdir=None, source=None):
        if workdir is None or source is None:
            raise ValueError(
                "clusterfit's frozen input needs the run's workdir and training source "
                "(its k-means of the teacher's features is computed on them)."
            )
        arrays = load_teacher(teacher, mesh)
        compute = lambda: teacher_centroids(
            encode,
            arrays,
            source,
            num_clusters=num_clusters,
            mesh=mesh,
            batch_size=batch_size or 256,
            restarts=kmeans_restarts,
            iterations=kmeans_iterations,
            seed=kmeans_seed,
        )
        about_run = {**about, "source": source.name, "examples": len(source)}
        centroids = cached_centroids(epath.Path(workdir) / CACHE, about_run, compute)
        return {"teacher": arrays, "centroids": jnp.asarray(centroids)}

    def loss(params, method_state, batch, key, step, frozen):
        del step
        if frozen is None:
            raise ValueError("clusterfit needs the teacher's arrays and centroids as frozen input.")
        features = l2_normalize(encode(frozen["teacher"], batch["images"]).astype(jnp.float32))
        labels = nearest_center(features, frozen["centroids"])  # integers: no gradient
        x = one_view(views, batch["images"], key, "clusterfit")
        logits, stats = apply_chain(
            parts,
            ("backbone", "projector"),
            params,
            method_state["batch_stats"],
            convert_input(x, input_spec),
        )
        logits = logits.astype(jnp.float32)
        value = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels))
        top1 = 100.0 * jnp.mean(jnp.argmax(logits, axis=-1) == labels)
        return value, ({**method_state, "batch_stats": stats}, {"cluster_top1": top1})

    return Method(
        name="clusterfit",
        init=make_init(parts),
        loss=loss,
        update_state=no_state_update,
        export=online_export,
        backbone=backbone,
        network="student",
        load_frozen=load_frozen,
        input_spec=input_spec,
        batch_terms="",
    )
