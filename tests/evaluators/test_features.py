"""``extract_features`` on the 8-device mesh equals encoding every image directly, in order."""

from functools import partial

import jax
import ml_collections
import numpy as np
import pytest

from ssl_jax.data import ArraySource
from ssl_jax.evaluators import extract_features, make_sharded_encode
from ssl_jax.evaluators.features import extract_bank
from ssl_jax.export import make_encode_fn, make_input_spec
from ssl_jax.models import make_backbone
from ssl_jax.parallel import make_mesh

NUM_IMAGES = 37  # not a multiple of any batch size below: the last batch is padded


def random_export(backbone, rng):
    """A random ``{"params", "batch_stats"}`` of the backbone's shapes, He-scaled kernels.

    Filled on the host: compiling the backbone's own initialiser takes ~20 s on CPU. The
    running statistics are far from those of any batch, so features computed with batch
    statistics (train-mode BatchNorm) would differ from eval-mode ones.
    """

    def fill(path, leaf):
        name = next(k.key for k in reversed(path) if isinstance(k, jax.tree_util.DictKey))
        shape = leaf.shape
        if name == "kernel":
            value = rng.normal(size=shape) * np.sqrt(2.0 / np.prod(shape[:-1]))
        elif name in ("scale", "var"):
            value = rng.uniform(0.5, 1.5, size=shape)
        else:  # bias, mean
            value = rng.normal(size=shape) * 0.2
        return value.astype(leaf.dtype)

    params, batch_stats = jax.eval_shape(backbone.init, jax.random.key(0))
    fill_tree = partial(jax.tree_util.tree_map_with_path, fill)
    return {"params": fill_tree(params), "batch_stats": fill_tree(batch_stats)}


@pytest.fixture(scope="module")
def setup():
    """``(encode_fn, export, source)``: a width-4 ResNet-18 and 37 random 8x8 images."""
    model = ml_collections.ConfigDict(
        dict(backbone="resnet18", width=4, stem="cifar", zero_init_residual=False)
    )
    backbone = make_backbone(model)
    rng = np.random.default_rng(0)
    export = random_export(backbone, rng)
    input_spec = make_input_spec(size=8, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    encode_fn = make_encode_fn(backbone, input_spec)
    images = rng.integers(0, 256, (NUM_IMAGES, 8, 8, 3), dtype=np.uint8)
    labels = rng.integers(0, 5, NUM_IMAGES)
    return encode_fn, export, ArraySource(images, labels, num_classes=5)


@pytest.fixture(scope="module")
def direct(setup):
    """Features of all images in one call of the unsharded, single-device encode function."""
    encode_fn, export, source = setup
    features = np.asarray(jax.jit(encode_fn)(export, source.images))
    distances = np.linalg.norm(features[:, None] - features[None], axis=-1)
    np.fill_diagonal(distances, np.inf)
    assert distances.min() > 1e-2 * np.abs(features).max(), "rows too alike to show the order"
    return features


@pytest.mark.parametrize("batch_size", [16, 64])
def test_features_equal_a_direct_encode_in_source_order(setup, direct, batch_size):
    encode_fn, export, source = setup
    mesh = make_mesh(-1)
    assert mesh.size == 8
    features, labels = extract_features(
        make_sharded_encode(encode_fn, mesh),
        export,
        source,
        batch_size=batch_size,
        mesh=mesh,
        progress=False,
    )
    assert features.shape == direct.shape, f"{len(features)} rows for {NUM_IMAGES} images"
    assert features.dtype == np.float32
    assert labels.dtype == np.int32
    np.testing.assert_array_equal(labels, source.labels, err_msg="labels not in source order")
    np.testing.assert_allclose(
        features,
        direct,
        rtol=1e-5,
        atol=1e-5 * np.abs(direct).max(),
        err_msg="features differ from a direct encode",
    )


def test_batch_size_must_split_over_the_devices(setup):
    encode_fn, export, source = setup
    mesh = make_mesh(-1)
    with pytest.raises(ValueError, match="does not split over 8 devices"):
        extract_features(
            make_sharded_encode(encode_fn, mesh), export, source, batch_size=12, mesh=mesh
        )


def test_a_bank_keeps_the_features_split_and_gathers_the_same_rows(setup, direct):
    """``extract_bank``: batch i of the split at index i, each device holding its 1/8 of every
    batch; gathered to the host, the rows of ``extract_features`` (the direct encode)."""
    encode_fn, export, source = setup
    mesh = make_mesh(-1)
    bank = extract_bank(
        make_sharded_encode(encode_fn, mesh), export, source, batch_size=16, mesh=mesh
    )
    assert bank.features.shape == (3, 16, direct.shape[1]) and bank.count == NUM_IMAGES
    for x in bank:
        assert x.addressable_shards[0].data.shape[:2] == (3, 2)  # 16 rows over 8 devices
    features, labels = bank.to_host()
    np.testing.assert_array_equal(labels, source.labels)
    np.testing.assert_allclose(features, direct, rtol=1e-5, atol=1e-5 * np.abs(direct).max())
