"""The training loop's host/device overlap: no wait on the step just dispatched, except where
something reads it (first step, logged steps, checkpoints, the stop), and the non-finite
policy still stops before anything of a bad step is saved."""

import jax.numpy as jnp
import pytest

from ssl_jax.programs import loop as loop_module
from ssl_jax.programs.loop import Loop, NonFiniteLossError, train


class Ckpt:
    def __init__(self, every: int):
        self.every, self.saved = every, []

    def due(self, step):
        return step % self.every == 0

    def wait(self):
        pass

    def latest_step(self):
        return self.saved[-1] if self.saved else None


class Writer:
    def __init__(self):
        self.steps, self.rows = [], []

    def write(self, step, row):
        self.steps.append(step)
        self.rows.append({"step": step, **row})
        return self.rows[-1]


def run(monkeypatch, *, total=20, log_every=5, ckpt=None, bad_step=None, eval_every=0):
    events = []
    original = loop_module.check_finite

    def check_finite(metrics, step, ckpt, workdir):
        events.append(("check", step))
        return original(metrics, step, ckpt, workdir)

    monkeypatch.setattr(loop_module, "check_finite", check_finite)

    def train_step(state, batch):
        step = state + 1
        events.append(("dispatch", step))
        loss = jnp.float32(jnp.nan if step == bad_step else 1.0 / step)
        return step, {"loss": loss, "grad_norm": jnp.float32(1.0), "params_finite": True}

    ckpt, writer = ckpt or Ckpt(10), Writer()

    def save(step, state, force):
        assert ("check", step) in events, f"step {step} saved before its loss was checked"
        if force or ckpt.due(step):
            ckpt.saved.append(step)

    spec = Loop(
        train_step=train_step,
        batches=((i, None) for i in range(10**6)),
        save=save,
        total_steps=total,
        batch_size=4,
        steps_per_epoch=10,
        log_every=log_every,
        evaluates=lambda step: bool(eval_every) and step % eval_every == 0,
        evaluate=lambda step, state: {"eval_state": state},
        progress=False,
    )
    state, results = train(spec, 0, 0, ckpt=ckpt, writer=writer, workdir="w")
    return events, ckpt, writer, results


def test_the_host_waits_only_for_steps_something_reads(monkeypatch):
    events, ckpt, writer, results = run(monkeypatch, ckpt=Ckpt(6))
    checks = [s for kind, s in events if kind == "check"]
    assert checks == list(range(1, 21)), "every step's loss is checked once, in order"
    read = {1, 5, 6, 10, 12, 15, 18, 20}  # first (compile time), logged, checkpointed, last
    for i, (kind, step) in enumerate(events):
        if kind == "check":
            dispatched = max(s for k, s in events[:i] if k == "dispatch")
            expected = step if step in read else step + 1
            assert dispatched == expected, (
                f"step {step} was checked with step {dispatched} dispatched; expected {expected}"
            )
    assert writer.steps == [5, 10, 15, 20] and ckpt.saved == [6, 12, 18, 20]
    assert results["final_step"] == 20 and "first_step_s" in results


@pytest.mark.parametrize("bad_step", [7, 6])
def test_a_bad_step_stops_the_run_before_anything_after_it_is_saved(monkeypatch, bad_step):
    """Step 7 is read by nobody (found when step 8 is dispatched), step 6 is checkpointed
    (found at once); either way the saves stop at the last good checkpoint, step 3 or 6 - 3."""
    ckpt = Ckpt(3)
    with pytest.raises(NonFiniteLossError, match=rf"at step {bad_step}\b"):
        run(monkeypatch, ckpt=ckpt, bad_step=bad_step)
    assert ckpt.saved == ([3, 6] if bad_step == 7 else [3])


def test_evaluations_run_on_their_own_steps_whatever_the_logging_interval(monkeypatch):
    """An evaluation every 7 steps with logs every 5: evaluated (and written) at 7 and 14 with
    the state after that step, logged alone at 5, 10, 15 and 20."""
    events, _, writer, _ = run(monkeypatch, eval_every=7)
    assert writer.steps == [5, 7, 10, 14, 15, 20]
    evaluated = {r["step"]: r["eval_state"] for r in writer.rows if "eval_state" in r}
    assert evaluated == {7: 7, 14: 14}
    for step in (7, 14):  # read at once, like a logged step
        i = events.index(("check", step))
        assert max(s for k, s in events[:i] if k == "dispatch") == step


def test_without_a_progress_bar_each_logged_step_is_a_log_line(monkeypatch, caplog):
    with caplog.at_level("INFO", logger=loop_module.__name__):
        run(monkeypatch, total=10, log_every=5)
    lines = [r.getMessage() for r in caplog.records if " step " in r.getMessage()]
    assert [line.split(":")[0] for line in lines] == ["train step 5/10", "train step 10/10"]
    assert lines[0].startswith("train step 5/10: loss 0.2000, ") and lines[0].endswith(" images/s")


def test_the_loop_closes_its_batches():
    closed = []

    def batches():
        try:
            yield from ((i, None) for i in range(10**6))
        finally:
            closed.append(True)

    spec = Loop(
        train_step=lambda state, batch: (
            state + 1,
            {"loss": jnp.float32(1.0), "grad_norm": jnp.float32(1.0), "params_finite": True},
        ),
        batches=batches(),
        save=lambda step, state, force: None,
        total_steps=3,
        batch_size=4,
        steps_per_epoch=10,
        log_every=1,
        progress=False,
    )
    train(spec, 0, 0, ckpt=Ckpt(10), writer=Writer(), workdir="w")
    assert closed == [True]
