"""sRGB <-> CIE L*a*b* (D65) conversion, elementwise over a last axis of size 3.

The colour space of the colorization pretext task (:mod:`ssl_jax.pretext.colorization`). Both
directions are pure ``jnp`` code, jittable and differentiable (the arithmetic is jitted once per
shape, so eager calls are fast too); the 3x3 colour matrices are applied as explicit
multiply-adds, so the result does not depend on the accelerator's matmul precision (TF32 on
recent GPUs, bfloat16 passes on TPUs).
"""

from types import ModuleType

import jax
import jax.numpy as jnp
import numpy as np

# sRGB (linear) -> XYZ, IEC 61966-2-1 primaries and D65, at the six-digit precision that
# skimage.color and Bruce Lindbloom's tables use. The standard prints it rounded to four digits;
# that rounding moves sRGB red's a* by 0.02 and white's b* to -0.01 instead of 0.
SRGB_TO_XYZ = np.array(
    [
        [0.412453, 0.357580, 0.180423],
        [0.212671, 0.715160, 0.072169],
        [0.019334, 0.119193, 0.950227],
    ]
)
XYZ_TO_SRGB = np.linalg.inv(SRGB_TO_XYZ)
D65_WHITE = (0.95047, 1.0, 1.08883)

_DELTA = 6.0 / 29.0
_LINEAR_THRESHOLD = 0.04045
_ENCODED_THRESHOLD = _LINEAR_THRESHOLD / 12.92


def _check_triplets(x: jax.typing.ArrayLike, name: str) -> jax.Array:
    x = jnp.asarray(x)
    if x.ndim < 1 or x.shape[-1] != 3:
        raise ValueError(f"{name} must have a last axis of size 3, (..., 3); got shape {x.shape}.")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(
            f"{name} must be floating point; got dtype {x.dtype}. Convert uint8 images with "
            "images.astype(jnp.float32) / 255."
        )
    return x


def _mix(matrix: np.ndarray, channels: tuple) -> tuple:
    """``matrix @ (c0, c1, c2)`` for three broadcastable channel arrays, as multiply-adds (so it is
    computed in full float32 on any chip, whatever its matmul precision)."""
    c0, c1, c2 = channels
    return tuple(float(m[0]) * c0 + float(m[1]) * c1 + float(m[2]) * c2 for m in matrix)


def _srgb_to_linear(rgb, xp: ModuleType):
    """Undoes sRGB companding, for either ``numpy`` or ``jax.numpy`` as ``xp``."""
    return xp.where(
        rgb > _LINEAR_THRESHOLD,
        xp.power((xp.maximum(rgb, _LINEAR_THRESHOLD) + 0.055) / 1.055, 2.4),
        rgb / 12.92,
    )


def _linear_to_lab(red, green, blue, xp: ModuleType) -> tuple:
    """Linear sRGB channels (broadcastable arrays) to ``(L, a, b)``, for ``numpy`` or ``jax.numpy``
    as ``xp``: one formula for `rgb_to_lab` and for the static table of the ab gamut."""
    xyz = _mix(SRGB_TO_XYZ, (red, green, blue))
    t = [c / white for c, white in zip(xyz, D65_WHITE, strict=True)]
    fx, fy, fz = (
        xp.where(c > _DELTA**3, xp.cbrt(xp.maximum(c, _DELTA**3)), c / (3 * _DELTA**2) + 4 / 29)
        for c in t
    )
    return 116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)


def rgb_to_lab(rgb: jax.typing.ArrayLike) -> jax.Array:
    r"""Converts sRGB in [0, 1] to CIE L*a*b* (D65): L in [0, 100], a and b roughly in [-128, 128].

    sRGB companding is undone (:math:`c / 12.92` for :math:`c \le 0.04045`, else
    :math:`((c + 0.055) / 1.055)^{2.4}`), the linear values go to XYZ through the IEC 61966-2-1
    matrix, XYZ is divided by the D65 white (0.95047, 1.0, 1.08883), and with
    :math:`f(t) = t^{1/3}` for :math:`t > (6/29)^3`, else :math:`t / (3 (6/29)^2) + 4/29`,

    .. math::
        L = 116 f(Y) - 16, \quad a = 500 (f(X) - f(Y)), \quad b = 200 (f(Y) - f(Z)).

    This is the conversion of ``skimage.color.rgb2lab``, which Zhang et al. use.

    Args:
      rgb: ``(..., 3)`` floating sRGB values in [0, 1].

    Returns:
      ``(..., 3)`` L*a*b* values, float32 (float64 for float64 inputs).

    Examples:
      >>> import jax.numpy as jnp
      >>> [round(float(v), 2) for v in rgb_to_lab(jnp.array([1.0, 0.0, 0.0]))]
      [53.24, 80.09, 67.2]
    """
    rgb = _check_triplets(rgb, "rgb")
    rgb = rgb.astype(jnp.promote_types(rgb.dtype, jnp.float32))
    return _rgb_to_lab(rgb)


@jax.jit
def _rgb_to_lab(rgb: jax.Array) -> jax.Array:
    linear = _srgb_to_linear(rgb, jnp)
    return jnp.stack(_linear_to_lab(linear[..., 0], linear[..., 1], linear[..., 2], jnp), axis=-1)


def lab_to_rgb(lab: jax.typing.ArrayLike) -> jax.Array:
    r"""Converts CIE L*a*b* (D65) to sRGB, the exact inverse of `rgb_to_lab`, clipped to [0, 1].

    With :math:`f_y = (L + 16) / 116`, :math:`f_x = f_y + a / 500`, :math:`f_z = f_y - b / 200`
    and :math:`f^{-1}(t) = t^3` for :math:`t > 6/29`, else :math:`3 (6/29)^2 (t - 4/29)`, XYZ is
    the D65 white times :math:`f^{-1}`, linear sRGB is the inverse matrix times XYZ, clipped to
    [0, 1] (L*a*b* values outside the sRGB gamut land on its surface), and companding gives
    :math:`12.92 c` for :math:`c \le 0.04045 / 12.92`, else :math:`1.055 c^{1/2.4} - 0.055`.

    Args:
      lab: ``(..., 3)`` floating L*a*b* values.

    Returns:
      ``(..., 3)`` sRGB values in [0, 1], float32 (float64 for float64 inputs).

    Examples:
      >>> import jax.numpy as jnp
      >>> [round(float(v), 3) for v in lab_to_rgb(jnp.array([53.2408, 80.0925, 67.2032]))]
      [1.0, 0.0, 0.0]
    """
    lab = _check_triplets(lab, "lab")
    return _lab_to_rgb(lab.astype(jnp.promote_types(lab.dtype, jnp.float32)))


@jax.jit
def _lab_to_rgb(lab: jax.Array) -> jax.Array:
    fy = (lab[..., 0] + 16.0) / 116.0
    f = jnp.stack([fy + lab[..., 1] / 500.0, fy, fy - lab[..., 2] / 200.0], axis=-1)
    t = jnp.where(f > _DELTA, f**3, 3.0 * _DELTA**2 * (f - 4.0 / 29.0))
    xyz = tuple(t[..., i] * D65_WHITE[i] for i in range(3))
    linear = jnp.clip(jnp.stack(_mix(XYZ_TO_SRGB, xyz), axis=-1), 0.0, 1.0)
    rgb = jnp.where(
        linear > _ENCODED_THRESHOLD,
        1.055 * jnp.power(jnp.maximum(linear, _ENCODED_THRESHOLD), 1.0 / 2.4) - 0.055,
        12.92 * linear,
    )
    return jnp.clip(rgb, 0.0, 1.0)
