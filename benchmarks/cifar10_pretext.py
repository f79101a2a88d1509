"""The pretext tasks on real CIFAR-10 under the joint-embedding table's CPU budget.

  python benchmarks/cifar10_pretext.py [--methods rotation context ...] [--epochs 1]
      [--width 16] [--data ../shared/data/cifar10] [--runs runs/cifar10_pretext]
      [--out benchmarks/results/cifar10_pretext]

Each task is pretrained with ``launch/pretrain.py --config configs/<task>_cifar10.py`` (the
ResNets at ``--width``, MAE's ViT-Tiny/4 as configured) for ``--epochs`` epochs of 256, next to
two joint-embedding methods under the same budget (SimCLR and Barlow Twins, the same command
on their configs), and judged as the pretext papers judge features: the offline linear probe
and kNN (k = 20) on the frozen export at every depth (``--config.layer``: ResNet stages 1-3
and the pooled output, which is stage 4 average-pooled; ViT blocks 3/6/9/12 and the pooled
output), reporting the last (pooled) and the best layer.
Random-init encoders of both architectures are probed the same way. Every command runs in its
own process, as the README shows it; results go to OUT/cifar10_pretext.json and .md after every
program (each generative task's ``reconstructions.png`` to OUT/<task>_reconstructions.png),
and a finished (encoder, layer, program) is skipped when the script runs again.
"""

import argparse
import json
import os
import shutil
import sys

from cifar10_methods import REPO, commit, machine, read_json
from label_efficiency import timed

PRETEXT = ("rotation", "context", "jigsaw", "colorization", "inpainting", "mae")
JOINT = ("simclr", "barlow_twins")
LAYERS = {
    # A ResNet's pooled output is its average-pooled stage 4: probing "stage4" would repeat it.
    "resnet": ("stage1", "stage2", "stage3", "pooled"),
    "vit": ("block3", "block6", "block9", "block12", "pooled"),
}
VIT_METHODS = ("mae",)


def family(method: str) -> str:
    return "vit" if method in VIT_METHODS else "resnet"


def pretrain(method: str, args, steps: int) -> dict:
    workdir = os.path.join(args.runs, method)
    os.makedirs(workdir, exist_ok=True)
    overrides = {
        "data.name": "npz",
        "data.path": args.data,
        "total_steps": steps,
        "schedule.warmup_epochs": 0.1 * args.epochs,
        "evals.knn.every_steps": 0,
        "log.every_steps": 25,
        "ckpt.every_steps": 50,  # a stopped run loses at most 50 steps
    }
    if family(method) == "resnet":
        overrides["model.width"] = args.width
    command = [sys.executable, "launch/pretrain.py", f"--config=configs/{method}_cifar10.py"]
    command += [f"--workdir={workdir}"] + [f"--config.{k}={v}" for k, v in overrides.items()]
    code = commit()
    resumed = os.path.exists(os.path.join(workdir, "checkpoints"))
    cost = timed(command, os.path.join(workdir, "pretrain.log"))
    out = read_json(os.path.join(workdir, "results.json"))
    picture = out.get("reconstructions")
    if picture and os.path.exists(picture):  # the program's picture, kept with the results
        shutil.copy(picture, os.path.join(args.out, f"{method}_reconstructions.png"))
    return {
        "commit": code,
        "pretrain_s": cost["wall_s"],
        "pretrain_cpu_s": cost["cpu_s"],
        "resumed": resumed,  # True: the times cover only the part after the resume
        "final_loss": out["loss"],
        "images_per_sec": out.get("images_per_sec"),
        "reconstructions": out.get("reconstructions"),
        "command": " ".join(command),
    }


def probe(program: str, pretrained: str, workdir: str, layer: str, random_init: bool) -> dict:
    config = {"linear": "linear_probe", "knn": "knn"}[program]
    command = [
        sys.executable,
        f"launch/{config}.py",
        f"--config=configs/{config}.py",
        f"--workdir={workdir}",
        f"--config.pretrained={pretrained}",
        f"--config.random_init={random_init}",
        "--config.log.progress=False",
    ]
    if layer != "pooled":
        command.append(f"--config.layer={layer}")
    os.makedirs(os.path.dirname(workdir), exist_ok=True)  # a random-init row has no pretraining
    cost = timed(command, f"{workdir}.log")
    out = read_json(os.path.join(workdir, "results.json"))
    top1 = out["top1"] if program == "linear" else out["top1_k20"]
    return {"top1": top1, "feature_dim": out.get("feature_dim"), "seconds": cost["wall_s"],
            "cpu_s": cost["cpu_s"]}  # fmt: skip


