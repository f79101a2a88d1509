"""Whether a recipe fits a TPU slice, before it runs: ``run(config, workdir, topology=...)``.

The pretraining program's own train step (:func:`ssl_jax.programs.pretrain.build_step`: the
method, its online linear probe, the optimizer and schedule) is compiled ahead of time for the
devices of a topology: abstract TPU devices from libtpu (no TPU needed, as MaxText's
``train_compile.py`` does it) or this machine's (``"local"``). Nothing is allocated and no data
is read: the state is ``jax.eval_shape`` of the init function, laid out as the run lays it out
(replicated, or split over the devices with ``mesh.fsdp``), and
the global batch is ``jax.ShapeDtypeStruct``s sharded over the ``data`` axis (uint8 images
``(B, H, W, 3)``, int32 labels ``(B,)``, as :class:`~ssl_jax.data.BatchIterator` makes them).

From the compiled program, per chip (the SPMD-partitioned module is one device's program):

- memory (``memory_analysis()``): arguments, outputs, temporaries, aliases (donated state),
  generated code; peak = arguments + outputs + temporaries - aliases (MaxText's total);
  ``fits`` when the compile succeeds and the peak is at most the chip's HBM. XLA:TPU refuses a
  program that cannot fit (RESOURCE_EXHAUSTED): that is a "does not fit" result too, with the
  sizes its message names.
- cost (``cost_analysis()``): FLOPs and bytes accessed of one step on one device (with
  ``optim.accumulation_steps`` = k the micro-batch loop, which XLA counts once, scaled by k).
- collectives in ``compiled.as_text()``: count and result bytes per kind.
- a lower bound on the step time, ``max(FLOPs / peak FLOP/s, bytes / HBM bandwidth)`` with the
  chip's public bf16 peak, and the images/s it allows: a projection from compiled counts, not
  a measurement (no input pipeline, no collective time, no stalls).

``workdir`` gets ``plan.json`` and ``plan.md``. A recipe that does not fit raises
:class:`DoesNotFit` (after writing them), whose message is one line with the sizes and what to
change.
"""

import copy
import dataclasses
import importlib.metadata
import json
import logging
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import ml_collections
from etils import epath

from ssl_jax.data.errors import DataError
from ssl_jax.data.shapes import SourceShape, describe_source
from ssl_jax.parallel import batch_sharded, make_mesh
from ssl_jax.paths import resolve
from ssl_jax.programs.chips import (
    ALIASES,
    GIB,
    PlanError,
    Target,
    collectives,
    get_target,
    parse_out_of_memory,
)
from ssl_jax.programs.pretrain import build_step
from ssl_jax.sharding import bytes_per_device

log = logging.getLogger(__name__)

__all__ = ["DoesNotFit", "PlanError", "compile_step", "largest_fitting", "run", "show"]

MAX_DOUBLINGS = 6  # --find_batch looks up to 64x the config's per-chip batch


class DoesNotFit(PlanError):
    """The recipe needs more memory per chip than the chip has; ``plan`` is the report."""

    def __init__(self, message: str, plan: dict):
        super().__init__(message)
        self.plan = plan


def run(
    config: ml_collections.ConfigDict,
    workdir: epath.PathLike,
    *,
    topology: str = "local",
    find_batch: bool = False,
    hbm_gib: float | None = None,
) -> dict:
    """Compile ``config``'s train step for ``topology`` (``chips.valid_names()``), write
    ``plan.json`` and ``plan.md`` under ``workdir`` and return the plan.

    ``find_batch`` also bisects, over multiples of the chip count, the largest global batch
    that fits. ``hbm_gib`` replaces the memory of one chip. Raises :class:`DoesNotFit` when the
    config's batch does not fit, :class:`PlanError` for a topology or setting that cannot be
    planned.
    """
    workdir = resolve(workdir)
    target = get_target(topology, hbm_gib=hbm_gib)
    try:
        mesh = make_mesh(config.mesh.num_devices, devices=target.devices)
        data = describe_source(config.data, "train")
    except (ValueError, DataError) as e:
        raise PlanError(str(e)) from None
    chips = mesh.size
    batch = config.data.batch_size
    if batch % chips:
        raise PlanError(
            f"data.batch_size={batch} does not split over the {chips} chips of {topology}; "
            f"use a multiple of {chips}."
        )
    log.info("compiling the train step for %s (%d chips), global batch %d", topology, chips, batch)
    step = compile_step(config, mesh, batch, data, target)
    plan = _report(config, target, chips, data, step)
    if find_batch:
        plan["find_batch"] = search_batch(config, mesh, data, target, step)
    plan["message"] = _message(config, plan)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "plan.json").write_text(json.dumps(plan, indent=2) + "\n")
    (workdir / "plan.md").write_text(markdown(plan))
    if not plan["fits"]:
        raise DoesNotFit(plan["message"], plan)
    return plan


