"""launch/plan.py and ssl_jax.programs.plan: the real train step compiled ahead of time."""

import importlib.util
import json
import os
import subprocess
import sys

import jax
import pytest

from ssl_jax.programs import chips, plan
from tests.programs.test_launch import REPO
from tests.programs.tiny import tiny_pretrain_config

TINY = [
    "--config.data.image_size=8",
    "--config.augment.crop_size=8",
    "--config.data.batch_size=16",
    "--config.model.width=4",
]
FIELDS = (
    "topology",
    "chips",
    "global_batch",
    "per_chip_batch",
    "memory",
    "peak_bytes",
    "hbm_bytes",
    "fits",
    "flops",
    "bytes_accessed",
    "collectives",
    "bound",
    "compile_s",
    "data",
    "message",
)


def launch_plan(workdir, *args):
    """launch/plan.py on 2 fake CPU devices (a fresh process: the suite's 8 are in this one)."""
    return subprocess.run(
        [
            sys.executable,
            "launch/plan.py",
            "--config=configs/simclr_digits.py:runlocal",
            f"--workdir={workdir}",
            "--cpu_devices=2",
            *TINY,
            *args,
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "XLA_FLAGS": "", "JAX_PLATFORMS": "cpu"},
    )


def test_local_plan_of_the_real_step(tmp_path):
    config = tiny_pretrain_config(**{"data.batch_size": 16})
    result = plan.run(config, tmp_path, topology="local")
    assert json.loads((tmp_path / "plan.json").read_text()) == result
    assert "step time" in (tmp_path / "plan.md").read_text()
    assert all(field in result for field in FIELDS)
    assert result["chips"] == len(jax.devices()) == 8 and result["per_chip_batch"] == 2
    assert result["fits"] is True and result["message"].startswith("fits:")
    memory = result["memory"]
    assert memory["peak"] == (
        memory["arguments"] + memory["outputs"] + memory["temporaries"] - memory["aliases"]
    )
    # The state is donated: its buffers alias the new state's; the arguments hold it whole.
    assert memory["aliases"] >= result["state_bytes"] > 0
    assert memory["arguments"] >= result["state_bytes"]
    assert 0 < result["peak_bytes"] <= result["hbm_bytes"]
    bound = result["bound"]
    assert bound["step_time_lower_bound_s"] > 0
    assert bound["step_time_lower_bound_s"] == max(bound["compute_s"], bound["memory_s"])
    assert bound["images_per_s_upper_bound"] == pytest.approx(16 / bound["step_time_lower_bound_s"])
    # Gradients of a global-batch mean are summed over the 8 devices.
    assert result["collectives"]["all-reduce"]["count"] > 0
    assert result["collectives"]["all-reduce"]["bytes"] > 0

    one = plan.run(tiny_pretrain_config(**{"mesh.num_devices": 1}), tmp_path / "one")
    assert one["chips"] == 1 and one["per_chip_batch"] == 16
    assert one["collectives"] == {}  # one device: nothing to communicate
    # Cost is per chip: 8 chips at the same global batch each do much less than one chip.
    assert result["flops"] < one["flops"] / 3
    assert result["state_bytes_per_chip"] == result["state_bytes"] and not result["fsdp"]

    fields = {"data.batch_size": 16, "mesh.fsdp": True, "mesh.fsdp_min_size": 0}
    split = plan.run(tiny_pretrain_config(**fields), tmp_path / "fsdp")
    assert split["fsdp"] and split["state_bytes"] == result["state_bytes"]
    # The state split over 8 chips: each holds under a quarter of it (the tiny model's small
    # arrays stay whole), and passes its shard in and out of the step.
    assert split["state_bytes_per_chip"] < result["state_bytes"] / 4
    assert split["memory"]["arguments"] < memory["arguments"] - result["state_bytes"] / 2
    assert "all-gather" in split["collectives"]  # parameters gathered where they are used
    assert "state GiB per chip" in (tmp_path / "fsdp" / "plan.md").read_text()


