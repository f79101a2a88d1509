"""Train-step throughput on this machine's CPU: ssl_jax and the same step in PyTorch, side by side.

  python benchmarks/throughput.py [--methods simclr,byol] [--configs 64x64,64x256,16x64,16x256]
      [--torch-python PYTHON]
      [--steps 5] [--rounds 1] [--reference torch|none] [--xla-defaults] [--dtype float32]
      [--out benchmarks/results] [--name throughput] [--torch-python PYTHON]

A cell ``vitxB`` runs the method over ViT-Tiny/4 ([CLS] feature; timm's ViT on the PyTorch
side, the same layout and parameter count) instead of the ResNet. A cell ``WxBxD`` runs
ssl_jax's step over D fake CPU devices (the sharding overhead on one host; ``--reference
none``). ``--torch-python``: the PyTorch step runs in that interpreter (it needs torch, timm for
the ViT, and ssl_jax's requirements, as it reads the method's config).

For each method (configs/<method>_cifar10.py, views without blur), CIFAR ResNet-18 width and
batch, it runs ssl_jax's jitted, sharded train step (augmentation included) on random uint8
32x32 images, then the equal PyTorch step (benchmarks/torch_step.py: same networks and
parameter count, same loss and LARS, all cores, views pre-made), alternately in one invocation,
each measurement in a fresh subprocess so peak memory is its own. ``--rounds`` repeats the
alternation and keeps the median. Per cell: compile time, steady-state images/second (median
over timed steps after one warm-up step), the ratio ssl_jax / PyTorch, peak resident memory,
and the share of step time spent making the two views (the views-only function jitted and
timed alone). Results: OUT/throughput.json (``images_per_sec`` per row) and OUT/throughput.md.
PyTorch is a benchmark-only dependency (``pip install torch==2.13.0``); without it (or with
``--reference none``) the PyTorch columns stay empty.
"""

import argparse
import dataclasses
import importlib.util
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from typing import Any

CONFIGS = [(64, 64), (64, 256), (16, 64), (16, 256)]
METHODS = ("simclr", "byol")
REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def load_config(method: str, width: int | str, batch: int):
    """The method's CIFAR config at ``batch``, views without blur, with a ResNet-18 of
    ``width`` or, for ``width="vit"``, ViT-Tiny/4 ([CLS] feature) in the method's optimizer."""
    sys.path.insert(0, REPO)
    from importlib import import_module

    config = import_module(f"configs.{method}_cifar10").get_config()
    config.data.batch_size = batch
    if width == "vit":
        with config.unlocked():  # the ViT fields a ResNet config has not
            config.model.update(backbone="vit_tiny", patch_size=4, img_size=32, pool="cls")
    else:
        config.model.width = width
    config.augment.blur_prob = 0.0
    return config


def timed_steps(step, steps: int) -> float:
    """Median seconds of ``step()`` (which blocks until done) after one warm-up call."""
    step()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def parse_cell(cell: str) -> tuple[int | str, int, int]:
    """``WxB`` or ``WxBxD``: ResNet-18 width (``vit``: ViT-Tiny/4), global batch, CPU devices
    (default 1)."""
    try:
        width, *numbers = cell.split("x")
        batch, *devices = map(int, numbers)
        width = width if width == "vit" else int(width)
        if len(devices) > 1:
            raise ValueError
    except ValueError:
        message = (
            f"--configs: {cell!r} is not WxB or WxBxD (e.g. 16x256, 16x256x8 or vitx64 for "
            "ViT-Tiny/4)."
        )
        raise SystemExit(message) from None
    return width, batch, devices[0] if devices else 1


def backbone_name(width: int | str) -> str:
    return "ViT-Tiny/4" if width == "vit" else f"ResNet-18 w{width}"


@dataclasses.dataclass
class CompiledStep:
    """A method's train step compiled ahead of time for one cell, with what it runs on."""

    compiled: Any  # compiled(state, batch, None) -> (state, metrics)
    state: Any
    batch: dict
    config: Any
    compile_s: float
    gflops: float  # the whole step, every device
    flags: list[str]  # what ssl_jax.xla_cpu added to XLA_FLAGS


def compile_step(method: str, cell: str, xla_defaults: bool, dtype: str) -> CompiledStep:
    """Set up the process (XLA flags, devices) and compile ``method``'s step for ``cell``."""
    width, batch, devices = parse_cell(cell)
    config = load_config(method, width, batch)
    config.model.dtype = dtype
    from ssl_jax import xla_cpu

    flags = [] if xla_defaults else xla_cpu.configure()  # as the launch/ programs do
    import jax
    import numpy as np

    jax.config.update("jax_num_cpu_devices", devices)
    from ssl_jax.methods import get_method
    from ssl_jax.optim import make_optimizer, make_schedule
    from ssl_jax.parallel import global_batch, make_mesh
    from ssl_jax.train_step import make_init_fn, make_train_step

    mesh = make_mesh(-1)
    schedule = make_schedule(config, steps_per_epoch=100, total_steps=10_000)
    tx = make_optimizer(config.optim, schedule)
    method_impl = get_method(config, total_steps=10_000)
    state = make_init_fn(method_impl, tx, mesh)(0)
    step_fn = make_train_step(method_impl, tx, schedule, mesh)
    images = np.random.default_rng(0).integers(0, 256, (batch, 32, 32, 3), dtype=np.uint8)
    arrays = global_batch({"images": images, "labels": np.zeros(batch, np.int32)}, mesh)
    t0 = time.perf_counter()
    compiled = step_fn.lower(state, arrays).compile()
    compile_s = time.perf_counter() - t0
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    # XLA's cost analysis counts one device's share of a sharded program.
    gflops = cost.get("flops", float("nan")) * devices / 1e9
    return CompiledStep(compiled, state, arrays, config, compile_s, gflops, flags)