def compile_step(
    config: ml_collections.ConfigDict, mesh, batch_size: int, data: SourceShape, target: Target
) -> dict:
    """Compile the train step of ``config`` at global batch ``batch_size`` over ``mesh``;
    returns its per-chip memory, cost and collectives (or the out-of-memory report)."""
    config = copy.deepcopy(config)
    config.data.batch_size = batch_size
    steps_per_epoch = max(1, data.num_examples // batch_size)
    built = build_step(config, mesh, steps_per_epoch, num_classes=data.num_classes)
    if built.method.load_frozen is not None:
        raise PlanError(
            f"method {built.method.name!r} reads frozen inputs (a teacher) from disk; plan "
            "does not compile methods with frozen inputs yet."
        )
    state = jax.eval_shape(built.init_fn, config.seed)
    sharding = batch_sharded(mesh)
    batch = {
        "images": jax.ShapeDtypeStruct(
            (batch_size, *data.image_shape), jnp.uint8, sharding=sharding
        ),
        "labels": jax.ShapeDtypeStruct((batch_size,), jnp.int32, sharding=sharding),
    }
    state_bytes = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(state))
    per_chip = bytes_per_device(state, jax.tree.map(lambda x: x.sharding, state))
    batch_bytes = sum(x.size * x.dtype.itemsize for x in batch.values()) / mesh.size
    result = {
        "global_batch": batch_size,
        "per_chip_batch": batch_size // mesh.size,
        "state_bytes": state_bytes,
        "state_bytes_per_chip": per_chip,
        "fsdp": bool(config.mesh.get("fsdp", False)),
    }
    start = time.perf_counter()
    lowered = built.train_step.lower(state, batch)
    result["lower_s"] = round(time.perf_counter() - start, 2)
    start = time.perf_counter()
    try:
        compiled = lowered.compile()
    except Exception as e:  # noqa: BLE001 (XLA raises JaxRuntimeError; only OOM is handled)
        parsed = parse_out_of_memory(str(e))
        if parsed is None and "RESOURCE_EXHAUSTED" not in str(e):
            raise
        result["compile_s"] = round(time.perf_counter() - start, 2)
        return {**result, **_out_of_memory(str(e), parsed, per_chip + batch_bytes, target)}
    result["compile_s"] = round(time.perf_counter() - start, 2)
    memory = memory_bytes(compiled.memory_analysis())
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list | tuple) else cost
    # XLA's cost analysis counts a loop's body once: the micro-batch loop of gradient
    # accumulation runs it ``steps`` times, so the counts are scaled by ``steps`` (which also
    # counts the once-per-step optimizer update ``steps`` times: approximate, not a bound).
    steps = int(config.optim.get("accumulation_steps", 1))
    return {
        **result,
        "compiled": True,
        "memory": memory,
        "peak_bytes": memory["peak"],
        "peak_estimated": False,
        "fits": memory["peak"] <= target.hbm_bytes,
        "flops": steps * float(cost.get("flops", 0.0)),
        "bytes_accessed": steps * float(cost.get("bytes accessed", 0.0)),
        "cost_scaled_by": steps,
        "collectives": collectives(compiled.as_text()),
    }