def test_launch_prints_the_table_and_writes_the_plan(tmp_path):
    proc = launch_plan(tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    written = json.loads((tmp_path / "plan.json").read_text())
    assert written["fits"] is True and written["chips"] == 2 and written["global_batch"] == 16
    assert written["collectives"]["all-reduce"]["count"] > 0
    for row in ("peak GiB per chip", "HBM GiB per chip", "step time bound (lower)"):
        assert row in proc.stdout
    assert proc.stdout.strip().splitlines()[-1] == written["message"]


def test_does_not_fit_exits_with_one_line(tmp_path):
    proc = launch_plan(tmp_path, "--hbm_gib=0.0001")
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("plan: does not fit:")
    assert "GiB per chip" in last and "0.0001 GiB available" in last
    assert "more chips" in last and "--find_batch" in last and "model.dtype=bfloat16" in last
    written = json.loads((tmp_path / "plan.json").read_text())
    assert written["fits"] is False and written["peak_bytes"] > 0.0001 * 2**30
    assert "Traceback" not in proc.stderr


@pytest.mark.slow  # ~8 real compiles; the search itself: test_largest_fitting
def test_find_batch_bisects_to_the_largest_fitting_batch(tmp_path):
    config = tiny_pretrain_config(**{"data.batch_size": 16, "mesh.num_devices": 1})
    small = plan.run(config, tmp_path / "small")
    peak_16 = small["peak_bytes"]
    hbm_gib = 1.5 * peak_16 / 2**30  # memory grows with the batch: 16 fits, 64 does not
    found = plan.run(config, tmp_path, hbm_gib=hbm_gib, find_batch=True)["find_batch"]
    largest = found["largest_global_batch"]
    probes = {p["global_batch"]: p for p in found["probes"]}
    assert probes[largest]["fits"] and not probes[largest + 1]["fits"]
    assert largest >= 16 and not found["at_least"]
    assert all(p["fits"] == (p["global_batch"] <= largest) for p in found["probes"])


def test_not_fitting_names_the_largest_batch(tmp_path):
    # batch 2: the search halves down to 1 image in two compiles
    config = tiny_pretrain_config(**{"data.batch_size": 2, "mesh.num_devices": 1})
    with pytest.raises(plan.DoesNotFit) as e:
        plan.run(config, tmp_path, hbm_gib=1e-6, find_batch=True)
    assert e.value.plan["find_batch"]["largest_global_batch"] is None  # not even 1 image
    assert len(str(e.value).splitlines()) == 1


@pytest.mark.parametrize(
    ("start", "limit", "expected"),
    [(8, 100, (100, False)), (8, 5, (5, False)), (8, 0, (None, False)), (1, 1000, (64, True))],
)
def test_largest_fitting(start, limit, expected):
    asked = []

    def fits(n):
        asked.append(n)
        return n <= limit

    assert plan.largest_fitting(fits, start) == expected
    assert len(asked) <= 2 * plan.MAX_DOUBLINGS + 2  # a search, not a scan


def test_unknown_topology_lists_the_valid_names():
    with pytest.raises(chips.PlanError, match=r"Unknown topology 'v5x-16'.*v5e:4x8.*v5e-16.*v4-8"):
        chips.get_target("v5x-16")
    assert chips.ALIASES["v5p-8"] == "v5p:2x2x1" and chips.ALIASES["v4-8"] == "v4:2x2x1"
    assert chips.ALIASES["v5e-32"] == "v5e:4x8"


def test_unknown_topology_from_the_command_line(tmp_path):
    proc = launch_plan(tmp_path, "--topology=v5e_16")
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("plan: Unknown topology 'v5e_16'") and "v5e-16" in last


@pytest.mark.skipif(importlib.util.find_spec("libtpu") is not None, reason="libtpu is installed")
def test_missing_libtpu_says_what_to_install():
    with pytest.raises(chips.PlanError, match=r"pip install -e \.\[tpu\]$"):
        chips.get_target("v5e-16")


def test_libtpu_held_by_another_process_says_so(monkeypatch):
    """libtpu allows one process at a time: a second plan is told what holds it and the way
    around, not that its topology was rejected."""
    from jax.experimental import topologies

    def locked(**_):
        raise RuntimeError("ABORTED: Internal error when accessing libtpu multi-process lockfile")

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: object())
    monkeypatch.setattr(topologies, "get_topology_desc", locked)
    with pytest.raises(chips.PlanError, match=r"in use by another process.*ALLOW_MULTIPLE"):
        chips.get_target("v5e-16")


