"""TPU chips, topology names and the compiled-program facts :mod:`ssl_jax.programs.plan` reads.

Chip figures are the public per-chip specifications: v5e
https://cloud.google.com/tpu/docs/v5e (197 bf16 TFLOP/s, 16 GB HBM2 at 819 GB/s), v5p
https://cloud.google.com/tpu/docs/v5p (459 TFLOP/s, 95 GB HBM2e at 2765 GB/s), v4
https://cloud.google.com/tpu/docs/v4 (275 TFLOP/s, 32 GiB HBM2 at 1200 GB/s), v6e
https://cloud.google.com/tpu/docs/v6e (918 TFLOP/s, 32 GB HBM at 1638 GB/s). The HBM a
program may use is smaller than the capacity; :func:`compiler_hbm_bytes` asks XLA:TPU for it
(15.75 GiB on v5e, 95.74 on v5p, 30.75 on v4, 31.25 on v6e with libtpu 0.0.42.1).

v4 and v5p chips hold two TensorCores run as one device ("megacore"): ``v5p-8`` and ``v4-8``
name 8 TensorCores, that is 4 chips and 4 JAX devices; a v5e or v6e chip is one TensorCore.
"""

import dataclasses
import importlib.util
import os
import re

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

GIB = 2**30


class PlanError(Exception):
    """A user's error (a topology name, a missing package): its message is one line that says
    what to change."""


@dataclasses.dataclass(frozen=True)
class Chip:
    """One chip's public specification: HBM bytes, peak bf16 FLOP/s, HBM bytes/s."""

    name: str
    hbm_bytes: float
    peak_flops: float
    hbm_bandwidth: float
    spec: str  # where the figures come from


CHIPS = {
    "v4": Chip("v4", 32 * GIB, 275e12, 1200e9, "https://cloud.google.com/tpu/docs/v4"),
    "v5e": Chip("v5e", 16 * GIB, 197e12, 819e9, "https://cloud.google.com/tpu/docs/v5e"),
    "v5p": Chip("v5p", 95 * GIB, 459e12, 2765e9, "https://cloud.google.com/tpu/docs/v5p"),
    "v6e": Chip("v6e", 32 * GIB, 918e12, 1638e9, "https://cloud.google.com/tpu/docs/v6e"),
}
# Nominal figures for this machine's CPU devices (--topology local), for a whole host: XLA's
# matmul rate measured on it (NOTES.md) and an assumed 20 GB/s of memory bandwidth. The bound
# they give is a smoke test, not a CPU model.
CPU_HOST = Chip("cpu", 0.0, 458e9, 20e9, "nominal (XLA CPU matmul rate; 20 GB/s assumed)")
DEVICE_KINDS = {"TPU v4": "v4", "TPU v5 lite": "v5e", "TPU v5": "v5p", "TPU v6 lite": "v6e"}
MEGACORE = ("v4", "v5p")

# Cloud accelerator-type names (TensorCores) -> libtpu topology names (chips).
_2D = {4: "2x2", 8: "2x4", 16: "4x4", 32: "4x8", 64: "8x8", 128: "8x16", 256: "16x16"}
_3D = {8: "2x2x1", 16: "2x2x2", 32: "2x2x4", 64: "2x4x4", 128: "4x4x4"}
ALIASES = {
    **{f"v5e-{n}": f"v5e:{s}" for n, s in _2D.items()},
    **{f"v6e-{n}": f"v6e:{s}" for n, s in _2D.items()},
    **{f"v5p-{n}": f"v5p:{s}" for n, s in _3D.items()},
    **{f"v4-{n}": f"v4:{s}" for n, s in _3D.items()},
}
_TOPOLOGY = re.compile(r"^(v4|v5e|v5p|v6e):(\d+x\d+(x\d+)?)$")


@dataclasses.dataclass
class Target:
    """The devices a plan compiles for and what one of them offers."""

    name: str  # as the user gave it
    topology: str  # the libtpu topology name, or "local"
    devices: list
    chip: Chip
    hbm_bytes: float  # what one device may use
    hbm_source: str
    peak_flops: float  # per device
    hbm_bandwidth: float  # per device


