"""The config adapter: a method from the ``method`` section of a run's config.

:data:`METHODS` maps each ``method.name`` to its factory. It is not written by hand: the
registry imports every module of :mod:`ssl_jax.methods` and collects the factories declared
with :func:`~ssl_jax.method.method_factory`, whose declaration also names the view
function the factory takes (:func:`make_views` builds it). Adding a method is its module,
its config and its test.

Each method's hyperparameters and their defaults live in one place, the keyword arguments of
its library factory (``make_simclr(backbone, views, *, temperature=0.2, ...)``).
:func:`method_config` turns them into a config section; :func:`get_method` checks a section
against them (an unknown field is an error that lists the valid ones) and calls the factory
with the backbone of the ``model`` section, the views of the ``augment`` section and what
the run knows (``total_steps``, the global ``batch_size``, ``export.network``).
"""

import dataclasses
import importlib
import inspect
import pkgutil
import sys
from collections.abc import Callable
from typing import Any

import ml_collections

from ssl_jax.augment import make_multiview_fn
from ssl_jax.augment.from_config import (
    eval_settings,
    multicrop_from_config,
    view_specs_from_config,
)
from ssl_jax.augment.multicrop import make_multicrop_fn
from ssl_jax.export import make_input_spec
from ssl_jax.method import MULTICROP, ONE_RAW_VIEW, TOKENS, Method
from ssl_jax.models import make_backbone


def declared_factories() -> dict[str, Callable[..., Method]]:
    """Every factory of a module of this package declared with
    :func:`~ssl_jax.method.method_factory`, by its method name (sorted)."""
    found: dict[str, Callable[..., Method]] = {}
    package = __name__.rpartition(".")[0]
    for info in pkgutil.iter_modules(sys.modules[package].__path__):
        module = importlib.import_module(f"{package}.{info.name}")
        for value in vars(module).values():
            name = getattr(value, "method_name", None) if inspect.isfunction(value) else None
            if name is None or value.__module__ != module.__name__:
                continue
            if name in found:
                raise ValueError(
                    f"method name {name!r} is declared twice, by {found[name].__module__}."
                    f"{found[name].__name__} and {module.__name__}.{value.__name__}."
                )
            found[name] = value
    return dict(sorted(found.items()))


METHODS: dict[str, Callable[..., Method]] = declared_factories()
# Distillation methods are those whose factory takes the run's frozen ``teacher``.
DISTILL_METHODS = tuple(
    n for n, f in METHODS.items() if "teacher" in inspect.signature(f).parameters
)
# Factory arguments the run supplies; they are not fields of the ``method`` section.
RUN_ARGUMENTS = (
    "total_steps",
    "batch_size",
    "export_network",
    "input_spec",
    "teacher",
    "teacher_step",
)


def _factory(name: str) -> Callable[..., Method]:
    if name not in METHODS:
        raise ValueError(f"method.name={name!r} is unknown; valid names: {sorted(METHODS)}.")
    return METHODS[name]


def hyperparameters(name: str) -> dict[str, Any]:
    """The hyperparameters of method ``name`` and their defaults (its factory's keywords)."""
    params = inspect.signature(_factory(name)).parameters.values()
    return {
        p.name: p.default
        for p in params
        if p.kind is p.KEYWORD_ONLY and p.name not in RUN_ARGUMENTS
    }


def method_config(name: str, **fields) -> ml_collections.ConfigDict:
    """The ``method`` config section of ``name``: every hyperparameter, defaults overridden
    by ``fields``. Configs start from it, so any hyperparameter can be set from the command
    line (``--config.method.temperature=0.1``)."""
    defaults = hyperparameters(name)
    _check_fields(name, fields, defaults)
    return ml_collections.ConfigDict({"name": name, **defaults, **fields})


def _check_fields(name: str, fields, valid: dict) -> None:
    unknown = sorted(set(fields) - set(valid))
    if unknown:
        raise ValueError(
            f"method.name={name!r} has no field(s) {unknown}; valid fields: {sorted(valid)}. "
            f"Start the section from ssl_jax.methods.method_config({name!r}, ...)."
        )


def make_views(augment: ml_collections.ConfigDict, name: str):
    """The jittable view function of the ``augment`` section of the kind method ``name``
    declares (:data:`~ssl_jax.method.VIEW_KINDS`); None for a text method."""
    kind = _factory(name).views
    if kind == TOKENS:
        return None  # text methods corrupt the token records themselves
    if kind == MULTICROP:
        return make_multicrop_fn(*multicrop_from_config(augment))
    specs = view_specs_from_config(augment)
    if kind == ONE_RAW_VIEW:
        if len(specs) != 1:
            raise ValueError(
                f"{name} needs a one-view augment recipe ('crop_flip'), got {len(specs)} views."
            )
        raw = dataclasses.replace(specs[0], mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
        view = make_multiview_fn([raw])
        return lambda images, key: view(images, key)[0]
    if len(specs) != 2:
        raise ValueError(f"{name} needs a two-view augment recipe, got {len(specs)} views.")
    return make_multiview_fn(specs)


def get_method(config: ml_collections.ConfigDict, *, total_steps: int | None = None) -> Method:
    """Build the method named by ``config.method.name`` from the run's config.

    ``total_steps`` is the run's length, for methods with schedules of their own (BYOL's
    target momentum); the global batch size comes from ``data.batch_size``.
    """
    name = config.method.name
    factory = _factory(name)
    fields = {k: v for k, v in config.method.items() if k != "name"}
    _check_fields(name, fields, hyperparameters(name))
    accepts = inspect.signature(factory).parameters
    run = {
        "total_steps": total_steps,
        "batch_size": int(config.data.batch_size),
        "export_network": config.export.network,
        "input_spec": make_input_spec(**eval_settings(config.augment)),
        "teacher": config.get("teacher", ""),
        "teacher_step": config.get("teacher_step"),
    }
    run = {k: v for k, v in run.items() if k in accepts}
    if "export_network" not in run and config.export.network != "online":
        raise ValueError(
            f"export.network={config.export.network!r}: {name} has only the online network; "
            "use 'online'."
        )
    fields = {k: (tuple(v) if isinstance(v, list) else v) for k, v in fields.items()}
    backbone = make_backbone(config.model)
    return factory(backbone, make_views(config.augment, name), **fields, **run)
