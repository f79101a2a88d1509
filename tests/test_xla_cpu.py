"""ssl_jax.xla_cpu: the CPU compiler flags the launch programs add before JAX starts."""

import jaxlib
import pytest

from ssl_jax import xla_cpu

FLAG = "--xla_cpu_experimental_ynn_fusion_type=-individual_convolution"


def test_adds_the_flags_after_the_users_own(monkeypatch):
    monkeypatch.setattr(jaxlib, "__version__", "0.10.2")
    env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
    assert xla_cpu.configure(env) == [FLAG]
    assert env["XLA_FLAGS"] == f"--xla_force_host_platform_device_count=8 {FLAG}"
    assert xla_cpu.configure(env) == [], "a second call adds nothing"
    empty = {}
    assert xla_cpu.configure(empty) == [FLAG] and empty["XLA_FLAGS"] == FLAG


def test_never_overrides_a_value_the_user_chose(monkeypatch):
    monkeypatch.setattr(jaxlib, "__version__", "0.10.2")
    env = {"XLA_FLAGS": "--xla_cpu_experimental_ynn_fusion_type=individual_convolution"}
    assert xla_cpu.configure(env) == []
    assert env["XLA_FLAGS"] == "--xla_cpu_experimental_ynn_fusion_type=individual_convolution"


def test_other_jaxlib_series_get_nothing(monkeypatch):
    """XLA aborts on a flag it does not know: only the measured series gets them."""
    monkeypatch.setattr(jaxlib, "__version__", "0.11.0")
    env = {}
    assert xla_cpu.configure(env) == [] and env == {}


def test_the_programs_apply_them_before_anything_else(monkeypatch):
    """``cli.start`` (every launch/ program) calls ``configure`` before touching JAX's config."""
    from ssl_jax.programs import cli

    class Called(Exception):
        pass

    def configure():
        raise Called

    monkeypatch.setattr(cli.xla_cpu, "configure", configure)
    monkeypatch.setattr(cli.jax.config, "update", lambda *a: pytest.fail("configured JAX first"))
    with pytest.raises(Called):
        cli.start()
