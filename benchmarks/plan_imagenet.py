"""Every ImageNet recipe planned on the common TPU slices: does it fit, at what per-chip peak.

  python benchmarks/plan_imagenet.py [--python .venv-tpu/bin/python] [--configs simclr,byol]
      [--topologies v5e-16,v5e-32,v5e-64,v5p-8,v4-8] [--timeout 1800] [--out benchmarks/results]
      [--runs /tmp/plan_imagenet_runs]

Runs ``launch/plan.py --config configs/<name>_imagenet.py --topology T`` (each in its own
process, with the Python given: one with libtpu, ``pip install -e .[tpu]``) for every config
and topology, and writes OUT/plan_imagenet.json and OUT/plan_imagenet.md after each one.
Resumable: a pair already in the JSON is not compiled again (delete it to redo it). Each
compile takes seconds (a recipe XLA refuses early) to several minutes on a 2-core machine.
The step-time figures are lower bounds from compiled FLOPs and bytes at the chip's peak
rates: projections, never measurements.
"""

import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile
import time

REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
TOPOLOGIES = ("v5e-16", "v5e-32", "v5e-64", "v5p-8", "v4-8")
GIB = 2**30


def all_configs() -> list[str]:
    paths = sorted(glob.glob(os.path.join(REPO, "configs", "*_imagenet.py")))
    return [os.path.basename(p).removesuffix("_imagenet.py") for p in paths]


def plan_one(
    python: str, name: str, topology: str, workdir: str, timeout: int, overrides=(), config=None
) -> dict:
    """One ``launch/plan.py`` run of ``configs/NAME_imagenet.py`` (or the ``config`` path)
    with ``overrides`` (``--config.x=y`` flags): its plan.json's figures, or the line it
    failed with."""
    cmd = [
        python,
        "launch/plan.py",
        f"--config={config or f'configs/{name}_imagenet.py'}",
        f"--topology={topology}",
        f"--workdir={workdir}",
        *overrides,
    ]
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"status": "timeout", "message": f"no result within {timeout} s"}
    wall = round(time.perf_counter() - start, 1)
    path = os.path.join(workdir, "plan.json")
    lines = proc.stderr.strip().splitlines()
    if not os.path.exists(path):  # a PlanError (or a crash): no plan was written
        return {"status": "error", "message": lines[-1] if lines else "", "wall_s": wall}
    with open(path) as f:
        plan = json.load(f)
    bound = plan["bound"] or {}
    return {
        "status": "fits" if plan["fits"] else "does not fit",
        "recipe": plan["recipe"],
        "chips": plan["chips"],
        "global_batch": plan["global_batch"],
        "per_chip_batch": plan["per_chip_batch"],
        "peak_gib": None if plan["peak_bytes"] is None else plan["peak_bytes"] / GIB,
        "peak_estimated": plan["peak_estimated"],
        "state_gib_per_chip": (plan.get("state_bytes_per_chip") or 0) / GIB or None,
        "state_gib": (plan.get("state_bytes") or 0) / GIB or None,
        "hbm_gib": plan["hbm_bytes"] / GIB,
        "step_time_lower_bound_ms": (bound["step_time_lower_bound_s"] * 1e3 if bound else None),
        "bound_by": bound.get("bound_by"),
        "images_per_s_upper_bound": bound.get("images_per_s_upper_bound"),
        "compile_s": plan["compile_s"],
        "wall_s": wall,
        "message": plan["message"],
        "versions": plan["versions"],
    }


def load_results(path: str) -> dict:
    """The results a previous run wrote to ``path`` (none: ``{}``), to resume from."""
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return json.load(f)["results"]


