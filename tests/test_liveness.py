"""The watchdog's verdicts on a fake coordination-service client (the real processes are in
tests/programs/test_multihost_failures.py, slow job)."""

import jax
import pytest

from ssl_jax import liveness


class FakeClient:
    def __init__(self, alive=(0, 1), failed=None, broken=False):
        self.alive, self.failed, self.broken = set(alive), failed or {}, broken

    def get_live_nodes(self, ids):
        if self.broken:
            raise jax.errors.JaxRuntimeError("UNAVAILABLE: Socket closed\nmore")
        return {i: 1 for i in ids if i in self.alive}

    def key_value_try_get(self, key):
        process = int(key.rsplit("/", 1)[1])
        if process not in self.failed:
            raise jax.errors.JaxRuntimeError(f"NOT_FOUND: {key}")
        return self.failed[process]


def dog(client, me=0, count=2):
    watchdog = liveness.Watchdog(client, 10, exit_fn=lambda code: None)
    watchdog.me, watchdog.count = me, count
    return watchdog


def test_all_alive_is_fine():
    assert dog(FakeClient()).check() is None


def test_a_lost_process_is_named():
    assert dog(FakeClient(alive=(0, 2)), count=3).check() == (
        "process 1 of 3 was lost (no heartbeat for 10 s)"
    )


def test_a_reported_failure_is_named():
    client = FakeClient(failed={1: "ValueError: bad file x.png"})
    assert dog(client).check() == "process 1 of 2 failed (ValueError: bad file x.png)"


def test_the_coordinator_going_away_is_named():
    problem = dog(FakeClient(broken=True), me=1).check()
    assert problem.startswith("process 0 of 2 (the coordinator,")
    assert problem.endswith("unreachable: JaxRuntimeError: UNAVAILABLE: Socket closed")


def test_the_stop_line_is_one_line_with_the_status(capsys):
    codes = []
    watchdog = liveness.Watchdog(FakeClient(), 10, exit_fn=codes.append)
    watchdog.status = lambda: "at step 7; checkpoint step 4 is intact in /r"
    watchdog.stop_process("process 1 of 2 was lost")
    err = capsys.readouterr().err
    assert codes == [liveness.EXIT_LOST]
    assert err.count("\n") == 1
    assert err.strip() == (
        f"Process {jax.process_index()}: process 1 of 2 was lost; stopping at step 7; "
        "checkpoint step 4 is intact in /r."
    )


def test_a_bad_heartbeat_timeout_is_refused():
    with pytest.raises(ValueError, match="heartbeat_timeout_s must be positive"):
        liveness.initialize("localhost:1", 2, 0, heartbeat_timeout_s=0)


def test_compile_together_compiles_before_the_barrier(monkeypatch):
    events = []

    def on_event(name, secs, **kwargs):
        if name.endswith("backend_compile_duration"):
            events.append("compile")

    class BarrierClient(FakeClient):
        def wait_at_barrier(self, name, timeout_ms):
            events.append(name)

    f, x = jax.jit(lambda x: x * 3), jax.numpy.ones(3)
    monkeypatch.setattr(liveness, "_watchdog", dog(BarrierClient()))
    jax.monitoring.register_event_duration_secs_listener(on_event)
    try:
        liveness.compile_together(f, x)
        assert f(x).tolist() == [3.0, 3.0, 3.0]
        liveness.compile_together(f, x)
    finally:
        jax.monitoring.unregister_event_duration_listener(on_event)
    first, second = (e for e in events if e != "compile")
    assert events[:2] == ["compile", first]  # compiled, then waited for the others
    assert first != second  # each barrier has its own name
    assert events.count("compile") == 1  # the call reused the ahead-of-time compilation


def test_one_process_compiles_nothing_ahead(monkeypatch):
    monkeypatch.setattr(liveness, "_watchdog", None)
    f = jax.jit(lambda x: x * 2)
    liveness.compile_together(f, jax.numpy.ones(3))
    assert f._cache_size() == 0