def best(cells: dict, program: str):
    """(layer, top1) of the best layer of ``program`` among the finished cells."""
    scored = [(v["top1"], layer) for (p, layer), v in cells.items() if p == program]
    if not scored:
        return None, None
    top1, layer = max(scored)
    return layer, top1


def markdown(results: dict) -> str:
    s = results["settings"]
    lines = [
        f"CIFAR-10, {s['epochs']:g} epoch(s) of 256 ({s['steps']} steps) per method; ResNet-18 "
        f"width {s['width']} (CIFAR stem), MAE ViT-Tiny/4; offline linear probe and kNN k=20 "
        f"on the 10,000 test images at every layer; {s['machine']}.",
        "",
        "| encoder | linear, last | linear, best (layer) | kNN, last | kNN, best (layer) | "
        "final loss | pretrain CPU min |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, row in results["rows"].items():
        cells = {tuple(k.split("/")): v for k, v in row.get("cells", {}).items()}
        out = [name]
        for program in ("linear", "knn"):
            last = cells.get((program, "pooled"), {}).get("top1")
            layer, top1 = best(cells, program)
            out += [
                "–" if last is None else f"{last:.1f}%",
                "–" if top1 is None else f"{top1:.1f}% ({layer})",
            ]
        pre = row.get("pretrain", {})
        loss, cpu, wall = (pre.get(k) for k in ("final_loss", "pretrain_cpu_s", "pretrain_s"))
        # Rows from before CPU time was recorded give their wall time, marked as such.
        cost = f"{cpu / 60:.1f}" if cpu is not None else f"{wall / 60:.1f} (wall)" if wall else "–"
        out += ["–" if loss is None else f"{loss:.4g}", cost]
        lines.append("| " + " | ".join(out) + " |")
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--methods", nargs="+", default=[*PRETEXT, *JOINT])
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--layers", nargs="*", default=None, help="default: all of LAYERS")
    parser.add_argument("--data", default=os.path.join(REPO, "..", "shared", "data", "cifar10"))
    parser.add_argument("--runs", default="runs/cifar10_pretext")
    parser.add_argument("--out", default="benchmarks/results/cifar10_pretext")
    args = parser.parse_args()
    args.data, args.runs = os.path.abspath(args.data), os.path.abspath(args.runs)
    steps = max(1, round(args.epochs * (50_000 // 256)))
    settings = {
        "epochs": args.epochs,
        "steps": steps,
        "width": args.width,
        "machine": machine(),
        "data": "CIFAR-10 npz copy, 50,000 train / 10,000 test",
    }
    os.makedirs(args.out, exist_ok=True)
    json_path = os.path.join(args.out, "cifar10_pretext.json")
    results = read_json(json_path) if os.path.exists(json_path) else {"rows": {}}
    if results.get("settings", settings) != settings:
        raise SystemExit(f"{json_path} holds another setting ({results['settings']}); --out.")
    results["settings"] = settings

    def save():
        with open(json_path, "w") as f:
            json.dump(results, f, indent=2)
        with open(os.path.join(args.out, "cifar10_pretext.md"), "w") as f:
            f.write(markdown(results))

    encoders = [(m, m, False) for m in args.methods]
    resnet = next((m for m in args.methods if family(m) == "resnet"), None)
    vit = next((m for m in args.methods if family(m) == "vit"), None)
    encoders += [(f"random_init_{family(m)}", m, True) for m in (resnet, vit) if m]
    for name, method, random_init in encoders:
        row = results["rows"].setdefault(name, {"cells": {}})
        if not random_init and "pretrain" not in row:
            row["pretrain"] = pretrain(method, args, steps)
            save()
        for layer in args.layers or LAYERS[family(method)]:
            for program in ("linear", "knn"):
                key = f"{program}/{layer}"
                if key in row["cells"]:
                    continue
                workdir = os.path.join(args.runs, name, f"{program}_{layer}")
                pretrained = os.path.join(args.runs, method)
                row["cells"][key] = probe(program, pretrained, workdir, layer, random_init)
                save()
                print(name, key, row["cells"][key], flush=True)
    save()
    print(markdown(results))


if __name__ == "__main__":
    main()