def valid_names() -> str:
    return (
        "local, GEN:SHAPE as libtpu names slices (GEN one of v4, v5e, v5p, v6e; e.g. v5e:4x8, "
        f"v5p:2x2x1, v4:2x2x1), or one of {', '.join(ALIASES)}"
    )


def get_target(name: str, *, hbm_gib: float | None = None) -> Target:
    """The devices of topology ``name`` (see :func:`valid_names`): abstract TPU devices from
    libtpu, or this machine's devices for ``"local"``. ``hbm_gib`` overrides the memory of one
    device."""
    if name == "local":
        devices = jax.devices()
        host = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        n = len(devices)
        chip = CPU_HOST if devices[0].platform == "cpu" else _chip(devices[0])
        hbm, source = _local_memory(devices[0], host, n)
        peak, bandwidth = chip.peak_flops, chip.hbm_bandwidth
        if chip is CPU_HOST:  # fake CPU devices share the host
            peak, bandwidth = peak / n, bandwidth / n
        target = Target(name, "local", devices, chip, hbm, source, peak, bandwidth)
    else:
        topology = ALIASES.get(name, name)
        match = _TOPOLOGY.match(topology)
        if match is None:
            raise PlanError(f"Unknown topology {name!r}; valid: {valid_names()}.")
        devices = _tpu_devices(topology, match.group(1))
        chip = CHIPS[match.group(1)]
        hbm = compiler_hbm_bytes(devices[0])
        source = "XLA:TPU compiler (HBM available to a program)"
        if hbm is None:
            hbm, source = chip.hbm_bytes, f"public spec ({chip.spec})"
        target = Target(
            name, topology, devices, chip, hbm, source, chip.peak_flops, chip.hbm_bandwidth
        )
    if hbm_gib is not None:
        target.hbm_bytes, target.hbm_source = hbm_gib * GIB, "--hbm_gib"
    return target


def _chip(device) -> Chip:
    kind = DEVICE_KINDS.get(device.device_kind)
    if kind is None:
        raise PlanError(f"No chip figures for device kind {device.device_kind!r}.")
    return CHIPS[kind]


def _local_memory(device, host: int, n: int) -> tuple[float, str]:
    try:
        limit = (device.memory_stats() or {}).get("bytes_limit")
    except Exception:  # noqa: BLE001 (CPU devices raise or return None)
        limit = None
    if limit:
        return float(limit), "device memory_stats()['bytes_limit']"
    return host / n, f"host memory shared by {n} CPU device(s)"


def _tpu_devices(topology: str, generation: str) -> list:
    if importlib.util.find_spec("libtpu") is None:
        raise PlanError(
            f"Compiling for TPU topology {topology!r} needs libtpu, which this Python lacks: "
            "pip install -e .[tpu]"
        )
    from jax.experimental import topologies  # noqa: PLC0415 (loads libtpu)

    options = {"chip_config_name": "megacore"} if generation in MEGACORE else {}
    try:
        desc = topologies.get_topology_desc(platform="tpu", topology_name=topology, **options)
    except Exception as e:  # noqa: BLE001 (libtpu raises JaxRuntimeError with its reason)
        reason = " ".join(str(e).split())[:300]
        if "lockfile" in reason:
            raise PlanError(
                "libtpu is in use by another process on this machine (a second plan, or a TPU "
                "program: libtpu allows one at a time); wait for it to finish, or, to compile "
                "beside it, set ALLOW_MULTIPLE_LIBTPU_LOAD=1 (safe for ahead-of-time "
                f"compilation, which uses no TPU). libtpu said: {reason}"
            ) from None
        raise PlanError(
            f"libtpu rejects topology {topology!r} ({reason}); valid: {valid_names()}."
        ) from None
    return list(desc.devices)