def measure(
    method: str,
    cell: str,
    steps: int,
    xla_defaults: bool = False,
    dtype: str = "float32",
) -> dict:
    import jax
    import numpy as np

    from ssl_jax.augment import make_multiview_fn
    from ssl_jax.augment.from_config import view_specs_from_config

    run = compile_step(method, cell, xla_defaults, dtype)
    compiled, state, batch_arrays, config = run.compiled, run.state, run.batch, run.config
    batch = config.data.batch_size
    holder = {"state": state}

    def step():
        holder["state"], metrics = compiled(holder["state"], batch_arrays, None)
        holder["loss"] = float(metrics["loss"])

    step_s = timed_steps(step, steps)
    views = jax.jit(make_multiview_fn(view_specs_from_config(config.augment)))
    key = jax.random.key(0)
    view_s = timed_steps(lambda: jax.block_until_ready(views(batch_arrays["images"], key)), steps)
    return {
        "compile_s": run.compile_s,
        "step_s": step_s,
        "images_per_sec": batch / step_s,
        "augment_share": view_s / step_s,
        "gflops_per_sec": run.gflops / step_s,
        "peak_rss_mib": peak_rss_mib(),
        "params": sum(x.size for x in jax.tree.leaves(state.params)),
        "xla_flags_added": run.flags,
        "devices": len(jax.devices()),
        "loss_finite": bool(np.isfinite(holder["loss"])),
    }


def matmul_gflops(n: int = 2048, steps: int = 5) -> float:
    """This machine's f32 matrix-product rate through XLA (an n x n product), GFLOP/s."""
    import jax
    import jax.numpy as jnp

    a = jnp.ones((n, n), jnp.float32)
    product = jax.jit(lambda a: a @ a)
    return 2 * n**3 / timed_steps(lambda: jax.block_until_ready(product(a)), steps) / 1e9


def measure_torch(method: str, cell: str, steps: int) -> dict:
    import torch

    width, batch, devices = parse_cell(cell)
    if devices != 1:
        raise SystemExit("the PyTorch reference runs on one device: --reference none")

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from torch_step import make_step

    torch.manual_seed(0)
    torch.set_num_threads(os.cpu_count())
    step_fn, count = make_step(method, width, load_config(method, width, batch))
    v1, v2 = torch.rand(batch, 3, 32, 32), torch.rand(batch, 3, 32, 32)
    holder = {}

    def step():
        holder["loss"] = float(step_fn(v1, v2))

    step_s = timed_steps(step, steps)
    return {
        "step_s": step_s,
        "images_per_sec": batch / step_s,
        "peak_rss_mib": peak_rss_mib(),
        "params": count,
        "threads": torch.get_num_threads(),
        "version": torch.__version__,
        "loss_finite": bool(torch.isfinite(torch.tensor(holder["loss"]))),
    }


def write_results(out: str, name: str, data: dict, table: str) -> None:
    """OUT/NAME.json and OUT/NAME.md; the table is also printed."""
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, f"{name}.json"), "w") as f:
        json.dump(data, f, indent=2)
    with open(os.path.join(out, f"{name}.md"), "w") as f:
        f.write(table)
    print(table)


