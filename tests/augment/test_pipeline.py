import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssl_jax.augment import pipeline
from ssl_jax.augment.multicrop import dino_multicrop, make_multicrop_fn
from tests.augment.test_blur import np_blur
from tests.augment.test_geometric import pil_resize

MEAN = np.array(pipeline.IMAGENET_MEAN, np.float32)
STD = np.array(pipeline.IMAGENET_STD, np.float32)
# Every step of apply_view off; crop scale and ratio (1, 1) make the crop the whole image.
OFF = dict(
    crop_scale=(1.0, 1.0),
    crop_ratio=(1.0, 1.0),
    flip_prob=0.0,
    jitter_prob=0.0,
    gray_prob=0.0,
    blur_prob=0.0,
    solarize_prob=0.0,
)
# Every step but blur and solarize disabled (their probabilities left to the recipe), with
# visible blur, to isolate the BYOL asymmetry.
NEUTRAL = {
    **{k: v for k, v in OFF.items() if k not in ("blur_prob", "solarize_prob")},
    "blur_sigma": (1.0, 2.0),
}
LUMA = np.array([0.299, 0.587, 0.114])  # ITU-R 601-2 luma, as `random_grayscale` documents


apply_view = jax.jit(pipeline.apply_view, static_argnums=2)


def unit(images_uint8):
    """NumPy reference of the first step: uint8 -> float64 in [0, 1]."""
    return np.asarray(images_uint8, np.float64) / 255.0


def normalized(x, mean=MEAN, std=STD):
    return (np.asarray(x, np.float64) - np.asarray(mean)) / np.asarray(std)


def np_gray(x):
    return np.repeat((np.asarray(x, np.float64) @ LUMA)[..., None], 3, axis=-1)


def one_step_view(images_uint8, seed=5, **fields):
    """apply_view with only `fields` switched on; returns (normalized output, output in [0, 1]).

    Eager: one compilation per spec would cost more than the whole computation.
    """
    spec = pipeline.ViewSpec(**{"crop_size": images_uint8.shape[1], **OFF, **fields})
    out = np.asarray(pipeline.apply_view(images_uint8, jax.random.key(seed), spec), np.float64)
    return out, out * np.asarray(spec.std) + np.asarray(spec.mean)


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


def test_multiview_splits_key_once_per_view_and_keeps_spec_order(images_uint8):
    # Views 0 and 1 flip each image with probability 1/2 and change nothing else, so every image
    # of them is either the input or its exact mirror; view 2 is grayscale only.
    flip_half = pipeline.ViewSpec(crop_size=16, **{**OFF, "flip_prob": 0.5})
    gray = pipeline.ViewSpec(crop_size=16, **{**OFF, "gray_prob": 1.0})
    specs = (flip_half, flip_half, gray)
    key = jax.random.key(3)
    views = [np.asarray(v) for v in pipeline.make_multiview_fn(specs)(images_uint8, key)]
    x = unit(images_uint8)
    masks = []
    for j in (0, 1):
        same = np.all(np.abs(views[j] - normalized(x)) < 1e-5, axis=(1, 2, 3))
        mirrored = np.all(np.abs(views[j] - normalized(x[:, :, ::-1])) < 1e-5, axis=(1, 2, 3))
        assert np.all(same ^ mirrored), f"view {j}: each image must be the input or its mirror"
        masks.append(mirrored)
    assert 0 < masks[0].sum() < 8, f"flip_prob=0.5 flipped {masks[0].sum()} of 8 images"
    assert not np.array_equal(masks[0], masks[1]), "views 0 and 1 flipped the same images"
    np.testing.assert_allclose(
        views[2], normalized(np_gray(x)), atol=1e-5, err_msg="view 2 does not follow specs[2]"
    )
    # The documented contract: view j is apply_view with the j-th key of one split of `key`.
    keys = jax.random.split(key, 3)
    for j in (0, 1):
        np.testing.assert_array_equal(
            views[j], pipeline.apply_view(images_uint8, keys[j], specs[j])
        )


def test_neutral_view_is_normalized_input(images_uint8):
    spec = pipeline.ViewSpec(crop_size=16, **NEUTRAL)
    out = apply_view(images_uint8, jax.random.key(4), spec)
    expected = (np.asarray(images_uint8) / 255.0 - MEAN) / STD
    np.testing.assert_allclose(out, expected, atol=1e-5)


