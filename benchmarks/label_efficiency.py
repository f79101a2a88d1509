"""The label-efficiency study: how many labels a pretrained encoder saves on CIFAR-10.

  python benchmarks/label_efficiency.py [--methods barlow_twins mocov3] [--epochs 5]
      [--fractions 0.01 0.1 1.0] [--finetune-epochs 60 30 5] [--finetune-head bn_linear]
      [--data ../shared/data/cifar10]
      [--runs runs/label_efficiency] [--out benchmarks/results/label_efficiency]

Every number comes from the user-facing programs, each in its own process, as the README
shows them. First each method is pretrained with ``launch/pretrain.py --config
configs/<method>_cifar10.py`` (ResNet-18 width ``--width``, ``--epochs`` epochs of 256
images, warm-up 10% of the run, the recipe otherwise). Then, for each of those encoders and a
random-init encoder of the same architecture (``--config.random_init=True``: for fine-tuning
that is training from scratch), the cells:

- ``linear_<f>``: ``launch/linear_probe.py``, offline protocol (L-BFGS logistic regression,
  L2 chosen on a validation split of the labelled subset), on a class-balanced fraction ``f``
  of the 50,000 training labels (``data.label_fraction``; the same images for every encoder);
- ``finetune_<f>``: ``launch/finetune.py`` (SimCLR's semi-supervised recipe) on the same
  fractions for ``--finetune-epochs`` epochs each, the step chosen on 10% of the subset, with
  the ``--finetune-head`` head (default ``bn_linear``: SimCLR's zero-initialised linear head
  after an affine-free BatchNorm, which keeps the first steps of encoders whose features have
  very different norms on the same footing); a row made with another head is run again;
- ``few_shot``: ``launch/few_shot.py``, 5-way and all-way, 1/5/10/25 shots, 600 episodes;
- ``cluster``: ``launch/cluster.py``, k-means with 10 clusters on the test features.

Each cell records its wall and CPU seconds (the program's process, user + system: the CPU
time does not grow when other work shares the machine, the wall time does) and its command.
Results go to OUT/label_efficiency.json, .md (the table) and .png (test accuracy against the
number of labels), rewritten after every cell; a finished cell is skipped when the script
runs again, and an interrupted pretraining resumes from its newest checkpoint, so a stopped
study loses at most one cell. Cells run cheapest first (probes, few-shot, clustering, then
fine-tuning from the smallest fraction up).
"""

import argparse
import json
import os
import resource
import sys
import time

from cifar10_methods import REPO, commit, machine, read_json, run

RANDOM = "random_init"


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(command: list[str], log_path: str) -> dict:
    """Run ``command`` (``cifar10_methods.run``); its wall and CPU seconds."""
    cpu0 = cpu_seconds()
    wall = run(command, log_path)
    return {"wall_s": round(wall, 1), "cpu_s": round(cpu_seconds() - cpu0, 1)}


def pretrain(method: str, args, steps: int) -> dict:
    workdir = os.path.join(args.runs, method)
    os.makedirs(workdir, exist_ok=True)
    resumed = os.path.exists(os.path.join(workdir, "checkpoints"))
    overrides = {
        "data.name": "npz",
        "data.path": args.data,
        "model.width": args.width,
        "total_steps": steps,
        "schedule.warmup_epochs": 0.1 * args.epochs,
        "evals.knn.every_steps": 0,
        "log.every_steps": 25,
        "ckpt.every_steps": 195,  # about one epoch: a stopped run loses at most that
    }
    command = [sys.executable, "launch/pretrain.py", f"--config=configs/{method}_cifar10.py"]
    command += [f"--workdir={workdir}"] + [f"--config.{k}={v}" for k, v in overrides.items()]
    code = commit()
    cost = timed(command, os.path.join(workdir, f"pretrain_{int(time.time())}.log"))
    out = read_json(os.path.join(workdir, "results.json"))
    if "interrupted_at" in out:
        raise SystemExit(f"pretraining {method} was interrupted at {out['interrupted_at']}")
    return {
        "commit": code,
        **cost,
        "resumed": resumed,  # True: the times cover only the part after the resume
        "final_loss": out["loss"],
        "images_per_sec": out.get("images_per_sec"),
        "command": " ".join(command),
    }


def cell_command(cell: str, encoder: str, pretrained: str, workdir: str, args) -> list[str]:
    flags = [
        f"--workdir={workdir}",
        f"--config.pretrained={pretrained}",
        f"--config.random_init={encoder == RANDOM}",
    ]
    kind, _, fraction = cell.partition("_")
    if kind == "linear":
        flags.append(f"--config.data.label_fraction={fraction}")
    elif kind == "finetune":
        epochs = dict(zip(args.fractions, args.finetune_epochs, strict=True))[float(fraction)]
        flags += [
            f"--config.finetune.head={args.finetune_head}",
            f"--config.data.label_fraction={fraction}",
            f"--config.epochs={epochs}",
            "--config.data.name=npz",
            f"--config.data.path={args.data}",
            "--config.log.progress=False",
        ]
    program = {"linear": "linear_probe", "few": "few_shot"}.get(kind, kind)
    return [sys.executable, f"launch/{program}.py", f"--config=configs/{program}.py", *flags]