def memory_bytes(stats) -> dict:
    """Per-device bytes of ``compiled.memory_analysis()`` and their peak, MaxText's
    ``arguments + outputs + temporaries - aliases``."""
    memory = {
        "arguments": stats.argument_size_in_bytes,
        "outputs": stats.output_size_in_bytes,
        "temporaries": stats.temp_size_in_bytes,
        "aliases": stats.alias_size_in_bytes,
        "generated_code": stats.generated_code_size_in_bytes,
    }
    memory["peak"] = (
        memory["arguments"] + memory["outputs"] + memory["temporaries"] - memory["aliases"]
    )
    compiler_peak = getattr(stats, "peak_memory_in_bytes", 0)
    if compiler_peak:
        memory["compiler_peak"] = compiler_peak  # XLA's own figure, from buffer lifetimes
    return memory


def _out_of_memory(message: str, parsed, input_bytes: float, target: Target) -> dict:
    """The report of a compile XLA refused for memory. When its message counts temporaries
    only, the peak adds the arguments (state and batch shard), estimated from their shapes."""
    result = {
        "compiled": False,
        "fits": False,
        "out_of_memory": " ".join(message.split())[:600],
        "memory": None,
        "peak_bytes": None,
        "peak_estimated": True,
        "flops": None,
        "bytes_accessed": None,
        "collectives": None,
    }
    if parsed is not None:
        needed, available, counts = parsed
        result["peak_bytes"] = needed + input_bytes if counts == "temporaries" else needed
        result["compiler_hbm_bytes"] = available
    return result


