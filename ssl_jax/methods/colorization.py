"""Colorization (Zhang, Isola, Efros 2016): predict the ab colour channels of an image from
its lightness L. https://arxiv.org/abs/1603.08511

The backbone sees only L (the export's input spec says ``lab_l``, so every downstream program
feeds it L without being told); a :class:`~ssl_jax.models.ConvDecoder` upsamples its last
stage to 1/``output_stride`` of the input, where the paper predicts. ``loss="classification"``
is the paper's: a distribution over the in-gamut ab bins, soft-encoded targets (5 nearest
bins, Gaussian sigma 5) and class rebalancing by the empirical ab prior (lambda 0.5). The
prior is the running mean, over the training batches seen so far, of each batch's bin
frequencies at the output resolution (kept in the method state, so checkpoints carry it);
the paper computes it once over ImageNet. ``loss="regression"`` is the plain L2 baseline on
ab / 110.
"""

import jax
import jax.numpy as jnp

from ssl_jax.export import convert_input, make_input_spec
from ssl_jax.losses import ab_regression_loss, rebalanced_cross_entropy
from ssl_jax.method import ONE_RAW_VIEW, Method, method_factory
from ssl_jax.methods.common import make_init
from ssl_jax.methods.pretext_task import (
    eval_view,
    feature_decoder,
    one_view,
    pretext_method,
)
from ssl_jax.pretext import (
    ab_gamut_bins,
    annealed_mean,
    colorization_inputs,
    colorize,
    rebalance_weights,
    soft_encode_ab,
)
from ssl_jax.pretext.colorization import empirical_ab_prior

AB_SCALE = 110.0  # the regression variant predicts ab / 110, about [-1, 1]
LOSSES = ("classification", "regression")


def lightness_spec(size: int) -> dict:
    """The export's input: CIE L* / 100 repeated to 3 channels, centred at L* = 50 as the
    paper's ``L - 50`` and scaled by 25 (std 0.25 in L* / 100 units)."""
    return make_input_spec(
        size=size, color_space="lab_l", channels=3, mean=(0.5,) * 3, std=(0.25,) * 3
    )


def block_mean(x: jax.Array, stride: int) -> jax.Array:
    """``(N, H, W, C)`` -> ``(N, H / s, W / s, C)``: the mean of each ``s`` x ``s`` block."""
    n, h, w, c = x.shape
    return x.reshape(n, h // stride, stride, w // stride, stride, c).mean(axis=(2, 4))


@method_factory("colorization", views=ONE_RAW_VIEW)
def make_colorization(
    backbone,
    views,
    *,
    input_spec: dict,
    loss: str = "classification",
    grid: int = 10,
    neighbors: int = 5,
    sigma: float = 5.0,
    lam: float = 0.5,
    rebalance: bool = True,
    output_stride: int = 4,
    feature_layer: str = "stage4",
    decoder_width: int = 128,
) -> Method:
    """Colorization on ``backbone``: L of the one view ``views(images_uint8, key) -> x`` in
    [0, 1] in, ab at 1/``output_stride`` resolution out, through a ConvDecoder of width
    ``decoder_width`` on the backbone's ``feature_layer`` map. ``input_spec`` gives the size;
    the method's own spec is :func:`lightness_spec`."""
    if loss not in LOSSES:
        raise ValueError(f"colorization loss={loss!r} is not one of {LOSSES}.")
    spec = lightness_spec(input_spec["size"])
    if spec["size"] % output_stride:
        raise ValueError(
            f"output_stride={output_stride} does not divide the input size {spec['size']}."
        )
    bins = jnp.asarray(ab_gamut_bins(grid=grid), jnp.float32)
    num_bins = bins.shape[0]
    out_channels = num_bins if loss == "classification" else 2
    out_size = spec["size"] // output_stride
    decoder = feature_decoder(
        backbone, spec, feature_layer, out_channels, out_size, width=decoder_width
    )
    parts = {"backbone": backbone, "decoder": decoder}
    init_parts = make_init(parts)

    def init(key):
        params, state = init_parts(key)
        return params, {**state, "ab_prior": jnp.full((num_bins,), 1.0 / num_bins)}

    def predict(params, stats, x, train):
        features, backbone_stats = backbone.apply(
            params["backbone"], stats["backbone"], convert_input(x, spec), train=train,
            return_all=True,
        )  # fmt: skip
        out, decoder_stats = decoder.apply(
            params["decoder"], stats["decoder"], features[feature_layer], train=train
        )
        return out, {"backbone": backbone_stats, "decoder": decoder_stats}

    def objective(params, method_state, x, step):
        _, ab = colorization_inputs(x)
        ab = block_mean(ab, output_stride)
        out, new_stats = predict(params, method_state["batch_stats"], x, True)
        new_state = {**method_state, "batch_stats": new_stats}
        if loss == "regression":
            return ab_regression_loss(out, ab / AB_SCALE), new_state
        frequencies = empirical_ab_prior(ab, bins)
        prior = method_state["ab_prior"]
        prior = prior + (frequencies - prior) / (step + 1)  # step 0: this batch's
        weights = rebalance_weights(prior, bins, lam=lam, sigma=sigma)
        weights = weights if rebalance else jnp.ones_like(weights)
        targets = soft_encode_ab(ab, bins, neighbors=neighbors, sigma=sigma)
        value = rebalanced_cross_entropy(out, targets, jax.lax.stop_gradient(weights))
        return value, {**new_state, "ab_prior": prior}

    def loss_fn(params, method_state, batch, key, step, frozen):
        del frozen
        x = one_view(views, batch["images"], key, "colorization")
        value, new_state = objective(params, method_state, x, jnp.asarray(step))
        return value, (new_state, {})

    def visualize(params, method_state, images, key):
        """The image, its lightness (the network's input) and its colorization: the
        annealed mean (T = 0.38) of the predicted distribution, or the regressed ab."""
        del key
        x = eval_view(images, spec)
        lightness, _ = colorization_inputs(x)
        out, _ = predict(params, method_state["batch_stats"], x, False)
        if loss == "regression":
            ab = out * AB_SCALE
        else:
            ab = annealed_mean(jax.nn.softmax(out, axis=-1), bins)
        return {
            "original": x,
            "input": colorize(lightness, jnp.zeros_like(ab)),
            "output": colorize(lightness, ab),
        }

    return pretext_method("colorization", parts, loss_fn, spec, init=init, visualize=visualize)