def save_results(path: str, command: str, results: dict, table: str) -> None:
    """``path`` (JSON) and the Markdown ``table`` beside it (``.md``), after each compile."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump({"command": command, "results": results}, f, indent=2)
    with open(path.removesuffix(".json") + ".md", "w") as f:
        f.write(table)


def cell(r: dict | None) -> str:
    if r is None:
        return "not run"
    if r["status"] in ("error", "timeout"):
        return f"{r['status']}: {r['message']}"
    peak = "?" if r["peak_gib"] is None else f"{r['peak_gib']:.2f}"
    if r["status"] == "fits":
        return f"**fits** {peak} / {r['hbm_gib']:.2f} GiB, ≥ {r['step_time_lower_bound_ms']:.0f} ms"
    return f"no: {peak}{' (est.)' if r['peak_estimated'] else ''} / {r['hbm_gib']:.2f} GiB"


def config_batch(name: str):
    """The config's own global batch (read from the config file, nothing compiled)."""
    sys.path.insert(0, REPO)
    from importlib import import_module  # noqa: PLC0415

    return import_module(f"configs.{name}_imagenet").get_config().data.batch_size


def smallest_v5e(cells: dict[str, dict | None]) -> str:
    """The smallest v5e slice the config's batch fits, among those planned."""
    sizes = [t for t in TOPOLOGIES if t.startswith("v5e-")]
    for topology in sizes:
        cell = cells.get(topology)
        if cell is None:
            return f"? ({topology} not planned yet)"
        if cell["status"] == "fits":
            return topology
    return f"more than {sizes[-1]}"


def markdown(results: dict, configs: list[str], topologies: list[str], command: str) -> str:
    head = "| config | global batch | " + " | ".join(topologies) + " | smallest v5e slice |"
    rows = [head, "|" + "---|" * (len(topologies) + 3)]
    for name in configs:
        cells = {t: results.get(f"{name}/{t}") for t in topologies}
        row = " | ".join(cell(c) for c in cells.values())
        rows.append(f"| {name} | {config_batch(name)} | {row} | {smallest_v5e(cells)} |")
    versions = next((r["versions"] for r in results.values() if "versions" in r), {})
    done = sum(1 for r in results.values() if r["status"] not in ("timeout",))
    return (
        "# ImageNet recipes on TPU slices (compiled ahead of time, no TPU)\n\n"
        f"Command: `{command}`; {', '.join(f'{k} {v}' for k, v in versions.items())}; "
        f"{done} of {len(configs) * len(topologies)} pairs planned so far (resumable).\n\n"
        "Each cell: whether the config's own global batch fits, the per-chip peak "
        "(arguments + outputs + temporaries - aliases of the compiled program; '(est.)' when "
        "XLA refused the program and its message counted temporaries only) over the HBM a "
        "program may use, and for a fitting one the step-time lower bound from compiled "
        "FLOPs and bytes at the chip's peak rates (a projection, not a measurement). v5p-8 "
        "and v4-8 are 4 chips (8 TensorCores); v5e-N is N chips. Compile times (in the "
        "JSON) were taken on a loaded 2-core machine and are indicative only.\n\n"
        + "\n".join(rows)
        + "\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--python", default=sys.executable, help="a Python with libtpu")
    parser.add_argument("--configs", default=",".join(all_configs()))
    parser.add_argument("--topologies", default=",".join(TOPOLOGIES))
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per compile")
    parser.add_argument("--out", default=os.path.join(REPO, "benchmarks", "results"))
    parser.add_argument(
        "--runs",
        default=os.path.join(tempfile.gettempdir(), "plan_imagenet_runs"),
        help="where each plan's plan.json and plan.md go",
    )
    args = parser.parse_args()
    configs, topologies = args.configs.split(","), args.topologies.split(",")
    path = os.path.join(args.out, "plan_imagenet.json")
    results = load_results(path)
    command = "python benchmarks/plan_imagenet.py --python .venv-tpu/bin/python"
    for topology in topologies:  # a whole column first: the table fills evenly
        for name in configs:
            key = f"{name}/{topology}"
            if key in results:
                continue
            workdir = os.path.join(args.runs, name, topology)
            print(f"{key} ...", end=" ", flush=True)
            results[key] = plan_one(args.python, name, topology, workdir, args.timeout)
            print(cell(results[key]), flush=True)
            table = markdown(results, all_configs(), list(TOPOLOGIES), command)
            save_results(path, command, results, table)


if __name__ == "__main__":
    main()