def test_flip_alone_mirrors_without_changing_colours(images_uint8):
    # Default jitter strengths with jitter_prob 0: the mirror must be exact, no colour change.
    out, _ = one_step_view(images_uint8, flip_prob=1.0)
    np.testing.assert_allclose(
        out,
        normalized(unit(images_uint8)[:, :, ::-1]),
        atol=1e-5,
        err_msg="flip_prob=1 with every other step off must exactly mirror the normalized input",
    )


def test_grayscale_alone_gives_luma_normalized_per_channel(images_uint8):
    mean, std = (0.2, 0.4, 0.6), (0.5, 0.25, 0.125)
    out, out_unit = one_step_view(images_uint8, gray_prob=1.0, mean=mean, std=std)
    for c in (1, 2):
        np.testing.assert_allclose(
            out_unit[..., c],
            out_unit[..., 0],
            atol=1e-5,
            err_msg=f"gray_prob=1: channel {c} differs from channel 0 (R == G == B expected)",
        )
    np.testing.assert_allclose(
        out,
        normalized(np_gray(unit(images_uint8)), mean, std),
        atol=1e-5,
        err_msg="gray_prob=1: output is not (0.299 R + 0.587 G + 0.114 B - mean) / std",
    )


def np_fit_blend(x, out, anchor):
    """Least-squares f per image in out = anchor + f (x - anchor), over unclipped pixels."""
    d = x - anchor
    used = (out > 1e-4) & (out < 1 - 1e-4) & (np.abs(d) > 0.02)
    return np.sum(used * (out - anchor) * d, axis=(1, 2, 3)) / np.sum(used * d * d, axis=(1, 2, 3))


@pytest.mark.parametrize("field", ["brightness", "contrast", "saturation", "hue"])
def test_color_jitter_alone_applies_only_its_adjustment(images_uint8, field):
    strengths = dict(brightness=0.0, contrast=0.0, saturation=0.0, hue=0.0)
    strengths[field] = 0.4
    _, out = one_step_view(images_uint8, jitter_prob=1.0, **strengths)
    x = unit(images_uint8)
    if field == "hue":
        # A hue rotation keeps each pixel's HSV value and saturation: its max and min channel.
        for reduce in (np.max, np.min):
            np.testing.assert_allclose(
                reduce(out, axis=-1),
                reduce(x, axis=-1),
                atol=1e-5,
                err_msg=f"hue-only jitter changed the per-pixel {reduce.__name__} channel",
            )
    else:
        # torchvision: brightness clip(f x), contrast clip(f x + (1 - f) mean(gray(x))),
        # saturation clip(f x + (1 - f) gray(x)), with f ~ U[0.6, 1.4] per image.
        anchor = {
            "brightness": np.zeros_like(x),
            "contrast": np_gray(x).mean(axis=(1, 2, 3), keepdims=True),
            "saturation": np_gray(x),
        }[field]
        f = np_fit_blend(x, out, anchor)
        assert np.all((f > 0.6 - 1e-4) & (f < 1.4 + 1e-4)), f"{field} factors {f}"
        expected = np.clip(anchor + f[:, None, None, None] * (x - anchor), 0.0, 1.0)
        np.testing.assert_allclose(
            out,
            expected,
            atol=1e-4,
            err_msg=f"jitter_prob=1 with only {field}: output is not the {field} blend of the "
            "unflipped input",
        )
    changed = np.abs(out - x).max(axis=(1, 2, 3))
    assert np.all(changed > 1e-3), f"jitter_prob=1: some image kept its colours ({changed})"


def test_blur_alone_matches_gaussian_reference(images_uint8):
    # A 16-pixel crop has the default kernel 2 * max(16 // 20, 1) + 1 = 3, reflect padding.
    out, _ = one_step_view(images_uint8, blur_prob=1.0, blur_sigma=(1.5, 1.5))
    expected = np.stack([np_blur(image, 1.5, 3) for image in unit(images_uint8)])
    np.testing.assert_allclose(
        out,
        normalized(expected),
        atol=1e-5,
        err_msg="blur_prob=1, sigma 1.5 alone: not a 3-tap Gaussian blur of the normalized input",
    )


def test_solarize_alone_inverts_pixels_from_half(images_uint8):
    out, _ = one_step_view(images_uint8, solarize_prob=1.0)
    x = unit(images_uint8)
    np.testing.assert_allclose(
        out,
        normalized(np.where(x >= 0.5, 1.0 - x, x)),
        atol=1e-5,
        err_msg="solarize_prob=1 alone: pixels >= 0.5 must become 1 - x, the others unchanged",
    )


