import json
import os
import re
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import optax
import pytest

from ssl_jax import checkpoint
from ssl_jax.data import DataError
from ssl_jax.metrics import read_metrics
from ssl_jax.optim import make_optimizer
from ssl_jax.programs import knn, linear_probe, loop, pretrain
from ssl_jax.programs import setup as program_setup
from tests.programs import toy
from tests.programs.tiny import DIGITS, tiny_pretrain_config, tiny_probe_config

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def losses(workdir):
    """``{step: loss}`` of the method alone: the shared ``pretrained`` run trains the online
    linear probe too, whose cross-entropy its logged loss includes (the probe does not change
    the encoder's trajectory, which these comparisons check as well)."""
    rows = read_metrics(os.path.join(workdir, "metrics.jsonl"))
    return {r["step"]: r["loss"] - r.get("online_linear_loss", 0.0) for r in rows}


def restore_raw(workdir, step):
    """The saved TrainState of ``step`` as plain dicts of host arrays, and the data state."""
    ckpt = checkpoint.Checkpointer(workdir, read_only=True)
    try:
        state, data = ckpt.restore(step, None)
    finally:
        ckpt.close()
    return jax.device_get(state), data


def trees_equal(a, b) -> bool:
    if jax.tree.structure(a) != jax.tree.structure(b):
        return False
    return all(
        np.asarray(x).dtype == np.asarray(y).dtype and np.array_equal(x, y)
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    )


def test_pretrain_writes_metrics_checkpoints_and_results(pretrained):
    workdir, results = pretrained
    rows = read_metrics(os.path.join(workdir, "metrics.jsonl"))
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]
    for row in rows:
        assert {"step", "loss", "learning_rate", "images_per_sec"} <= row.keys()
        assert np.isfinite(row["loss"]) and row["images_per_sec"] > 0
    knn_rows = {r["step"]: r["knn_top1_k20"] for r in rows if "knn_top1_k20" in r}
    assert sorted(knn_rows) == [3, 6] and all(10 < v <= 100 for v in knn_rows.values())
    assert all("knn_top1_k5" in r for r in rows if r["step"] in (3, 6))
    probe_rows = {r["step"]: r["online_linear_top1"] for r in rows if "online_linear_top1" in r}
    assert sorted(probe_rows) == [3, 6] and all(0 <= v <= 100 for v in probe_rows.values())
    assert all(np.isfinite(r["online_linear_loss"]) for r in rows)
    assert all(0 <= r["online_linear_train_top1"] <= 100 for r in rows)
    assert checkpoint.resolve_step(workdir) == 6
    assert results["final_step"] == 6
    assert results["program"] == "pretrain" and results["dataset"] == DIGITS
    # One compiled train step for 6 steps with checkpoints and evaluations between them.
    assert results["train_step_compilations"] == 1
    assert 0 < results["first_step_s"] < results["wall_time_s"]
    with open(os.path.join(workdir, "results.json")) as f:
        assert json.load(f)["final_step"] == 6
    saved = checkpoint.read_config(workdir)
    assert saved["model"]["width"] == 4 and saved["data"]["name"] == "digits"


def test_online_linear_top1_is_the_saved_probe_on_the_exported_test_features(pretrained):
    """Step 6's logged ``online_linear_top1`` recomputed from the checkpoint: the saved
    classifier on ``load_export(...).encode`` of every test image."""
    from ssl_jax.data import get_source
    from ssl_jax.export import load_export

    workdir, _ = pretrained
    logged = {r["step"]: r for r in read_metrics(os.path.join(workdir, "metrics.jsonl"))}
    state, _ = restore_raw(workdir, 6)
    probe = state["params"]["online_linear"]
    config = tiny_pretrain_config()
    images, labels = get_source(config.data, "test").get(np.arange(360))
    features = np.asarray(load_export(workdir, 6).encode(images))
    logits = features @ np.asarray(probe["kernel"]) + np.asarray(probe["bias"])
    expected = 100.0 * np.mean(logits.argmax(-1) == labels)
    np.testing.assert_allclose(logged[6]["online_linear_top1"], expected, atol=1e-6)