def numbers(cell: str, out: dict) -> dict:
    """The numbers of a cell's ``results.json`` that the study keeps."""
    if cell.startswith("few_shot"):
        return {k: v for k, v in out.items() if k.startswith(("proto_", "logreg_"))}
    if cell == "cluster":
        return {k: out[k] for k in ("acc", "nmi", "ari")}
    keep = ("top1", "top5", "num_labelled", "num_train", "l2", "val_top1", "chosen_epoch")
    return {k: out[k] for k in keep if k in out}


def cells(args) -> list[str]:
    """Cheapest first, so a stopped study has the most cells."""
    fractions = [f"{f:g}" for f in sorted(args.fractions)]
    return (
        [f"linear_{f}" for f in fractions]
        + ["few_shot", "cluster"]
        + [f"finetune_{f}" for f in fractions]
    )


def labels(cell: str) -> int:
    return round(float(cell.partition("_")[2]) * 50_000)


def pct(value) -> str:
    return "–" if value is None else f"{value:.1f}"


def minutes(row: dict) -> str:
    return f"{row['wall_s'] / 60:.1f} / {row['cpu_s'] / 60:.1f}"


def markdown(results: dict) -> str:
    s = results["settings"]
    encoders = [*s["methods"], RANDOM]
    head = [
        f"CIFAR-10 (50,000 train / 10,000 test), ResNet-18 width {s['width']} (CIFAR stem); "
        f"encoders pretrained {s['epochs']:g} epochs of 256 with their "
        f"`configs/<method>_cifar10.py` recipe; {s['machine']}. Test top-1 (%); fine-tuning "
        f"with `finetune.head={s.get('finetune_head', 'linear')}`; each cell's wall / CPU "
        "minutes below the table.",
        "",
    ]
    rows = results["rows"]
    all_cells = cells(argparse.Namespace(fractions=s["fractions"]))
    columns = []
    for cell in all_cells:
        if cell == "few_shot":
            columns += [
                (cell, f"logreg_allway_{k}shot", f"few-shot all-way {k}-shot ({10 * k})")
                for k in (1, 5, 10, 25)
            ]
        elif cell == "cluster":
            columns += [(cell, "acc", "k-means acc (0)"), (cell, "nmi", "k-means NMI")]
        else:
            kind = "linear probe" if cell.startswith("linear") else "fine-tune"
            columns.append(
                (
                    cell,
                    "top1",
                    f"{kind} {float(cell[cell.index('_') + 1 :]):.0%} ({labels(cell):,})",
                )
            )
    lines = head + ["| encoder | " + " | ".join(c[2] for c in columns) + " |"]
    lines.append("|---" * (len(columns) + 1) + "|")
    for enc in encoders:
        vals = [pct(rows.get(enc, {}).get(cell, {}).get(key)) for cell, key, _ in columns]
        lines.append(f"| {enc} | " + " | ".join(vals) + " |")
    lines += [
        "",
        "Compute (wall / CPU minutes; CPU = user + system of the program's process):",
        "",
        "| encoder | pretraining | " + " | ".join(all_cells) + " |",
        "|---" * (len(all_cells) + 2) + "|",
    ]
    for enc in encoders:
        pre = results["pretrain"].get(enc)
        cost = [minutes(rows[enc][c]) if c in rows.get(enc, {}) else "–" for c in all_cells]
        lines.append(f"| {enc} | {minutes(pre) if pre else '–'} | " + " | ".join(cost) + " |")
    lines += [
        "",
        "In parentheses: the labelled training images a cell used (few-shot: per "
        "episode, mean of 600 episodes with 15 test queries per class).",
    ]
    return "\n".join(lines) + "\n"


