"""Where the train step's time goes on this machine's CPU: a per-operation profile.

  python benchmarks/step_profile.py [--method simclr] [--config 64x64] [--steps 3]
      [--xla-defaults] [--out benchmarks/results]

Traces ``--steps`` steps of the jitted train step (after a warm-up step) with
``jax.profiler``, reads the trace back (``jax.profiler.ProfileData``) and sums the time of
every operation XLA's CPU runtime executed, over its worker threads, into classes read off the
compiled HLO: weight-gradient convolutions (the window spans the feature map), the other
convolutions (forward and input gradient), matrix products, transposes and copies (layout
changes), reductions (BatchNorm statistics, losses) and the remaining element-wise fusions.
Also: the step's FLOPs (XLA's cost analysis), wall time per step, and how busy the threads
were (attributed thread-seconds / (wall x threads)). The rest is "not attributed": idle
threads, or work that emits no trace event of its own. XLA's Eigen convolutions (what
``ssl_jax.xla_cpu`` selects) run their kernels on Eigen's pool without per-operation events,
so with them the convolutions land there; with ``--xla-defaults`` (YNNPACK convolutions) they
are attributed. Results: OUT/step_profile[_xla_defaults].json and .md.
"""

import argparse
import collections
import glob
import os
import re
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from throughput import compile_step, write_results  # noqa: E402

CLASSES = (
    "weight-gradient convolutions",
    "forward and input-gradient convolutions",
    "matrix products",
    "transposes and copies",
    "reductions",
    "element-wise and other",
)
UNATTRIBUTED = "not attributed: idle, or work without trace events of its own"


def computations(hlo: str) -> tuple[dict, dict]:
    """``(instruction name -> its line, computation name -> its body lines)`` of HLO text."""
    lines, bodies, current = {}, {}, None
    for line in hlo.splitlines():
        header = re.match(r"^(?:ENTRY )?%?([\w.\-]+) \(.*\{$", line)
        if header:
            current = header.group(1)
            bodies[current] = []
            continue
        assignment = re.match(r"^\s*(?:ROOT )?%?([\w.\-]+) = (.*)$", line)
        if assignment:
            lines[assignment.group(1)] = assignment.group(2)
            if current is not None:
                bodies[current].append(assignment.group(2))
    return lines, bodies


def classify(name: str, lines: dict, bodies: dict) -> str:
    line = lines.get(name, "")
    called = re.search(r"calls=%?([\w.\-]+)", line)
    body = [line] + (bodies.get(called.group(1), []) if called else [])
    text = "\n".join(body)
    if " convolution(" in text:
        window = re.search(r"window=\{size=(\d+)x(\d+)", text)
        shape = re.search(r"f32\[\d+,(\d+),(\d+),\d+\]", text)  # the output
        large = window and int(window.group(1)) > 7
        return CLASSES[0] if large or (shape and shape.group(1) == "3") else CLASSES[1]
    if " dot(" in text:
        return CLASSES[2]
    if " reduce(" in text or " reduce-window(" in text:
        return CLASSES[4]
    if re.search(r" (transpose|copy)\(", text) or name.startswith(("transpose", "copy")):
        return CLASSES[3]
    return CLASSES[5]


def profile(method: str, cell: str, steps: int, xla_defaults: bool) -> dict:
    run = compile_step(method, cell, xla_defaults, "float32")
    import jax

    compiled, state, arrays = run.compiled, run.state, run.batch
    lines, bodies = computations(compiled.as_text())
    state, metrics = compiled(state, arrays, None)
    jax.block_until_ready(metrics)

    with tempfile.TemporaryDirectory() as trace_dir:
        jax.profiler.start_trace(trace_dir)
        t0 = time.perf_counter()
        for _ in range(steps):
            state, metrics = compiled(state, arrays, None)
            jax.block_until_ready(metrics)
        wall = (time.perf_counter() - t0) / steps
        jax.profiler.stop_trace()
        (path,) = glob.glob(os.path.join(trace_dir, "**", "*.xplane.pb"), recursive=True)
        data = jax.profiler.ProfileData.from_file(path)
        busy, threads = collections.Counter(), set()
        for plane in data.planes:
            for line in plane.lines:
                if "XLAEigen" not in line.name:  # XLA's CPU worker threads
                    continue
                threads.add(line.name)
                for event in line.events:
                    if event.name.startswith(("ThunkExecutor", "SlinkyThreadPool")):
                        continue  # containers and waits, not operations
                    busy[classify(event.name, lines, bodies)] += event.duration_ns / 1e9
    per_step = {k: busy[k] / steps for k in CLASSES}
    total = sum(per_step.values())
    per_step[UNATTRIBUTED] = max(0.0, wall * len(threads) - total)
    return {
        "method": method,
        "cell": cell,
        "xla_flags_added": run.flags,
        "step_s": wall,
        "gflops": run.gflops,
        "gflops_per_sec": run.gflops / wall,
        "threads": len(threads),
        "busy_thread_s": total,
        "thread_utilisation": total / (wall * max(len(threads), 1)),
        "classes_s": per_step,
    }


def markdown(r: dict) -> str:
    lines = [
        f"{r['method']} step, ResNet-18 width x batch {r['cell']}: {r['step_s']:.2f} s wall, "
        f"{r['gflops']:.0f} GFLOP ({r['gflops_per_sec']:.0f} GFLOP/s), {r['threads']} XLA "
        f"threads {100 * r['thread_utilisation']:.0f}% busy; flags added: "
        f"{' '.join(r['xla_flags_added']) or 'none'}",
        "",
        "| operations | thread-seconds per step | share of wall x threads |",
        "|---|---|---|",
    ]
    for name, seconds in r["classes_s"].items():
        share = seconds / (r["step_s"] * r["threads"])
        lines.append(f"| {name} | {seconds:.3f} | {100 * share:.1f}% |")
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--method", default="simclr", choices=("simclr", "byol"))
    parser.add_argument("--config", default="64x64", help="WxB or WxBxD (devices)")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--xla-defaults", action="store_true", help="without ssl_jax.xla_cpu")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    args = parser.parse_args()
    result = profile(args.method, args.config, args.steps, args.xla_defaults)
    suffix = "_xla_defaults" if args.xla_defaults else ""
    write_results(args.out, f"step_profile{suffix}", result, markdown(result))


if __name__ == "__main__":
    main()
