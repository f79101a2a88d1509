"""RotNet (Gidaris, Singh, Komodakis 2018): predict which of 0/90/180/270 degrees an image was
rotated by. https://arxiv.org/abs/1803.07728

Every image of the batch goes through the network in all four rotations at once, as the
paper trains ("we found that ... feeding all four rotated copies of an image simultaneously
... improves the results"), so a batch of N images is a backbone batch of 4N. The classifier
on the pooled features is a Linear layer (``head_layers=1``) or an MLP.
"""

from ssl_jax.export import convert_input
from ssl_jax.method import ONE_RAW_VIEW, Method, method_factory
from ssl_jax.methods.networks import apply_chain, mlp_head
from ssl_jax.methods.pretext_task import make_classification_pretext
from ssl_jax.pretext.rotation import rotate_batch


@method_factory("rotation", views=ONE_RAW_VIEW)
def make_rotation(
    backbone, views, *, input_spec: dict, head_layers: int = 1, head_hidden_dim: int = 512
) -> Method:
    """RotNet on ``backbone``: the one view ``views(images_uint8, key) -> x`` in [0, 1], its
    four rotations, a ``head_layers``-layer classifier (hidden width ``head_hidden_dim``)
    over 4 classes; ``input_spec`` is the export's (:func:`ssl_jax.export.make_input_spec`).
    """
    parts = {
        "backbone": backbone,
        "classifier": mlp_head(backbone.feature_dim, head_hidden_dim, 4, num_layers=head_layers),
    }

    def objective(params, method_state, x, key):
        del key
        x, labels = rotate_batch(x)
        logits, stats = apply_chain(
            parts,
            ("backbone", "classifier"),
            params,
            method_state["batch_stats"],
            convert_input(x, input_spec),
        )
        return logits, labels, stats

    return make_classification_pretext("rotation", parts, views, objective, input_spec)
