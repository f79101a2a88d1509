"""Pretraining throughput of the full SimCLR train step on this machine's CPU.

  python benchmarks/throughput.py [--steps 5] [--out benchmarks/results]

For each (width, batch) of a CIFAR ResNet-18 (configs/simclr_cifar10.py, SimCLR views
without blur) it runs the jitted, sharded train step, augmentation included, on random
uint8 32x32 images, each configuration in a fresh subprocess so peak memory is its own.
It reports compile time, steady-state images/second (median over timed steps), peak
resident memory, and the share of step time spent making the two views (the views-only
function jitted and timed alone). Results: OUT/throughput.json and OUT/throughput.md.
"""

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

CONFIGS = [(64, 64), (64, 256), (16, 64), (16, 256)]
# PyTorch 2.13 CPU SimCLR step, same ResNet-18, pre-made views, 2 threads (issue #2).
PYTORCH_IMG_PER_SEC = {(64, 64): 22.0, (16, 256): 225.0}


def measure(width: int, batch: int, steps: int) -> dict:
    import jax
    import numpy as np

    sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
    from configs.simclr_cifar10 import get_config
    from ssl_jax.augment import make_multiview_fn
    from ssl_jax.augment.from_config import view_specs_from_config
    from ssl_jax.methods import get_method
    from ssl_jax.optim import make_optimizer, make_schedule
    from ssl_jax.parallel import global_batch, make_mesh
    from ssl_jax.train_step import make_init_fn, make_train_step

    config = get_config()
    config.data.batch_size = batch
    config.model.width = width
    mesh = make_mesh(-1)
    schedule = make_schedule(config, steps_per_epoch=100, total_steps=10_000)
    tx = make_optimizer(config.optim, schedule)
    method = get_method(config)
    state = make_init_fn(method, tx, mesh)(0)
    step_fn = make_train_step(method, tx, schedule, mesh)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (batch, 32, 32, 3), dtype=np.uint8)
    batch_arrays = global_batch({"images": images, "labels": np.zeros(batch, np.int32)}, mesh)

    t0 = time.perf_counter()
    compiled = step_fn.lower(state, batch_arrays).compile()
    compile_s = time.perf_counter() - t0
    state, metrics = compiled(state, batch_arrays)  # warm-up
    jax.block_until_ready(metrics)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        state, metrics = compiled(state, batch_arrays)
        jax.block_until_ready(metrics)
        times.append(time.perf_counter() - t0)
    step_s = statistics.median(times)

    views = jax.jit(make_multiview_fn(view_specs_from_config(config.augment)))
    key = jax.random.key(0)
    jax.block_until_ready(views(batch_arrays["images"], key))
    view_times = []
    for i in range(max(steps, 5)):
        t0 = time.perf_counter()
        jax.block_until_ready(views(batch_arrays["images"], jax.random.fold_in(key, i)))
        view_times.append(time.perf_counter() - t0)
    return {
        "width": width,
        "batch": batch,
        "compile_s": compile_s,
        "step_s": step_s,
        "images_per_sec": batch / step_s,
        "augment_share": statistics.median(view_times) / step_s,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "timed_steps": steps,
        "devices": len(jax.devices()),
        "loss_finite": bool(np.isfinite(float(metrics["loss"]))),
    }


def markdown(rows: list[dict]) -> str:
    lines = [
        "| ResNet-18 width | batch | img/s | PyTorch img/s | ratio | compile s | "
        "augment share | peak RSS MiB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ref = PYTORCH_IMG_PER_SEC.get((r["width"], r["batch"]))
        ratio = f"{r['images_per_sec'] / ref:.2f}" if ref else "–"
        lines.append(
            f"| {r['width']} | {r['batch']} | {r['images_per_sec']:.1f} | "
            f"{ref if ref else '–'} | {ratio} | {r['compile_s']:.1f} | "
            f"{100 * r['augment_share']:.1f}% | {r['peak_rss_mib']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=5, help="timed steps per configuration")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    parser.add_argument("--configs", default=",".join(f"{w}x{b}" for w, b in CONFIGS))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        width, batch = map(int, args.child.split("x"))
        print(json.dumps(measure(width, batch, args.steps)))
        return
    rows = []
    for item in args.configs.split(","):
        print(f"measuring width x batch = {item} ...", flush=True)
        out = subprocess.run(
            [sys.executable, __file__, "--child", item, "--steps", str(args.steps)],
            check=True,
            capture_output=True,
            text=True,
        )
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(markdown(rows[-1:]).splitlines()[-1], flush=True)
    os.makedirs(args.out, exist_ok=True)
    meta = {
        "machine": platform.platform(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "note": "random uint8 32x32 images; SimCLR CIFAR views (no blur); 1 process, "
        "all local devices; median step time after one warm-up step",
    }
    with open(os.path.join(args.out, "throughput.json"), "w") as f:
        json.dump({"meta": meta, "results": rows}, f, indent=2)
    table = markdown(rows)
    with open(os.path.join(args.out, "throughput.md"), "w") as f:
        f.write(table)
    print(table)


if __name__ == "__main__":
    main()