def test_probe_and_knn_read_the_encoder_export(pretrained, tmp_path):
    workdir, _ = pretrained
    ssl = linear_probe.run(tiny_probe_config(workdir), str(tmp_path / "probe"))
    rand = linear_probe.run(tiny_probe_config(workdir, random_init=True), str(tmp_path / "rnd"))
    assert ssl["split"] == "test" and ssl["encoder"] == "pretrained" and ssl["step"] == 6
    assert rand["encoder"] == "random_init"
    assert ssl["num_test"] == 360 and ssl["num_train"] == 1437
    assert 0 <= ssl["top1"] <= ssl["top5"] <= 100
    assert ssl["top1"] != rand["top1"] or ssl["final_train_loss"] != rand["final_train_loss"]
    with open(tmp_path / "probe" / "results.json") as f:
        assert json.load(f)["top1"] == ssl["top1"]
    res = knn.run(tiny_probe_config(workdir), str(tmp_path / "knn"))
    assert {"top1_k5", "top1_k20", "top5_k20"} <= res.keys()
    assert res["top1_k20"] > 30  # 10 classes: chance is 10%


@pytest.mark.parametrize(
    "async_save",
    [False, pytest.param(True, marks=pytest.mark.slow)],  # async: 9 s, in the slow job
    ids=["sync", "async"],
)
def test_resume_continues_the_same_trajectory(pretrained, tmp_path, async_save):
    reference, _ = pretrained
    workdir = str(tmp_path / "interrupted")
    # async_save=True is the default: the state is donated to the next step while Orbax
    # may still be writing the previous one.
    config = tiny_pretrain_config(**{"total_steps": 6, "ckpt.async_save": async_save})
    first = pretrain.run(config, workdir, should_stop=lambda step: step == 3)
    assert first["interrupted_at"] == 3
    assert checkpoint.resolve_step(workdir) == 3
    second = pretrain.run(config, workdir)
    assert second["start_step"] == 3 and second["final_step"] == 6
    got, want = losses(workdir), losses(reference)
    assert sorted(got) == [1, 2, 3, 4, 5, 6]
    np.testing.assert_allclose([got[s] for s in got], [want[s] for s in got], rtol=1e-6)


@pytest.mark.slow  # two more runs (about 15 s)
def test_resume_from_and_init_from_another_run(pretrained, tmp_path):
    reference, _ = pretrained
    interrupted = str(tmp_path / "interrupted")
    config = tiny_pretrain_config(**{"total_steps": 6})
    pretrain.run(config, interrupted, should_stop=lambda step: step == 3)
    fresh = str(tmp_path / "fresh")
    resumed = pretrain.run(
        tiny_pretrain_config(**{"total_steps": 6, "ckpt.resume_from": interrupted}), fresh
    )
    assert resumed["start_step"] == 3
    got, want = losses(fresh), losses(reference)
    assert sorted(got) == [4, 5, 6]
    np.testing.assert_allclose([got[s] for s in got], [want[s] for s in got], rtol=1e-6)
    assert checkpoint.resolve_step(interrupted) == 3  # the source run is left as it was

    init = pretrain.run(
        tiny_pretrain_config(**{"total_steps": 6, "ckpt.init_from": reference}),
        str(tmp_path / "init"),
    )
    assert init["start_step"] == 0
    # Same seed and data as the reference run, but starting from its trained params.
    assert losses(str(tmp_path / "init"))[1] < want[1] - 0.05


@pytest.mark.slow  # about 28 s (a 1-device run to compile), like the per-method 1-vs-8 tests
def test_one_and_eight_devices_give_the_same_trajectory(tmp_path):
    runs = {}
    for n in (1, 8):
        config = tiny_pretrain_config(**{"total_steps": 3, "mesh.num_devices": n})
        pretrain.run(config, str(tmp_path / f"dev{n}"))
        runs[n] = losses(str(tmp_path / f"dev{n}"))
    assert sorted(runs[1]) == [1, 2, 3]
    np.testing.assert_allclose(
        [runs[8][s] for s in (1, 2, 3)], [runs[1][s] for s in (1, 2, 3)], rtol=2e-5
    )


