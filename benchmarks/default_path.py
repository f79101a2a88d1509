"""The default data-parallel step at this checkout against a baseline checkout, side by side.

  git worktree add /tmp/baseline COMMIT
  python benchmarks/default_path.py --baseline /tmp/baseline [--cells simclr:16x64x8,...]
      [--steps 5] [--rounds 3] [--out benchmarks/results]

For each cell ``METHOD:WxBxD`` (configs/METHOD_cifar10.py, ResNet-18 width W, global batch B,
D fake CPU devices, the config's defaults: data parallel, float32, no accumulation) each
checkout compiles its own train step with its own ``benchmarks/throughput.py`` code
(``compile_step``), in a fresh process, alternately ``--rounds`` times. Per cell: whether the
two compiled programs are the same HLO (``compiled.as_text()`` without its source-file
tables and metadata: then nothing in the step changed, whatever the timings say), and each
side's median step time and images/second (median over rounds). Results: OUT/default_path.{json,md}.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
CELLS = ("simclr:16x64x1", "simclr:16x64x8", "byol:16x64x8", "dino:16x64x8")
CHILD = """
import hashlib, json, re, sys
sys.path.insert(0, "benchmarks")
import throughput
method, cell, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
run = throughput.compile_step(method, cell, False, "float32")
# Drop what names source files and lines (the two checkouts live in different folders).
lines, skip = [], False
for line in run.compiled.as_text().splitlines():
    if line in ("FileNames", "FunctionNames", "FileLocations", "StackFrames"):
        skip = True
    elif skip and line.startswith(("%", "ENTRY")):
        skip = False
    if not skip:
        lines.append(re.sub(r", metadata=\\{[^}]*\\}", "", line))
hlo = "\\n".join(lines)
holder = {"state": run.state}
def step():
    holder["state"], metrics = run.compiled(holder["state"], run.batch, None)
    float(metrics["loss"])
step_s = throughput.timed_steps(step, steps)
print(json.dumps({"hlo_sha256": hashlib.sha256(hlo.encode()).hexdigest(), "step_s": step_s,
                  "images_per_sec": run.config.data.batch_size / step_s,
                  "compile_s": run.compile_s}))
"""


def commit(repo: str) -> str:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True)
    dirty = subprocess.run(["git", "diff", "--quiet", "HEAD"], cwd=repo).returncode != 0
    return out.stdout.decode().strip() + ("+dirty" if dirty else "")


def child(repo: str, cell: str, steps: int) -> dict:
    method, shape = cell.split(":")
    env = {**os.environ, "PYTHONPATH": repo}
    out = subprocess.run(
        [sys.executable, "-c", CHILD, method, shape, str(steps)],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
    )
    if out.returncode:
        raise SystemExit(f"{repo} {cell} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def markdown(results: dict) -> str:
    s = results["settings"]
    rows = [
        "| cell | same HLO | baseline ms/step | this ms/step | this / baseline img/s |",
        "|---|---|---|---|---|",
    ]
    for cell, r in results["cells"].items():
        base, ours = r["baseline"], r["this"]
        rows.append(
            f"| {cell} | {'yes' if r['same_hlo'] else 'no'} | {1e3 * base['step_s']:.1f} | "
            f"{1e3 * ours['step_s']:.1f} | {ours['images_per_sec'] / base['images_per_sec']:.3f} |"
        )
    return (
        "# The default data-parallel step: this checkout vs a baseline\n\n"
        f"Command: `python benchmarks/default_path.py --baseline <checkout of "
        f"{s['baseline_commit']}>`; this checkout {s['this_commit']}; {s['rounds']} alternating "
        f"rounds of {s['steps']} timed steps, median; {s['machine']}, load average "
        f"{s.get('load_average_at_start', 'not recorded')} at the start (step times on a "
        "loaded machine are noise; the HLO comparison is exact).\n\n" + "\n".join(rows) + "\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--baseline", required=True, help="a checkout of the baseline commit")
    parser.add_argument("--cells", default=",".join(CELLS))
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default=os.path.join(REPO, "benchmarks", "results"))
    args = parser.parse_args()
    if not os.path.isfile(os.path.join(args.baseline, "benchmarks", "throughput.py")):
        raise SystemExit(f"--baseline {args.baseline}: no benchmarks/throughput.py there.")
    sides = {"baseline": os.path.abspath(args.baseline), "this": REPO}
    results = {
        "settings": {
            "steps": args.steps,
            "rounds": args.rounds,
            "baseline_commit": commit(sides["baseline"]),
            "this_commit": commit(REPO),
            "machine": f"{os.cpu_count()} CPU cores",
            # Timings on a shared machine are noise; the HLO comparison is not.
            "load_average_at_start": round(os.getloadavg()[0], 2),
        },
        "cells": {},
    }
    for cell in args.cells.split(","):
        runs = {side: [] for side in sides}
        for _ in range(args.rounds):
            for side, repo in sides.items():
                runs[side].append(child(repo, cell, args.steps))
        row = {
            side: {
                "step_s": statistics.median(r["step_s"] for r in rs),
                "images_per_sec": statistics.median(r["images_per_sec"] for r in rs),
                "rounds_step_s": [r["step_s"] for r in rs],
                "hlo_sha256": rs[0]["hlo_sha256"],
            }
            for side, rs in runs.items()
        }
        row["same_hlo"] = row["baseline"]["hlo_sha256"] == row["this"]["hlo_sha256"]
        results["cells"][cell] = row
        print(cell, "same HLO" if row["same_hlo"] else "HLO differs", flush=True)
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "default_path.json"), "w") as f:
            json.dump(results, f, indent=1)
        with open(os.path.join(args.out, "default_path.md"), "w") as f:
            f.write(markdown(results))


if __name__ == "__main__":
    main()