def largest_fitting(fits: Callable[[int], bool], start: int) -> tuple[int | None, bool]:
    """``(largest n >= 1 with fits(n), at_least)`` for a ``fits`` that is true up to some n:
    doubling (or halving) from ``start`` until the answer changes, then bisecting.
    ``at_least`` when ``start * 2**MAX_DOUBLINGS`` still fits (the search stops there); None
    when even 1 does not fit."""
    if fits(start):
        good, bad = start, None
        for _ in range(MAX_DOUBLINGS):
            if not fits(good * 2):
                bad = good * 2
                break
            good *= 2
        if bad is None:
            return good, True
    else:
        good, bad = None, start
        while bad > 1 and good is None:
            if fits(bad // 2):
                good = bad // 2
            else:
                bad //= 2
        if good is None:
            return None, False
    while bad - good > 1:
        middle = (good + bad) // 2
        good, bad = (middle, bad) if fits(middle) else (good, middle)
    return good, False


def search_batch(config, mesh, data, target, first: dict) -> dict:
    """:func:`largest_fitting` over per-chip batches, one compile a probe (``first`` is the
    config's own): the largest global batch, a multiple of the chip count, that fits."""
    chips = mesh.size
    probes = {first["per_chip_batch"]: first}

    def fits(per_chip: int) -> bool:
        if per_chip not in probes:
            log.info("find_batch: compiling global batch %d", per_chip * chips)
            probes[per_chip] = compile_step(config, mesh, per_chip * chips, data, target)
        return probes[per_chip]["fits"]

    largest, at_least = largest_fitting(fits, first["per_chip_batch"])
    return {
        "largest_global_batch": None if largest is None else largest * chips,
        "largest_per_chip_batch": largest,
        "at_least": at_least,
        "probes": [
            {
                "global_batch": p["global_batch"],
                "per_chip_batch": k,
                "fits": p["fits"],
                "peak_bytes": p["peak_bytes"],
                "compile_s": p["compile_s"],
            }
            for k, p in sorted(probes.items())
        ],
    }


def _report(config, target: Target, chips: int, data: SourceShape, step: dict) -> dict:
    plan = {
        "recipe": f"{config.method.name} {config.model.backbone}",
        "topology": target.name,
        "libtpu_topology": target.topology,
        "chip": target.chip.name,
        "chips": chips,
        "global_batch": step["global_batch"],
        "per_chip_batch": step["per_chip_batch"],
        "hbm_bytes": target.hbm_bytes,
        "hbm_source": target.hbm_source,
        "peak_flops_per_chip": target.peak_flops,
        "hbm_bandwidth_per_chip": target.hbm_bandwidth,
        "chip_spec": target.chip.spec,
        "fits": step["fits"],
        **{k: v for k, v in step.items() if k not in ("global_batch", "per_chip_batch", "fits")},
        "cost_scope": "per chip: cost_analysis() of the SPMD-partitioned (one-device) module",
        "data": {
            **dataclasses.asdict(data),
            "image_shape": list(data.image_shape),
            "used_for": "batch shapes and the schedule length",
        },
        "versions": _versions(),
    }
    if step["flops"] is not None:
        compute_s = step["flops"] / target.peak_flops
        memory_s = step["bytes_accessed"] / target.hbm_bandwidth
        bound = max(compute_s, memory_s)
        note = "a lower bound from compiled FLOPs and bytes at peak rates, not a measurement"
        if step.get("cost_scaled_by", 1) > 1:
            note = (
                f"approximate (the micro-batch loop's counts x {step['cost_scaled_by']}, the "
                "optimizer update counted as often) from compiled FLOPs and bytes at peak "
                "rates, not a measurement"
            )
        plan["bound"] = {
            "note": note,
            "compute_s": compute_s,
            "memory_s": memory_s,
            "step_time_lower_bound_s": bound,
            "bound_by": "compute" if compute_s >= memory_s else "memory",
            "images_per_s_upper_bound": step["global_batch"] / bound if bound > 0 else None,
        }
    else:
        plan["bound"] = None
    return plan


def _versions() -> dict:
    versions = {"jax": jax.__version__}
    try:
        versions["libtpu"] = importlib.metadata.version("libtpu")
    except importlib.metadata.PackageNotFoundError:
        pass
    return versions


def _gib(x) -> str:
    if x is None:
        return "?"
    return f"{x / GIB:.2f}" if x >= GIB / 10 else f"{x / GIB:.3g}"


def _message(config, plan: dict) -> str:
    where = (
        f"{plan['recipe']} at global batch {plan['global_batch']} "
        f"({plan['per_chip_batch']} per chip) on {plan['topology']} ({_chips(plan['chips'])})"
    )
    needed, available = _gib(plan["peak_bytes"]), _gib(plan["hbm_bytes"])
    if plan["fits"]:
        bound = plan["bound"]
        return (
            f"fits: {where} needs {needed} GiB per chip of {available} GiB; step time >= "
            f"{bound['step_time_lower_bound_s'] * 1e3:.1f} ms (bound, not a measurement)."
        )
    fixes = []
    bigger = _bigger_slice(plan)
    fixes.append(f"more chips (e.g. {bigger})" if bigger else "more chips")
    found = plan.get("find_batch")
    if found and found["largest_per_chip_batch"]:
        largest = found["largest_per_chip_batch"]
        fixes.append(
            f"a per-chip batch of at most {largest} "
            f"(--config.data.batch_size={found['largest_global_batch']})"
        )
    elif not found:
        fixes.append("a smaller per-chip batch (--find_batch finds the largest that fits)")
    model = config.model
    if "dtype" in model and model.dtype != "bfloat16":
        fixes.append("--config.model.dtype=bfloat16")
    if "remat" in model and not model.remat:
        fixes.append("--config.model.remat=True")
    if "fsdp" in config.mesh and not config.mesh.fsdp:
        fixes.append("--config.mesh.fsdp=True")
    estimated = " (estimated)" if plan["peak_estimated"] else ""
    return (
        f"does not fit: {where} needs {needed} GiB per chip{estimated}, {available} GiB "
        f"available; try {'; '.join(fixes)}."
    )


def _chips(n: int) -> str:
    return f"{n} chip" if n == 1 else f"{n} chips"


def _bigger_slice(plan: dict) -> str | None:
    """The next standard slice of the plan's chip with more chips, by its alias."""
    chip = plan["chip"]
    sizes = [a for a, t in ALIASES.items() if a.startswith(f"{chip}-")]
    current = next((a for a, t in ALIASES.items() if t == plan["libtpu_topology"]), None)
    if current in sizes and sizes.index(current) + 1 < len(sizes):
        return sizes[sizes.index(current) + 1]
    return None


ROWS = (
    ("topology", lambda p: f"{p['topology']} ({p['libtpu_topology']}, {p['chip']})"),
    ("chips", lambda p: str(p["chips"])),
    ("global batch / per chip", lambda p: f"{p['global_batch']} / {p['per_chip_batch']}"),
    (
        "state GiB per chip",
        lambda p: f"{_gib(p['state_bytes_per_chip'])} ({'fsdp' if p['fsdp'] else 'replicated'})",
    ),
    ("arguments GiB", lambda p: _gib((p["memory"] or {}).get("arguments"))),
    ("outputs GiB", lambda p: _gib((p["memory"] or {}).get("outputs"))),
    ("temporaries GiB", lambda p: _gib((p["memory"] or {}).get("temporaries"))),
    ("aliases GiB", lambda p: _gib((p["memory"] or {}).get("aliases"))),
    ("generated code GiB", lambda p: _gib((p["memory"] or {}).get("generated_code"))),
    (
        "peak GiB per chip",
        lambda p: _gib(p["peak_bytes"]) + (" (estimated)" if p["peak_estimated"] else ""),
    ),
    ("HBM GiB per chip", lambda p: f"{_gib(p['hbm_bytes'])} ({p['hbm_source']})"),
    ("fits", lambda p: str(p["fits"]).lower()),
    ("GFLOP per step per chip", lambda p: _num(p["flops"], 1e9)),
    ("GB accessed per step per chip", lambda p: _num(p["bytes_accessed"], 1e9)),
    ("collectives", lambda p: _collectives(p["collectives"])),
    (
        "step time bound (lower)",
        lambda p: (
            "?"
            if not p["bound"]
            else f"{p['bound']['step_time_lower_bound_s'] * 1e3:.2f} ms ({p['bound']['bound_by']})"
        ),
    ),
    (
        "images/s bound (upper)",
        lambda p: (
            "?"
            if not p["bound"] or not p["bound"]["images_per_s_upper_bound"]
            else f"{p['bound']['images_per_s_upper_bound']:.0f}"
        ),
    ),
    ("compile s", lambda p: f"{p['compile_s']:.1f}"),
)


def _num(x, scale) -> str:
    return "?" if x is None else f"{x / scale:.2f}"


def _collectives(found) -> str:
    if found is None:
        return "?"
    if not found:
        return "none"
    return ", ".join(
        f"{op} x{v['count']} ({v['bytes'] / 2**20:.1f} MiB)" for op, v in sorted(found.items())
    )


def show(plan: dict) -> str:
    """The console table of a plan."""
    width = max(len(name) for name, _ in ROWS)
    lines = [f"{name:<{width}}  {value(plan)}" for name, value in ROWS]
    found = plan.get("find_batch")
    if found:
        largest = found["largest_global_batch"]
        more = " or more" if found["at_least"] else ""
        lines.append(f"{'largest batch that fits':<{width}}  {largest}{more}")
    lines.append(plan["message"])
    return "\n".join(lines)


def markdown(plan: dict) -> str:
    """``plan.md``: the table, the message and what the numbers are."""
    rows = "\n".join(f"| {name} | {value(plan)} |" for name, value in ROWS)
    found = plan.get("find_batch")
    if found:
        more = " or more" if found["at_least"] else ""
        rows += f"\n| largest batch that fits | {found['largest_global_batch']}{more} |"
    return (
        f"# Plan: {plan['recipe']} on {plan['topology']}\n\n"
        f"{plan['message']}\n\n| | |\n|---|---|\n{rows}\n\n"
        "Bytes, FLOPs and collectives are per chip, read from the compiled program "
        "(memory_analysis, cost_analysis, as_text). Peak = arguments + outputs + temporaries "
        "- aliases. The step time is a lower bound, max(FLOPs / peak FLOP/s, bytes / HBM "
        f"bandwidth) at the chip's public peak ({plan['chip_spec']}), and the images/s an "
        "upper bound: projections, not measurements. Data: "
        f"{plan['data']['name']}, {plan['data']['note']}.\n"
    )