@pytest.mark.slow  # three runs of 2 steps, each compiling its own mesh's step (about 45 s)
def test_an_fsdp_run_resumes_on_fewer_devices_and_follows_the_replicated_run(pretrained, tmp_path):
    """The shared run's config (kNN and online probe evaluated at 3 and 6) with the state split
    over the devices: 2 steps on 8 devices, then 2 on 4, then 2 on 1, each resuming the
    sharded checkpoint of the one before; the losses and evaluations are the replicated
    8-device run's."""
    reference, want_results = pretrained
    workdir = str(tmp_path / "fsdp")
    evals = {
        "evals.knn.every_steps": 3,
        "evals.knn.k": (5, 20),
        "evals.online_linear.every_steps": 3,
    }
    for devices, stop in ((8, 2), (4, 4), (1, None)):
        fields = {"total_steps": 6, "mesh.fsdp": True, "mesh.fsdp_min_size": 0}
        config = tiny_pretrain_config(**{**fields, **evals, "mesh.num_devices": devices})
        results = pretrain.run(
            config, workdir, should_stop=stop and (lambda step, s=stop: step == s)
        )
    assert results["start_step"] == 4 and results["final_step"] == 6
    got, want = losses(workdir), losses(reference)
    assert sorted(got) == [1, 2, 3, 4, 5, 6]
    np.testing.assert_allclose([got[s] for s in got], [want[s] for s in got], rtol=2e-5)
    for key in ("knn_top1_k20", "online_linear_top1"):
        assert abs(results[key] - want_results[key]) <= 1.0, key  # percent; float noise at most


@pytest.mark.slow  # the real model diverging (about 20 s); the toy test below is the fast one
def test_non_finite_loss_stops_and_keeps_good_checkpoints(tmp_path):
    workdir = str(tmp_path / "nan")
    pretrain.run(tiny_pretrain_config(**{"total_steps": 2}), workdir)
    step_dir = os.path.join(workdir, "checkpoints", "2")
    before = sorted(os.listdir(step_dir))
    bad = tiny_pretrain_config(
        **{"total_steps": 6, "optim.base_learning_rate": 1e38, "ckpt.every_steps": 1}
    )
    with pytest.raises(pretrain.NonFiniteLossError, match=r"at step (\d+)") as err:
        pretrain.run(bad, workdir)
    failed = int(re.search(r"at step (\d+)", str(err.value)).group(1))
    assert 3 <= failed <= 6
    last_good = checkpoint.resolve_step(workdir)
    assert last_good == failed - 1  # every finite step was saved, the failed one was not
    assert f"up to step {last_good}" in str(err.value)
    assert sorted(os.listdir(step_dir)) == before


def test_init_from_takes_params_and_method_state_with_a_fresh_optimizer(tmp_path, monkeypatch):
    """init_from: the source's params and method state (the toy's step counter stands for EMA
    targets, queues, BatchNorm statistics); a fresh optimizer state, step 0, and the new
    run's own seed (1; the source used 0) and data order."""
    monkeypatch.setattr(pretrain, "get_method", toy.with_toy_method())
    source_dir = str(tmp_path / "source")
    pretrain.run(tiny_pretrain_config(**{"total_steps": 6}), source_dir)
    seen = {}

    def spy(config, init_fn, abstract_state):
        state, data_state, origin = real_start(config, init_fn, abstract_state)
        seen.update(
            state=jax.device_get(state),  # host copies: run() donates the state
            scratch=jax.device_get(init_fn(config.seed)),
            abstract=abstract_state,
            data_state=data_state,
            origin=origin,
        )
        return state, data_state, origin

    real_start = pretrain._start
    monkeypatch.setattr(pretrain, "_start", spy)
    config = tiny_pretrain_config(**{"total_steps": 6, "seed": 1, "ckpt.init_from": source_dir})
    results = pretrain.run(config, str(tmp_path / "init"), should_stop=lambda step: True)
    reader = checkpoint.Checkpointer(source_dir, read_only=True)
    source = jax.device_get(reader.restore(6, seen["abstract"])[0])
    reader.close()
    state, scratch = seen["state"], seen["scratch"]

    assert seen["origin"] == f"initialised from {source_dir} (step 6)"
    assert results["start_step"] == 0 and int(state.step) == 0
    assert seen["data_state"] == {"step": 0}  # with this run's seed: the data order is its own
    # Every comparison below can fail: the source and a scratch state differ in each part.
    for part in ("params", "method_state", "opt_state", "rng"):
        a, b = getattr(source, part), getattr(scratch, part)
        assert jax.tree.structure(a) == jax.tree.structure(b) and not trees_equal(a, b), part
    assert trees_equal(state.params, source.params), "params are not the source's"
    assert trees_equal(state.method_state, source.method_state), "method_state differs"
    assert trees_equal(state.opt_state, scratch.opt_state), "opt_state is not a fresh tx.init"
    assert trees_equal(state.rng, scratch.rng), "rng is not from this run's own seed"

    # The source's optimizer state is not read: another optimizer (here SGD with clipping,
    # a different opt_state tree than the source's AdamW) can start from it.
    other = tiny_pretrain_config(
        **{"optim.name": "sgd", "optim.grad_clip_norm": 1.0, "ckpt.init_from": source_dir}
    )
    results = pretrain.run(other, str(tmp_path / "sgd"), should_stop=lambda step: True)
    assert results["start_step"] == 0
    assert jax.tree.structure(seen["state"].opt_state) != jax.tree.structure(source.opt_state)
    assert trees_equal(seen["state"].params, source.params)
    assert trees_equal(seen["state"].method_state, source.method_state)
    assert trees_equal(seen["state"].opt_state, seen["scratch"].opt_state)


