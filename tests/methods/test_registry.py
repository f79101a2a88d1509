"""The config adapter: defaults in one place, unknown fields rejected, run arguments passed."""

import functools
import inspect

import ml_collections
import pytest

from ssl_jax.method import VIEW_KINDS, method_factory
from ssl_jax.methods import METHODS, get_method, hyperparameters, method_config
from ssl_jax.methods.registry import DISTILL_METHODS, RUN_ARGUMENTS, declared_factories
from tests.programs.tiny import tiny_pretrain_config


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_hyperparameter_has_its_default_in_the_factory(name):
    """Factories take ``(backbone, views)`` positionally, everything else by keyword with a
    default (except ``total_steps`` for methods with schedules and the pretext tasks'
    ``input_spec``, which the run supplies)."""
    params = list(inspect.signature(METHODS[name]).parameters.values())
    assert [p.name for p in params[:2]] == ["backbone", "views"]
    for p in params[2:]:
        assert p.kind is p.KEYWORD_ONLY, (name, p.name)
        assert p.default is not p.empty or p.name in ("total_steps", "input_spec", "teacher"), (
            name,
            p,
        )
    section = method_config(name)
    assert section.name == name
    assert {k: section[k] for k in section if k != "name"} == hyperparameters(name)
    assert not set(hyperparameters(name)) & set(RUN_ARGUMENTS)


def test_the_registry_is_every_declared_factory_of_the_package():
    """``METHODS`` is discovered, not written: each factory declares its name and views."""
    assert METHODS == declared_factories()
    assert {"simclr", "mocov2", "dino", "swav", "rotation", "mae", "seed"} <= set(METHODS)
    for name, factory in METHODS.items():
        assert factory.method_name == name and factory.views in VIEW_KINDS, name
    assert METHODS["dino"].views == "multicrop" and METHODS["byol"].views == "two_views"
    assert METHODS["mae"].views == "one_raw_view" == METHODS["kd"].views
    assert DISTILL_METHODS == ("clusterfit", "cosine", "dino_kd", "kd", "mse", "seed")  # teachers
    with pytest.raises(ValueError, match="views='three_views' is not one of"):
        method_factory("x", views="three_views")


def test_method_config_overrides_and_rejects_unknown_fields():
    section = method_config("swav", num_prototypes=30, queue_length=128)
    assert section.num_prototypes == 30 and section.sinkhorn_iters == 3
    with pytest.raises(ValueError, match=r"no field\(s\) \['sinkhorn_epsilom'\]") as info:
        method_config("swav", sinkhorn_epsilom=0.03)
    assert "sinkhorn_epsilon" in str(info.value)  # the valid fields are listed
    with pytest.raises(ValueError, match="unknown; valid names"):
        method_config("simclr_v9")


def test_get_method_rejects_a_field_the_method_does_not_have():
    """A field added to a section by hand (or left over from another method's section)."""
    config = tiny_pretrain_config(**{"method.name": "byol"})
    config.unlock()
    config.method.temperature = 0.1  # BYOL has no temperature
    config.lock()
    with pytest.raises(ValueError, match=r"'byol' has no field\(s\) \['temperature'\]") as info:
        get_method(config, total_steps=10)
    assert "base_momentum" in str(info.value)


def test_online_only_methods_reject_another_export_network():
    with pytest.raises(ValueError, match="only the online network"):
        get_method(tiny_pretrain_config(**{"export.network": "target"}))


def test_run_arguments_reach_the_factory_only_where_it_takes_them(monkeypatch):
    seen = {}

    def fake(name):
        @functools.wraps(METHODS[name])  # its signature and its declaration (views)
        def factory(backbone, views, *, proj_hidden_dim=1, proj_dim=1, **run):
            seen[name] = {k: v for k, v in run.items() if k in RUN_ARGUMENTS}
            return name

        return factory

    for name in ("simclr", "mocov2", "swav", "byol"):
        monkeypatch.setitem(METHODS, name, fake(name))
    swav_views = {"augment.recipe": "swav", "augment.crop_scale": (), "augment.local_crop_size": 4}
    base = {
        "simclr": {},
        "mocov2": {"method.queue_length": 64},
        "swav": swav_views,
        "byol": {},
    }
    for name, fields in base.items():
        config = tiny_pretrain_config(**{"method.name": name, **fields})
        assert get_method(config, total_steps=7) == name
    assert seen["simclr"] == {}
    assert seen["mocov2"] == {"total_steps": 7, "batch_size": 16, "export_network": "online"}
    assert seen["swav"] == {"batch_size": 16}
    assert seen["byol"] == {"total_steps": 7, "export_network": "online"}


def test_the_default_section_is_simclrs_and_configs_replace_it():
    from ssl_jax.config import pretrain_defaults

    c = pretrain_defaults()
    assert c.method.to_dict() == method_config("simclr").to_dict()
    assert isinstance(c.method, ml_collections.ConfigDict)
