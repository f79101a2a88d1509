"""``ModuleDef``: a module's static definition plus its pure ``init`` and ``apply``.

The train step holds no NNX modules, only pytrees: a part of a model (backbone, projector,
predictor, DINO head, classifier) is described by its ``graphdef`` (static) and the ``build``
function that makes it, and its variables live in ``(params, batch_stats)`` pytrees, as optax's
``GradientTransformation`` is a ``NamedTuple`` of pure functions over its state.
"""

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
from flax import nnx

from ssl_jax.models.functional import apply_module, split_module


class ModuleDef(NamedTuple):
    """A module's static structure and its pure ``init`` / ``apply``; make one with ``module_def``.

    ``graphdef``: the NNX graph definition (hashable, static under ``jax.jit``). ``build``: makes
    the module, called as ``build(rngs=nnx.Rngs(...))`` (by keyword, so ``lambda rngs: ...`` and
    the registry's keyword-only factories, e.g. ``partial(resnet18, width=64)``, both fit).
    ``feature_dim``: the output width when the module has a ``feature_dim`` attribute
    (backbones), else ``None``.
    """

    graphdef: nnx.GraphDef
    build: Callable[..., nnx.Module]
    feature_dim: int | None = None

    def init(self, key: jax.Array) -> tuple[nnx.State, nnx.State]:
        """Fresh ``(params, batch_stats)`` from ``build(rngs=nnx.Rngs(params=key))``; jittable."""
        _, params, batch_stats = split_module(self.build(rngs=nnx.Rngs(params=key)))
        return params, batch_stats

    def apply(
        self,
        params: nnx.State,
        batch_stats: nnx.State,
        x: Any,
        *,
        train: bool,
        **kwargs: Any,
    ) -> tuple[Any, nnx.State]:
        """``(output, new_batch_stats)`` of the module on ``x``; see ``apply_module``.

        ``kwargs`` go to the module's ``__call__`` (e.g. ``return_all=True``, ``keep_indices``,
        ``rngs`` for a ViT); array-valued ones are traced, the others static.
        """
        return apply_module(self.graphdef, params, batch_stats, x, train=train, **kwargs)


def module_def(build: Callable[..., nnx.Module]) -> ModuleDef:
    """The ``ModuleDef`` of ``build``, traced with ``nnx.eval_shape`` (no parameter memory).

    ``build(rngs=...)`` must return a module holding only ``nnx.Param`` and ``nnx.BatchStat``
    variables (``split_module`` raises otherwise), e.g.
    ``module_def(lambda rngs: MLPHead(512, 2048, 128, rngs=rngs))`` or
    ``module_def(partial(resnet18, width=64, stem="cifar"))``.
    """
    module = nnx.eval_shape(lambda: build(rngs=nnx.Rngs(0)))
    graphdef, _, _ = split_module(module)
    return ModuleDef(
        graphdef=graphdef, build=build, feature_dim=getattr(module, "feature_dim", None)
    )


__all__ = ["ModuleDef", "module_def"]