NON_FINITE = re.compile(
    r"Non-finite loss \((.+?)\), gradient norm \((.+?)\) or parameters "
    r"\(finite: (True|False)\) at step (\d+)\. Checkpoints up to step (\d+) in "
)


def non_finite_report(error) -> dict:
    match = NON_FINITE.search(str(error))
    assert match, f"unexpected message: {error}"
    loss, gnorm, finite, step, last_good = match.groups()
    return {
        "loss_finite": bool(np.isfinite(float(loss))),
        "grad_norm_finite": bool(np.isfinite(float(gnorm))),
        "params_finite": finite == "True",
        "step": int(step),
        "checkpoints_up_to": int(last_good),
    }


def run_until_non_finite(config, workdir, cause: str) -> dict:
    """Runs ``config``, which must stop with NonFiniteLossError; the error's numbers."""
    try:
        pretrain.run(config, workdir)
    except pretrain.NonFiniteLossError as error:
        return non_finite_report(error) | {"message": str(error)}
    pytest.fail(f"{cause} did not stop the run with NonFiniteLossError")


def check_stopped_cleanly(workdir, config, failed, monkeypatch, tmp_path):
    """Nothing of step ``failed`` was saved or logged; step ``failed - 1``'s checkpoint is
    the same as that of a clean run stopped there."""
    assert checkpoint.resolve_step(workdir) == failed - 1
    assert sorted(losses(workdir)) == list(range(1, failed))
    monkeypatch.setattr(pretrain, "get_method", toy.with_toy_method())
    monkeypatch.setattr(program_setup, "make_optimizer", make_optimizer)
    clean = str(tmp_path / "clean")
    pretrain.run(config, clean, should_stop=lambda step: step == failed - 1)
    got, got_data = restore_raw(workdir, failed - 1)
    want, want_data = restore_raw(clean, failed - 1)
    assert got_data == want_data
    for part in ("step", "params", "method_state", "rng"):
        assert trees_equal(got[part], want[part]), f"checkpoint {failed - 1}: {part} differs"


def expect_stop_at_step_3(tmp_path, monkeypatch, cause, **not_finite):
    """A 5-step run that must stop at step 3 with exactly the ``not_finite`` checks failing
    (the others finite), keeping step 2's checkpoint as a clean run saves it."""
    workdir = str(tmp_path / "w")
    config = tiny_pretrain_config(**{"total_steps": 5, "ckpt.every_steps": 1})
    report = run_until_non_finite(config, workdir, cause)
    message = report.pop("message")
    finite = {"loss_finite": True, "grad_norm_finite": True, "params_finite": True}
    assert report == {**finite, **not_finite, "step": 3, "checkpoints_up_to": 2}, message
    check_stopped_cleanly(workdir, config, 3, monkeypatch, tmp_path)