def markdown(rows: list[dict]) -> str:
    lines = [
        "| method | backbone | batch | devices | dtype | ssl_jax img/s | PyTorch img/s | "
        "ratio | "
        "ssl_jax, jaxlib's default flags | step GFLOP/s | compile s | augment share | "
        "peak RSS MiB (ssl_jax / PyTorch) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ref = r.get("torch")
        base = r.get("xla_defaults")
        lines.append(
            f"| {r['method']} | {backbone_name(r['width'])} | {r['batch']} | "
            f"{r.get('devices', 1)} | "
            f"{r.get('dtype', 'float32')} | {r['images_per_sec']:.1f} | "
            + (f"{ref['images_per_sec']:.1f} | {r['ratio']:.2f}" if ref else "– | –")
            + (f" | {base['images_per_sec']:.1f}" if base else " | –")
            + f" | {r['gflops_per_sec']:.0f} | {r['compile_s']:.1f}"
            + f" | {100 * r['augment_share']:.1f}% | "
            f"{r['peak_rss_mib']:.0f} / " + (f"{ref['peak_rss_mib']:.0f} |" if ref else "– |")
        )
    return "\n".join(lines) + "\n"


def child(kind: str, cell: str, steps: int, dtype: str = "float32", python: str = "") -> dict:
    """Run one measurement in a fresh process (of ``python``, default this one); its JSON
    result."""
    out = subprocess.run(
        [python or sys.executable, __file__, "--child", f"{kind}:{cell}", "--steps", str(steps)]
        + ["--dtype", dtype],
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        raise SystemExit(f"{kind} {cell} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def median_row(results: list[dict]) -> dict:
    """The round whose images/second is the median (the upper one of an even count)."""
    return sorted(results, key=lambda r: r["images_per_sec"])[len(results) // 2]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=5, help="timed steps per measurement")
    parser.add_argument("--rounds", type=int, default=1, help="alternations per cell")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    parser.add_argument("--configs", default=",".join(f"{w}x{b}" for w, b in CONFIGS))
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument(
        "--reference",
        choices=("torch", "none"),
        default=None,
        help="measure the PyTorch step alongside (default: when torch is installed here or "
        "--torch-python is given)",
    )
    parser.add_argument(
        "--xla-defaults",
        action="store_true",
        help="also measure ssl_jax with jaxlib's default CPU flags (without ssl_jax.xla_cpu)",
    )
    parser.add_argument(
        "--dtype",
        choices=("float32", "bfloat16"),
        default="float32",
        help="ssl_jax's model.dtype (PyTorch stays float32)",
    )
    parser.add_argument(
        "--torch-python",
        default="",
        help="the Python that runs the PyTorch step (default: this one); it imports the "
        "ssl_jax config too, so ssl_jax's requirements must be importable there",
    )
    parser.add_argument("--name", default="throughput", help="OUT/NAME.json and OUT/NAME.md")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, method, cell = args.child.split(":")
        if kind == "matmul":
            result = {"matmul_gflops": matmul_gflops()}
        elif kind == "torch":
            result = measure_torch(method, cell, args.steps)
        else:
            xla_defaults = kind == "jax-defaults"
            result = measure(method, cell, args.steps, xla_defaults, args.dtype)
        print(json.dumps(result))
        return
    if args.reference is None:
        found = args.torch_python or importlib.util.find_spec("torch")
        args.reference = "torch" if found else "none"
    if args.reference == "none" and not importlib.util.find_spec("torch"):
        print("PyTorch reference off (pip install torch==2.13.0 to measure it).", flush=True)
    rows = []
    matmul = child("matmul", "none:0x0", args.steps)["matmul_gflops"]
    print(f"XLA f32 2048x2048 matmul: {matmul:.0f} GFLOP/s", flush=True)
    for method in args.methods.split(","):
        if method not in METHODS:
            raise SystemExit(f"--methods: {method!r} is not one of {', '.join(METHODS)}.")
        for item in args.configs.split(","):
            width, batch, devices = parse_cell(item)
            print(f"measuring {method} width x batch (x devices) = {item} ...", flush=True)
            ours, theirs, defaults = [], [], []
            for _ in range(args.rounds):
                ours.append(child("jax", f"{method}:{item}", args.steps, args.dtype))
                if args.xla_defaults:
                    defaults.append(
                        child("jax-defaults", f"{method}:{item}", args.steps, args.dtype)
                    )
                if args.reference == "torch":
                    theirs.append(
                        child("torch", f"{method}:{item}", args.steps, python=args.torch_python)
                    )
            row = {"method": method, "width": width, "batch": batch, **median_row(ours)}
            row.update(devices=devices, dtype=args.dtype)
            row["rounds"] = [r["images_per_sec"] for r in ours]
            if theirs:
                ref = median_row(theirs) | {"rounds": [r["images_per_sec"] for r in theirs]}
                if ref["params"] != row["params"]:
                    raise SystemExit(
                        f"{method} {item}: PyTorch has {ref['params']:,} parameters, "
                        f"ssl_jax {row['params']:,}; the steps are not the same network."
                    )
                row["torch"] = ref
                row["ratio"] = row["images_per_sec"] / ref["images_per_sec"]
            if defaults:
                row["xla_defaults"] = median_row(defaults) | {
                    "rounds": [r["images_per_sec"] for r in defaults]
                }
            rows.append(row)
            print(markdown(rows[-1:]).splitlines()[-1], flush=True)
    meta = {
        "machine": platform.platform(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "steps": args.steps,
        "matmul_gflops": matmul,
        "rounds": args.rounds,
        "note": "random uint8 32x32 images; CIFAR views without blur made inside the ssl_jax "
        "step; the PyTorch step gets both views pre-made (random floats); 1 process each, "
        "all cores (ssl_jax over 'devices' fake CPU devices, batch split between them); "
        "median step time after one warm-up step",
    }
    write_results(args.out, args.name, {"meta": meta, "results": rows}, markdown(rows))


if __name__ == "__main__":
    main()
