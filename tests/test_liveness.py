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