def test_a_non_finite_loss_stops_the_run(tmp_path, monkeypatch):
    """From step 3 the loss is NaN: the run stops there, step 2's checkpoint is kept."""
    monkeypatch.setattr(pretrain, "get_method", toy.with_toy_method(nan_loss_from_step=2))
    workdir = str(tmp_path / "w")
    config = tiny_pretrain_config(**{"total_steps": 5, "ckpt.every_steps": 1})
    report = run_until_non_finite(config, workdir, "a NaN loss at step 3")
    message = report.pop("message")
    assert not report["loss_finite"], message
    assert (report["step"], report["checkpoints_up_to"]) == (3, 2), message
    check_stopped_cleanly(workdir, config, 3, monkeypatch, tmp_path)


def test_a_non_finite_gradient_alone_stops_the_run(tmp_path, monkeypatch):
    """From step 3 the gradient is NaN while the loss is finite; optax.zero_nans keeps the
    parameters finite, so only the gradient-norm check can stop the run."""
    monkeypatch.setattr(pretrain, "get_method", toy.with_toy_method(nan_grad_from_step=2))
    monkeypatch.setattr(
        program_setup,
        "make_optimizer",
        lambda optim, schedule, params=None: optax.chain(
            optax.zero_nans(), make_optimizer(optim, schedule)
        ),
    )
    cause = "a NaN gradient at step 3 (loss and parameters finite)"
    expect_stop_at_step_3(tmp_path, monkeypatch, cause, grad_norm_finite=False)


def test_non_finite_parameters_alone_stop_the_run(tmp_path, monkeypatch):
    """The third optimizer update is +inf: after step 3 the parameters are infinite while
    that step's loss and gradient were finite, so only the parameter check can stop it."""
    monkeypatch.setattr(pretrain, "get_method", toy.with_toy_method())
    monkeypatch.setattr(
        program_setup,
        "make_optimizer",
        lambda optim, schedule, params=None: optax.chain(
            make_optimizer(optim, schedule), toy.inf_updates_from(2)
        ),
    )
    cause = "infinite parameters after step 3 (loss and gradient finite)"
    expect_stop_at_step_3(tmp_path, monkeypatch, cause, params_finite=False)


# Run in a subprocess by the crash test: resume the toy run in argv[1] and, while writing
# the ``state`` item of step argv[3] (after the other items of that step were written and
# before the step is committed), write the item's temporary path to argv[2] and hang.
KILLED_MID_SAVE = """
import asyncio, json, os, sys
import orbax.checkpoint._src.path.atomicity as atomicity
from ssl_jax.programs import pretrain
from tests.programs import toy
from tests.programs.tiny import tiny_pretrain_config

workdir, marker, block_step, config = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
real_finalize = atomicity.AtomicRenameTemporaryPath.finalize

async def finalize(self):
    final = self.get_final()
    if final.name == "state" and final.parent.name.startswith(block_step + "."):
        with open(marker + ".tmp", "w") as f:
            f.write(str(self.get()))
        os.rename(marker + ".tmp", marker)
        await asyncio.sleep(600)
    await real_finalize(self)

atomicity.AtomicRenameTemporaryPath.finalize = finalize
pretrain.get_method = toy.with_toy_method()
pretrain.run(tiny_pretrain_config(**json.loads(config)), workdir)
"""


def checkpoint_files(step_dir) -> dict:
    files = {}
    for root, _, names in os.walk(step_dir):
        for name in names:
            with open(os.path.join(root, name), "rb") as f:
                files[os.path.relpath(os.path.join(root, name), step_dir)] = f.read()
    return files