def test_crop_alone_copies_a_random_window_or_resizes(images_uint8):
    # Area 1/4 and ratio 1 of a 16-pixel image: an 8 x 8 window, copied exactly at size 8.
    out, _ = one_step_view(images_uint8, crop_size=8, crop_scale=(0.25, 0.25))
    x = normalized(unit(images_uint8))
    found = []
    for i in range(x.shape[0]):
        windows = [
            (top, left)
            for top in range(9)
            for left in range(9)
            if np.allclose(out[i], x[i, top : top + 8, left : left + 8], atol=1e-5)
        ]
        assert len(windows) == 1, f"image {i}: output is not one 8 x 8 window of the input"
        found += windows
    assert len(set(found)) > 1, f"every crop at the same position {found[0]}"
    # Scale 1: the whole image, resized as PIL's antialiased bilinear.
    out, _ = one_step_view(images_uint8, crop_size=8)
    expected = np.stack([pil_resize(image.astype(np.float32), 8) for image in unit(images_uint8)])
    np.testing.assert_allclose(out, normalized(expected), atol=1e-5)


def test_deterministic_steps_together_run_in_documented_order(images_uint8):
    # flip -> grayscale -> blur -> solarize (kernel 3 at 16 pixels), then normalize.
    out, _ = one_step_view(
        images_uint8,
        flip_prob=1.0,
        gray_prob=1.0,
        blur_prob=1.0,
        blur_sigma=(1.0, 1.0),
        solarize_prob=1.0,
    )
    x = np_gray(unit(images_uint8)[:, :, ::-1])
    x = np.stack([np_blur(image, 1.0, 3) for image in x])
    x = np.where(x >= 0.5, 1.0 - x, x)
    np.testing.assert_allclose(
        out,
        normalized(x),
        atol=1e-5,
        err_msg="flip, grayscale, blur and solarize (prob 1) are not applied in that order",
    )


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


UNIT_RANGE_ERROR = r"values in \[0, 255\], expected \[0, 1\]; divide 0..255 images by 255, or pass"


@pytest.mark.parametrize(
    "view",
    [
        pipeline.to_unit_float,
        lambda x: pipeline.eval_view(x, size=8),
        lambda x: pipeline.apply_view(x, jax.random.key(0), pipeline.ViewSpec(crop_size=8)),
        lambda x: pipeline.make_multiview_fn(pipeline.get_view_specs("simclr", crop_size=8))(
            x, jax.random.key(0)
        ),
        lambda x: make_multicrop_fn(*dino_multicrop(8, 4, 2))(x, jax.random.key(0)),
    ],
    ids=["to_unit_float", "eval_view", "apply_view", "make_multiview_fn", "make_multicrop_fn"],
)
def test_float_images_outside_unit_range_are_refused(images_uint8, view):
    as_255 = np.asarray(images_uint8, np.float32)
    assert as_255.min() == 0 and as_255.max() == 255
    for images in (as_255, jnp.asarray(as_255)):
        with pytest.raises(ValueError, match=UNIT_RANGE_ERROR):
            view(images)
    with pytest.raises(ValueError, match=r"values in \[-0.25, 0.5\], expected \[0, 1\]"):
        view(np.linspace(-0.25, 0.5, 8 * 16 * 16 * 3, dtype=np.float32).reshape(8, 16, 16, 3))


def test_unit_range_is_checked_only_where_the_value_is_concrete(images_uint8):
    as_255 = np.asarray(images_uint8, np.float32)
    # Traced under jit: not readable, so not checked (the docstrings say so), and no tracer error.
    np.testing.assert_array_equal(jax.jit(pipeline.to_unit_float)(as_255), as_255)
    pipeline.check_unit_range(as_255 / 255)
    pipeline.check_unit_range(images_uint8)  # integers: the dtype says the range
    pipeline.check_unit_range(np.zeros((0, 4, 4, 3), np.float32))


def test_make_multiview_fn_rejects_bad_specs():
    with pytest.raises(ValueError):
        pipeline.make_multiview_fn(())
    with pytest.raises(ValueError):
        pipeline.make_multiview_fn([dataclasses.asdict(pipeline.ViewSpec(crop_size=8))])
