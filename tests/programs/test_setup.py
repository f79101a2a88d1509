"""The setup every training program shares (the end-to-end runs are in test_pretrain.py and
test_finetune.py; these check its decisions without compiling a step)."""

import types

import ml_collections
import numpy as np
import pytest

from ssl_jax.checkpoint import CheckpointError
from ssl_jax.data import ArraySource
from ssl_jax.programs.setup import make_batch_iterator, make_training_mesh, restore_or_start


class FakeCheckpointer:
    def __init__(self, latest, saved=None):
        self.latest, self.saved = latest, saved

    def latest_step(self):
        return self.latest

    def restore(self, step, abstract):
        assert step == self.latest
        return self.saved


def iterator():
    source = ArraySource(np.zeros((32, 2, 2, 3), np.uint8), np.arange(32) % 4)
    return make_batch_iterator(source, batch_size=8, seed=0)


def state_at(step):
    return types.SimpleNamespace(step=step)


def never_start():
    raise AssertionError("the workdir's checkpoint comes first")


def test_the_workdirs_checkpoint_comes_before_the_programs_start():
    it = iterator()
    ckpt = FakeCheckpointer(5, (state_at(5), it.get_state(5)))
    state, step, origin = restore_or_start(ckpt, "WORKDIR", None, it, never_start)
    assert step == 5 and state.step == 5 and origin == "resumed from WORKDIR at step 5"
    start = lambda: (state_at(0), {"step": 0}, "started from scratch")
    assert restore_or_start(FakeCheckpointer(None), "WORKDIR", None, it, start)[1:] == (
        0,
        "started from scratch",
    )


@pytest.mark.parametrize("latest", [5, None])
def test_a_data_position_other_than_the_step_is_an_error(latest):
    it = iterator()
    saved = (state_at(5), it.get_state(4))  # the data of step 4 with the state of step 5
    start = lambda: saved + ("resumed from another run",)
    with pytest.raises(CheckpointError, match="data position .* does not match step 5"):
        restore_or_start(FakeCheckpointer(latest, saved), "WORKDIR", None, it, start)


def test_the_mesh_checks_every_batch_size_the_program_splits():
    config = ml_collections.ConfigDict({"mesh": {"num_devices": 8}})
    assert make_training_mesh(config, 16, 8).size == 8
    with pytest.raises(ValueError, match="data.batch_size=12 does not split over 8 devices"):
        make_training_mesh(config, 16, 12)