def test_a_run_killed_mid_save_keeps_the_last_checkpoint_and_resumes(tmp_path, monkeypatch):
    """SIGKILL during the asynchronous save of step 4, with keep=1: step 2 stays on disk
    byte for byte, step 4 is not reported, and the next run resumes from step 2.

    The subprocess blocks inside Orbax's commit of step 4's ``state`` item (a private
    Orbax hook) and says so through a marker file; only then is it killed, so the kill
    certainly lands between the start of the save and its commit.
    """
    monkeypatch.setattr(pretrain, "get_method", toy.with_toy_method())
    fields = {"total_steps": 4, "ckpt.every_steps": 2, "ckpt.keep": 1, "ckpt.async_save": True}
    config = tiny_pretrain_config(**fields)
    workdir = str(tmp_path / "w")
    pretrain.run(config, workdir, should_stop=lambda step: step == 2)
    step2 = os.path.join(workdir, "checkpoints", "2")
    files_before = checkpoint_files(step2)
    state_before, data_before = restore_raw(workdir, 2)

    marker, log = str(tmp_path / "saving"), tmp_path / "subprocess.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", KILLED_MID_SAVE, workdir, marker, "4", json.dumps(fields)],
            cwd=REPO_ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 120
        while not os.path.exists(marker) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert os.path.exists(marker), (
            f"the subprocess never reached the save of step 4 (exit {proc.poll()}):\n"
            + log.read_text()[-3000:]
        )
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    with open(marker) as f:
        partial_item = f.read()
    # The kill landed mid-save: step 4's items are on disk but not committed.
    assert os.path.isdir(partial_item), partial_item
    assert ".orbax-checkpoint-tmp" in partial_item and os.sep + "4." in partial_item
    assert not os.path.exists(os.path.join(workdir, "checkpoints", "4"))

    assert checkpoint.resolve_step(workdir) == 2, "the partial save is reported as a step"
    reader = checkpoint.Checkpointer(workdir, read_only=True)
    assert reader.latest_step() == 2
    reader.close()
    assert checkpoint_files(step2) == files_before
    state_after, data_after = restore_raw(workdir, 2)
    assert trees_equal(state_after, state_before) and data_after == data_before

    resumed = pretrain.run(config, workdir)
    assert (resumed["start_step"], resumed["final_step"]) == (2, 4)
    # keep=1: only step 4 is left; the partial save's temporary directory was replaced.
    assert os.listdir(os.path.join(workdir, "checkpoints")) == ["4"]
    reference = str(tmp_path / "reference")
    pretrain.run(config, reference)
    assert trees_equal(restore_raw(workdir, 4)[0], restore_raw(reference, 4)[0])
    np.testing.assert_allclose(
        [losses(workdir)[s] for s in (1, 2, 3, 4)],
        [losses(reference)[s] for s in (1, 2, 3, 4)],
        rtol=1e-6,
    )


def test_frozen_inputs_are_reloaded_at_every_start_and_never_checkpointed(tmp_path, monkeypatch):
    """A method's frozen input (the toy's ``anchor``, standing in for a teacher's export) is
    loaded from its source when a run starts and when it resumes, reaches the loss, and is not
    part of the saved state: changing the source between stop and resume changes the resumed
    trajectory exactly as a run started with the new source would continue."""
    source = str(tmp_path / "anchor.npy")
    monkeypatch.setattr(pretrain, "get_method", toy.with_toy_method(frozen_source=source))
    config = tiny_pretrain_config(**{"total_steps": 4, "ckpt.every_steps": 1})
    toy.LOADS.clear()
    np.save(source, np.array([7.0, 8.0, 9.0, 10.0]))
    workdir = str(tmp_path / "w")
    pretrain.run(config, workdir, should_stop=lambda step: step == 2)
    state, _ = restore_raw(workdir, 2)
    assert not any(np.array_equal(x, [7.0, 8.0, 9.0, 10.0]) for x in jax.tree.leaves(state))
    np.save(source, np.array([-1.0, -2.0, -3.0, -4.0]))
    pretrain.run(config, workdir)
    assert toy.LOADS == [source, source]
    # Reference: steps 1-2 with the first anchor, then 3-4 with the second.
    reference = str(tmp_path / "ref")
    np.save(source, np.array([7.0, 8.0, 9.0, 10.0]))
    pretrain.run(config, reference, should_stop=lambda step: step == 2)
    np.save(source, np.array([-1.0, -2.0, -3.0, -4.0]))
    pretrain.run(config, reference)
    assert losses(workdir) == losses(reference)
    # And the anchor reached the loss: without it the trajectory differs.
    monkeypatch.setattr(pretrain, "get_method", toy.with_toy_method())
    plain = str(tmp_path / "plain")
    pretrain.run(config, plain)
    assert losses(plain)[1] != losses(workdir)[1]