def compiler_hbm_bytes(device) -> float | None:
    """The HBM XLA:TPU lets one program use on ``device``, read from the error it gives for
    a program that cannot fit (one compile, well under a second); None if it says nothing."""
    mesh = jax.sharding.Mesh(np.array([device]), ("x",))
    huge = jax.ShapeDtypeStruct((2**40,), jnp.uint8, sharding=NamedSharding(mesh, P()))
    try:
        jax.jit(lambda x: x + 1).lower(huge).compile()
    except Exception as e:  # noqa: BLE001
        parsed = parse_out_of_memory(str(e))
        return parsed[1] if parsed else None
    return None


_UNITS = {"": 1, "B": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
_SIZE = r"([\d.]+)\s*([KMGT]?)i?B?"
_OOM_PATTERNS = (
    # "the total memory required for HLO temporaries (15.87G) exceeds available HBM (15.75G)"
    (re.compile(rf"temporaries \({_SIZE}\) exceeds available HBM \({_SIZE}\)"), "temporaries"),
    # "Used 17.12G of 15.75G hbm. Exceeded hbm capacity by 1.37G."
    (re.compile(rf"Used {_SIZE} of {_SIZE} hbm"), "total"),
)


def parse_out_of_memory(message: str) -> tuple[float, float, str] | None:
    """``(bytes needed, bytes available, what "needed" counts)`` from XLA's
    RESOURCE_EXHAUSTED message, or None when it is not one or names no sizes."""
    if "RESOURCE_EXHAUSTED" not in message and "Ran out of memory" not in message:
        return None
    for pattern, counts in _OOM_PATTERNS:
        m = pattern.search(message)
        if m:
            needed = float(m.group(1)) * _UNITS[m.group(2)]
            available = float(m.group(3)) * _UNITS[m.group(4)]
            return needed, available, counts
    return None


COLLECTIVES = ("all-reduce", "all-gather", "reduce-scatter", "all-to-all", "collective-permute")
_DTYPE_BYTES = {
    "pred": 1,
    "s4": 0.5,
    "u4": 0.5,
    "s8": 1,
    "u8": 1,
    "bf16": 2,
    "f16": 2,
    "s16": 2,
    "u16": 2,
    "f32": 4,
    "s32": 4,
    "u32": 4,
    "f64": 8,
    "s64": 8,
    "u64": 8,
    "c64": 8,
    "c128": 16,
}
# "%name = SHAPE op(" where op is a collective, or its asynchronous "-done" half (whose
# result is the collective's output; the "-start" half is skipped so nothing counts twice).
_INSTRUCTION = re.compile(
    r"^\s*(?:ROOT\s+)?%?[\w.\-]+\s*=\s*(?P<shape>.+?)\s+"
    rf"(?P<op>{'|'.join(COLLECTIVES)})(?:-done)?\("
)
_ARRAY = re.compile(r"\b([a-z]+\d*(?:e\d+m\d+\w*)?)\[([\d,]*)\]")


def shape_bytes(shape: str) -> float:
    """Bytes of an HLO result shape such as ``f32[512,512]{1,0}`` or a tuple of them."""
    total = 0.0
    for dtype, dims in _ARRAY.findall(shape):
        size = _DTYPE_BYTES.get(dtype, 1 if dtype.startswith("f8") else 0)
        total += size * float(np.prod([int(d) for d in dims.split(",") if d] or [1]))
    return total


def collectives(hlo_text: str) -> dict[str, dict[str, float]]:
    """``{op: {"count", "bytes"}}`` of the collective operations in a compiled module's text
    (``compiled.as_text()``), bytes summed over their result shapes (per device). Counts are
    static: an operation inside a loop body counts once."""
    found = {}
    for line in hlo_text.splitlines():
        m = _INSTRUCTION.match(line)
        if m:
            entry = found.setdefault(m.group("op"), {"count": 0, "bytes": 0.0})
            entry["count"] += 1
            entry["bytes"] += shape_bytes(m.group("shape"))
    return found
