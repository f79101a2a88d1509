import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssl_jax.augment import pipeline

MEAN = np.array(pipeline.IMAGENET_MEAN, np.float32)
STD = np.array(pipeline.IMAGENET_STD, np.float32)
# Every step but blur and solarize disabled, with visible blur, to isolate the BYOL asymmetry.
NEUTRAL = dict(
    crop_scale=(1.0, 1.0),
    crop_ratio=(1.0, 1.0),
    flip_prob=0.0,
    jitter_prob=0.0,
    gray_prob=0.0,
    blur_sigma=(1.0, 2.0),
)


apply_view = jax.jit(pipeline.apply_view, static_argnums=2)


@pytest.fixture(scope="module")
def images_uint8():
    return jax.random.randint(jax.random.key(0), (8, 16, 16, 3), 0, 256).astype(jnp.uint8)


def test_simclr_recipe_values():
    specs = pipeline.get_view_specs("simclr", crop_size=32)
    assert len(specs) == 2 and specs[0] == specs[1]
    s = specs[0]
    assert s.crop_size == 32 and s.crop_scale == (0.08, 1.0) and s.flip_prob == 0.5
    assert (s.brightness, s.contrast, s.saturation, s.hue) == (0.8, 0.8, 0.8, 0.2)
    assert (s.jitter_prob, s.gray_prob, s.blur_prob, s.solarize_prob) == (0.8, 0.2, 0.5, 0.0)


def test_byol_recipe_values():
    v1, v2 = pipeline.get_view_specs("byol", crop_size=224)
    for s in (v1, v2):
        assert (s.brightness, s.contrast, s.saturation, s.hue) == (0.4, 0.4, 0.2, 0.1)
        assert (s.jitter_prob, s.gray_prob, s.flip_prob) == (0.8, 0.2, 0.5)
    assert (v1.blur_prob, v1.solarize_prob) == (1.0, 0.0)
    assert (v2.blur_prob, v2.solarize_prob) == (0.1, 0.2)


def test_overrides_apply_to_every_view_and_none_is_ignored():
    specs = pipeline.get_view_specs(
        "byol", crop_size=32, blur_prob=0.0, hue=None, crop_scale=[0.2, 1]
    )
    assert all(s.blur_prob == 0.0 and s.hue == 0.1 for s in specs)
    assert all(s.crop_scale == (0.2, 1.0) for s in specs)
    assert specs[1].solarize_prob == 0.2
    hash(specs[0])


def test_unknown_recipe_lists_valid_names():
    with pytest.raises(ValueError, match="byol.*simclr"):
        pipeline.get_view_specs("moco", crop_size=32)


def test_unknown_override_lists_valid_fields():
    with pytest.raises(ValueError, match="blurr_prob.*blur_prob"):
        pipeline.get_view_specs("simclr", crop_size=32, blurr_prob=0.0)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(crop_size=0),
        dict(crop_size=32, gray_prob=1.2),
        dict(crop_size=32, brightness=-0.1),
        dict(crop_size=32, hue=0.7),
        dict(crop_size=32, crop_scale=(0.5, 0.1)),
        dict(crop_size=32, std=(0.2, 0.0, 0.2)),
        dict(crop_size=32, mean=(0.5, 0.5)),
    ],
)
def test_view_spec_validation(kwargs):
    with pytest.raises(ValueError):
        pipeline.ViewSpec(**kwargs)


@pytest.mark.parametrize("recipe", ["simclr", "byol"])
def test_multiview_shapes_normalization_and_keys(images_uint8, recipe):
    fn = jax.jit(pipeline.make_multiview_fn(pipeline.get_view_specs(recipe, crop_size=12)))
    views = fn(images_uint8, jax.random.key(1))
    assert len(views) == 2
    for v in views:
        assert v.shape == (8, 12, 12, 3) and v.dtype == jnp.float32
        unit = np.asarray(v) * STD + MEAN
        assert unit.min() >= -1e-5 and unit.max() <= 1 + 1e-5
    assert not np.allclose(views[0], views[1])
    again = fn(images_uint8, jax.random.key(1))
    for a, b in zip(views, again, strict=True):
        np.testing.assert_array_equal(a, b)
    other = fn(images_uint8, jax.random.key(2))
    assert not np.allclose(views[0], other[0])