def test_a_method_diagnosis_is_logged_once_and_kept_in_results(tmp_path, monkeypatch, caplog):
    seen = []

    def get_method(config, **kwargs):
        def diagnose(row):
            seen.append(row["step"])
            return "the loss looks odd" if row["step"] >= 2 else None

        return toy.toy_method()._replace(diagnose=diagnose)

    monkeypatch.setattr(pretrain, "get_method", get_method)
    workdir = str(tmp_path / "w")
    with caplog.at_level("WARNING", logger=loop.__name__):
        results = pretrain.run(tiny_pretrain_config(**{"total_steps": 4}), workdir)
    assert seen == [1, 2]  # every logged row until the first warning, then no more
    assert results["warnings"] == ["step 2: the loss looks odd"]
    with open(os.path.join(workdir, "results.json")) as f:
        assert json.load(f)["warnings"] == results["warnings"]
    assert [r.getMessage() for r in caplog.records] == ["Step 2: the loss looks odd"]


def test_bad_data_fails_at_start_with_the_path(tmp_path):
    missing = str(tmp_path / "no_such_folder")
    config = tiny_pretrain_config(**{"data.name": "npz", "data.path": missing})
    with pytest.raises(DataError, match="no_such_folder"):
        pretrain.run(config, str(tmp_path / "w"))


def test_bad_config_values_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="does not split over 8 devices"):
        pretrain.run(tiny_pretrain_config(**{"data.batch_size": 12}), str(tmp_path / "a"))
    with pytest.raises(ValueError, match="method.name='simclrr'.*simclr"):
        pretrain.run(tiny_pretrain_config(**{"method.name": "simclrr"}), str(tmp_path / "b"))
    with pytest.raises(AttributeError):
        tiny_pretrain_config().data.batchsize = 3  # locked: a typo cannot add a field


def test_probe_without_pretrained_dir_says_what_to_pass(tmp_path):
    with pytest.raises(ValueError, match="config.pretrained"):
        linear_probe.run(tiny_probe_config(""), str(tmp_path))
    with pytest.raises(checkpoint.CheckpointError, match="No checkpoint"):
        linear_probe.run(tiny_probe_config(str(tmp_path)), str(tmp_path / "p"))


def test_the_start_line_names_the_data(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(pretrain, "get_method", toy.with_toy_method())
    with caplog.at_level("INFO", logger=pretrain.__name__):
        pretrain.run(tiny_pretrain_config(**{"total_steps": 1}), str(tmp_path / "w"))
    (line,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("data: ")]
    assert line.startswith("data: digits/train, 1437 images of 8x8x3, 10 classes; started"), line


def test_a_knn_monitor_k_beyond_the_train_split_fails_at_start(tmp_path):
    config = tiny_pretrain_config(**{"evals.knn.every_steps": 2, "evals.knn.k": (5, 2000)})
    with pytest.raises(ValueError, match=r"evals.knn: k=\(5, 2000\): kNN needs 1 <= k <= 1437"):
        pretrain.run(config, str(tmp_path / "w"))
    assert not os.path.exists(tmp_path / "w" / "metrics.jsonl")


def test_a_resume_with_changed_hyperparameters_says_which(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(pretrain, "get_method", toy.with_toy_method())
    workdir = str(tmp_path / "w")
    first = pretrain.run(tiny_pretrain_config(), workdir, should_stop=lambda step: step == 2)
    assert "changed_on_resume" not in first
    changed = tiny_pretrain_config(**{"total_steps": 6, "optim.base_learning_rate": 3e-4})
    with caplog.at_level("WARNING", logger=pretrain.__name__):
        results = pretrain.run(changed, workdir, should_stop=lambda step: step == 4)
    assert results["changed_on_resume"] == {
        "optim.base_learning_rate": [1e-3, 3e-4],
        "total_steps": [4, 6],
    }
    assert "2 config field(s) changed" in caplog.text and "total_steps 4 -> 6" in caplog.text
    with open(os.path.join(workdir, "results.json")) as f:
        assert json.load(f)["changed_on_resume"] == results["changed_on_resume"]
    assert "changed_on_resume" not in pretrain.run(changed, workdir)  # as the step-4 one