def test_out_of_memory_messages():
    temporaries = (
        "RESOURCE_EXHAUSTED: Ran out of memory on HBM, the total memory required for HLO "
        "temporaries (15.88G) exceeds available HBM (15.75G)."
    )
    assert chips.parse_out_of_memory(temporaries) == (15.88 * 2**30, 15.75 * 2**30, "temporaries")
    total = "RESOURCE_EXHAUSTED: Ran out of memory in memory space hbm. Used 17.50G of 15.75G hbm."
    assert chips.parse_out_of_memory(total) == (17.5 * 2**30, 15.75 * 2**30, "total")
    assert chips.parse_out_of_memory("INVALID_ARGUMENT: something else") is None


def test_collectives_from_hlo_text():
    hlo = """
  %all-reduce = f32[512,512]{1,0} all-reduce(%dot.1), channel_id=1, to_apply=%add
  %ar.2 = (f32[10]{0}, bf16[4,4]{1,0}) all-reduce(%a, %b), channel_id=2, to_apply=%add
  %cp-start = (f32[8]{0}, f32[8]{0}, u32[], u32[]) collective-permute-start(%x)
  %cp-done = f32[8]{0:T(256)} collective-permute-done(%cp-start)
  ROOT %ag = bf16[2,3]{1,0:T(2,128)(2,1)S(1)} all-gather(%y), dimensions={0}
  %fusion = f32[4]{0} fusion(%all-reduce), kind=kLoop, calls=%fused
"""
    assert chips.collectives(hlo) == {
        "all-reduce": {"count": 2, "bytes": 512 * 512 * 4 + 10 * 4 + 16 * 2},
        "collective-permute": {"count": 1, "bytes": 32},
        "all-gather": {"count": 1, "bytes": 12},
    }


@pytest.mark.slow
def test_tpu_topology_compile(tmp_path):
    """One small compile for 4 abstract v5e chips (needs libtpu, not a TPU)."""
    if importlib.util.find_spec("libtpu") is None:
        pytest.skip(
            "libtpu (jax[tpu]) is not importable in this interpreter: pip install -e .[tpu]"
        )
    config = tiny_pretrain_config(**{"data.batch_size": 32})
    result = plan.run(config, tmp_path, topology="v5e:2x2")
    assert result["chip"] == "v5e" and result["chips"] == 4 and result["fits"] is True
    assert result["hbm_source"].startswith("XLA:TPU compiler")
    assert 15 * 2**30 < result["hbm_bytes"] <= 16 * 2**30
    assert result["peak_flops_per_chip"] == 197e12
    assert result["collectives"]["all-reduce"]["count"] > 0
    assert result["bound"]["step_time_lower_bound_s"] > 0
    # cost_analysis() is per chip on TPU too: twice the chips, about half the FLOPs each.
    eight = plan.run(config, tmp_path / "eight", topology="v5e-8")
    assert eight["chips"] == 8
    assert eight["flops"] == pytest.approx(result["flops"] / 2, rel=0.2)
    # Far over HBM, XLA:TPU refuses the program: the same "does not fit" report.
    huge = tiny_pretrain_config(**{"data.batch_size": 4 * 2**17})
    with pytest.raises(plan.DoesNotFit, match="does not fit") as e:
        plan.run(huge, tmp_path / "huge", topology="v5e:2x2")
    report = e.value.plan
    assert report["compiled"] is False and "RESOURCE_EXHAUSTED" in report["out_of_memory"]
    assert report["peak_bytes"] > report["hbm_bytes"] and report["peak_estimated"]
