import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssl_jax.augment.multicrop import (
    dino_multicrop,
    get_multicrop,
    make_multicrop_fn,
    swav_multicrop,
)
from ssl_jax.augment.pipeline import apply_view


@pytest.fixture(scope="module")
def images():
    return jax.random.randint(jax.random.key(0), (4, 12, 12, 3), 0, 256).astype(jnp.uint8)


@pytest.fixture(scope="module")
def crops(images):
    recipe = dino_multicrop(8, 4, 3)
    fn = make_multicrop_fn(*recipe)

    @jax.jit
    def crops_and_references(images, key):
        keys = jax.random.split(key, 5)
        references = (
            apply_view(images, keys[1], recipe.global_specs[1]),
            apply_view(images, keys[4], recipe.local_spec),
        )
        return fn(images, key), references

    key = jax.random.key(1)
    return crops_and_references, key, crops_and_references(images, key)


def test_shapes_and_one_key_per_crop(crops):
    _, _, ((globals_, locals_), (second_global, last_local)) = crops
    assert [g.shape for g in globals_] == [(4, 8, 8, 3)] * 2
    assert [v.shape for v in locals_] == [(4, 4, 4, 3)] * 3
    np.testing.assert_allclose(globals_[1], second_global, atol=1e-5)
    np.testing.assert_allclose(locals_[2], last_local, atol=1e-5)
    flat = [np.asarray(v) for v in locals_]
    assert not np.allclose(flat[0], flat[1]) and not np.allclose(flat[1], flat[2])


def test_deterministic_in_the_key(images, crops):
    fn, key, (views, _) = crops
    again, _ = fn(images, key)
    for a, b in zip(jax.tree.leaves(views), jax.tree.leaves(again), strict=True):
        np.testing.assert_array_equal(a, b)
    other, _ = fn(images, jax.random.key(2))
    assert not np.allclose(views[0][0], other[0][0])


def test_dino_recipe_follows_the_paper():
    g1, g2 = (r := dino_multicrop(224, 96, 10)).global_specs
    assert r.num_local == 10 and r.local_spec.crop_size == 96 and g1.crop_size == 224
    assert g1.crop_scale == g2.crop_scale == (0.4, 1.0)
    assert r.local_spec.crop_scale == (0.05, 0.4)
    assert (g1.blur_prob, g2.blur_prob, r.local_spec.blur_prob) == (1.0, 0.1, 0.5)
    assert (g1.solarize_prob, g2.solarize_prob, r.local_spec.solarize_prob) == (0.0, 0.2, 0.0)
    for s in (g1, g2, r.local_spec):
        assert (s.brightness, s.contrast, s.saturation, s.hue) == (0.4, 0.4, 0.2, 0.1)
        assert (s.jitter_prob, s.gray_prob, s.flip_prob) == (0.8, 0.2, 0.5)


def test_swav_recipe_follows_the_paper():
    r = swav_multicrop(224, 96, 6)
    assert [s.crop_scale for s in r.global_specs] == [(0.14, 1.0)] * 2
    assert r.local_spec.crop_scale == (0.05, 0.14)
    for s in (*r.global_specs, r.local_spec):
        assert (s.brightness, s.contrast, s.saturation, s.hue) == (0.8, 0.8, 0.8, 0.2)
        assert (s.jitter_prob, s.gray_prob, s.blur_prob, s.solarize_prob) == (0.8, 0.2, 0.5, 0.0)


def test_get_multicrop_overrides_and_errors():
    r = get_multicrop("swav", global_size=32, local_size=16, num_local=4, blur_prob=0.0,
                      global_scale=[0.2, 1.0])  # fmt: skip
    assert all(s.blur_prob == 0.0 for s in (*r.global_specs, r.local_spec))
    assert r.global_specs[0].crop_scale == (0.2, 1.0) and r.local_spec.crop_scale == (0.05, 0.14)
    none = get_multicrop("dino", global_size=32)
    assert none.num_local == 0 and none.local_spec is None
    with pytest.raises(ValueError, match="valid recipes"):
        get_multicrop("byol", global_size=32)
    with pytest.raises(ValueError, match="crop_scale"):
        get_multicrop("dino", global_size=32, crop_scale=(0.5, 1.0))
    with pytest.raises(ValueError, match="blurr_prob"):
        get_multicrop("dino", global_size=32, blurr_prob=0.0)
    with pytest.raises(ValueError, match="local_size"):
        get_multicrop("dino", global_size=32, num_local=2)
    with pytest.raises(ValueError, match="local_spec"):
        make_multicrop_fn(none.global_specs, None, 2)
    with pytest.raises(ValueError, match="global_specs"):
        make_multicrop_fn((), None, 0)