def plot(results: dict, path: str) -> None:
    """Test top-1 against the number of labels: probe (solid), fine-tune (dashed), few-shot
    all-way logistic regression (dotted); k-means accuracy with no label on the left."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s, rows = results["settings"], results["rows"]
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4.2), width_ratios=(3, 1))
    for i, enc in enumerate([*s["methods"], RANDOM]):
        color = f"C{i}"
        row = rows.get(enc, {})
        protocols = (("linear", "-o", "linear probe"), ("finetune", "--s", "fine-tune"))
        for kind, style, name in protocols:
            pts = sorted((labels(c), v["top1"]) for c, v in row.items() if c.startswith(kind))
            if pts:
                ax.plot(*zip(*pts, strict=True), style, color=color, label=f"{enc}, {name}")
        fs = row.get("few_shot", {})
        pts = [
            (10 * k, fs[f"logreg_allway_{k}shot"])
            for k in (1, 5, 10, 25)
            if f"logreg_allway_{k}shot" in fs
        ]
        if pts:
            ax.plot(*zip(*pts, strict=True), ":^", color=color, label=f"{enc}, few-shot all-way")
        if "cluster" in row:
            bx.bar(i, row["cluster"]["acc"], color=color)
            bx.text(
                i,
                row["cluster"]["acc"],
                f"{row['cluster']['acc']:.1f}",
                ha="center",
                va="bottom",
                fontsize=8,
            )
    ax.set_xscale("log")
    ax.set_xlabel("labelled training images")
    ax.set_ylabel("CIFAR-10 test top-1 (%)")
    ax.set_title(f"ResNet-18 width {s['width']}, {s['epochs']:g} pretraining epochs")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    names = [*s["methods"], RANDOM]
    bx.set_xticks(range(len(names)), names, rotation=30, fontsize=8)
    bx.set_title("k-means, no labels (acc %)")
    bx.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--methods", nargs="+", default=["barlow_twins", "mocov3"])
    parser.add_argument("--epochs", type=float, default=5.0, help="pretraining epochs")
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.01, 0.1, 1.0])
    parser.add_argument(
        "--finetune-epochs",
        type=int,
        nargs="+",
        default=[60, 30, 5],
        help="fine-tuning epochs per fraction (SimCLR: 60 on 1%%, 30 on 10%%)",
    )
    parser.add_argument("--finetune-head", default="bn_linear", help="finetune.head")
    parser.add_argument("--data", default=os.path.join(REPO, "..", "shared", "data", "cifar10"))
    parser.add_argument("--runs", default="runs/label_efficiency")
    parser.add_argument("--out", default="benchmarks/results/label_efficiency")
    parser.add_argument("--only", nargs="*", default=None, help="cells to run (default: all)")
    args = parser.parse_args()
    if len(args.finetune_epochs) != len(args.fractions):
        parser.error("--finetune-epochs takes one number per --fractions entry")
    if not all(0 < f <= 1 for f in args.fractions):
        parser.error(f"--fractions must lie in (0, 1], got {args.fractions}")
    args.data, args.runs = os.path.abspath(args.data), os.path.abspath(args.runs)

    steps = max(1, round(args.epochs * 50_000 // 256))
    settings = {
        "methods": args.methods,
        "epochs": args.epochs,
        "pretrain_steps": steps,
        "width": args.width,
        "fractions": args.fractions,
        "finetune_epochs": dict(zip(map(str, args.fractions), args.finetune_epochs, strict=True)),
        "finetune_head": args.finetune_head,
        "data": "CIFAR-10 npz copy, 50,000 train / 10,000 test",
        "machine": machine(),
    }
    os.makedirs(args.out, exist_ok=True)
    json_path = os.path.join(args.out, "label_efficiency.json")
    results = read_json(json_path) if os.path.exists(json_path) else {}
    saved = results.get("settings")
    if saved and {k: saved[k] for k in ("methods", "epochs", "width")} != {
        k: settings[k] for k in ("methods", "epochs", "width")
    }:
        raise SystemExit(f"{json_path} holds another study ({saved}); pass another --out.")
    results = {"settings": settings, "pretrain": {}, "rows": {}, **results}
    results["settings"] = settings

    def save():
        with open(json_path, "w") as f:
            json.dump(results, f, indent=2)
        with open(os.path.join(args.out, "label_efficiency.md"), "w") as f:
            f.write(markdown(results))
        plot(results, os.path.join(args.out, "label_efficiency.png"))

    for method in args.methods:
        if method not in results["pretrain"]:
            results["pretrain"][method] = pretrain(method, args, steps)
            save()
    todo = [c for c in cells(args) if args.only is None or c in args.only]
    for cell in todo:
        for enc in [*args.methods, RANDOM]:
            row = results["rows"].setdefault(enc, {})
            head = args.finetune_head if cell.startswith("finetune") else None
            if cell in row and row[cell].get("head") == head:
                continue
            pretrained = os.path.join(args.runs, args.methods[0] if enc == RANDOM else enc)
            workdir = os.path.join(args.runs, enc, cell if head is None else f"{cell}_{head}")
            command = cell_command(cell, enc, pretrained, workdir, args)
            os.makedirs(workdir, exist_ok=True)
            code = commit()
            cost = timed(command, os.path.join(workdir, "program.log"))
            out = read_json(os.path.join(workdir, "results.json"))
            row[cell] = {**numbers(cell, out), **cost, "commit": code, "command": " ".join(command)}
            if head is not None:
                row[cell]["head"] = head
            save()
            print(f"{enc} {cell}: {numbers(cell, out)} ({cost})", flush=True)
    save()
    print(markdown(results))


if __name__ == "__main__":
    main()