def test_multiview_splits_key_once_per_view(images_uint8):
    specs = pipeline.get_view_specs("byol", crop_size=12, jitter_prob=0.0)
    key = jax.random.key(3)
    multiview = pipeline.make_multiview_fn(specs)

    @jax.jit
    def both(images, key):
        keys = jax.random.split(key, 2)
        singles = tuple(pipeline.apply_view(images, k, s) for k, s in zip(keys, specs, strict=True))
        return multiview(images, key), singles

    views, singles = both(images_uint8, key)
    for view, single in zip(views, singles, strict=True):
        np.testing.assert_allclose(view, single, atol=1e-6)
    assert not np.allclose(views[0], views[1])


def test_neutral_view_is_normalized_input(images_uint8):
    spec = pipeline.ViewSpec(crop_size=16, **NEUTRAL)
    out = apply_view(images_uint8, jax.random.key(4), spec)
    expected = (np.asarray(images_uint8) / 255.0 - MEAN) / STD
    np.testing.assert_allclose(out, expected, atol=1e-5)


def changed_fractions(specs, images_uint8, seeds):
    fn = jax.jit(pipeline.make_multiview_fn(specs))
    plain = (np.asarray(images_uint8) / 255.0 - MEAN) / STD
    changed = [[], []]
    for seed in range(seeds):
        for j, v in enumerate(fn(images_uint8, jax.random.key(seed))):
            changed[j].append(np.any(np.abs(np.asarray(v) - plain) > 1e-4, axis=(1, 2, 3)))
    return [float(np.mean(c)) for c in changed]


def test_byol_views_are_asymmetric_in_blur(images_uint8):
    specs = pipeline.get_view_specs("byol", crop_size=16, solarize_prob=0.0, **NEUTRAL)
    first, second = changed_fractions(specs, images_uint8, seeds=20)
    assert first == 1.0
    assert 0.0 < second < 0.25


def test_byol_views_are_asymmetric_in_solarize(images_uint8):
    specs = pipeline.get_view_specs("byol", crop_size=16, blur_prob=0.0, **NEUTRAL)
    first, second = changed_fractions(specs, images_uint8, seeds=20)
    assert first == 0.0
    assert 0.08 < second < 0.35


def test_eval_view(images_uint8):
    out = pipeline.eval_view(images_uint8, size=16)
    np.testing.assert_allclose(out, (np.asarray(images_uint8) / 255.0 - MEAN) / STD, atol=1e-5)
    small = pipeline.eval_view(images_uint8, size=8, mean=(0.5,) * 3, std=(0.5,) * 3)
    assert small.shape == (8, 8, 8, 3) and small.dtype == jnp.float32
    assert float(small.min()) >= -1.0 - 1e-5 and float(small.max()) <= 1.0 + 1e-5


def test_float_input_accepted_and_bad_dtype_rejected(images_uint8):
    as_float = np.asarray(images_uint8, np.float32) / 255.0
    np.testing.assert_allclose(
        pipeline.eval_view(as_float, size=16), pipeline.eval_view(images_uint8, size=16), atol=1e-6
    )
    with pytest.raises(ValueError, match="uint8"):
        pipeline.eval_view(np.asarray(images_uint8, np.int32), size=16)


def test_make_multiview_fn_rejects_bad_specs():
    with pytest.raises(ValueError):
        pipeline.make_multiview_fn(())
    with pytest.raises(ValueError):
        pipeline.make_multiview_fn([dataclasses.asdict(pipeline.ViewSpec(crop_size=8))])
