"""Every joint-embedding method pretrained on real CIFAR-10 under one small CPU budget.

  python benchmarks/cifar10_methods.py [--methods simclr byol ...] [--epochs 1] [--width 16]
      [--data ../shared/data/cifar10] [--runs runs/cifar10_methods] [--out benchmarks/results]

For each method it runs the user-facing programs, each in its own process, exactly as the
README shows them: ``launch/pretrain.py --config configs/<method>_cifar10.py`` on the local
CIFAR-10 copy (npz source) with the backbone width and the number of epochs replaced, then
``launch/linear_probe.py`` and ``launch/knn.py`` on the frozen export of the last checkpoint,
evaluated on the 10,000 test images. A random-init encoder of the same architecture is probed
the same way (row ``random_init``). Everything else is the method's CIFAR recipe, except the
few DINO fields listed in ``SHORT_RUN_OVERRIDES`` that are stated for a 1,000-epoch run and
would otherwise freeze a part of the method, or keep the exported teacher random, for the
whole short run.
``--linear-protocol`` picks the linear probe's protocol (``configs/linear_probe.py``:
``offline``, the default, or ``augmented``). Results files without the setting hold rows of
``sgd_features``, the only protocol before issue #8, since removed from the library: they are
still read and rendered, but not resumed (``--force`` starts the file over).

Results go to OUT/cifar10_methods.json (commands, settings, every number),
OUT/cifar10_methods.md (the table) and OUT/cifar10_methods.png (bars of the test accuracies);
all are rewritten after each method, and a method
whose row is complete is skipped unless --force, so an interrupted sweep resumes.
``--set KEY=VALUE ...`` changes config fields for every method of the sweep (recorded in the
settings and each row's overrides); use it with its own --out and --runs.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import time

METHODS = (
    "simclr",
    "mocov2",
    "mocov3",
    "byol",
    "simsiam",
    "barlow_twins",
    "vicreg",
    "swav",
    "dino",
)

# Fields of the CIFAR recipes, tuned for 1,000 epochs, that would switch a part of the method
# off (or keep it frozen) for the whole short run, or keep the exported network random.
SHORT_RUN_OVERRIDES = {
    # Teacher momentum 0.9995 keeps the exported teacher ~90% random after 200 steps, and
    # the last layer is frozen for the first epoch, i.e. for the whole run.
    "dino": {"method.base_momentum": 0.99, "method.freeze_last_layer_steps": 0},
    # SwAV runs its recipe unchanged: prototypes frozen for its first 2 epochs (the whole
    # run), no queue (from epoch 50). Scaling both to the run (no freeze, queue from step
    # 10) was this table's choice until issue #14: it sent SwAV to the uniform output by
    # step 125, and with the queue alone (lr 0.15) or without it (lr 0.6) it still drifted
    # there; with frozen prototypes ours and the PyTorch reference both learn.
}

PROBE_DIRS = {"linear": "probe", "knn": "knn"}  # workdir subfolder of each downstream program
REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))


def pretrain_command(method: str, args, workdir: str, total_steps: int) -> list[str]:
    overrides = {
        "data.name": "npz",
        "data.path": os.path.abspath(args.data),
        "model.width": args.width,
        "total_steps": total_steps,
        "schedule.warmup_epochs": args.warmup_fraction * args.epochs,
        "evals.knn.every_steps": 0,
        "log.every_steps": 25,
        "ckpt.every_steps": total_steps,
        **SHORT_RUN_OVERRIDES.get(method, {}),
        **extra_overrides(args),
    }
    command = [sys.executable, "launch/pretrain.py", f"--config=configs/{method}_cifar10.py"]
    command.append(f"--workdir={workdir}")
    command += [f"--config.{key}={value}" for key, value in overrides.items()]
    return command


def extra_overrides(args) -> dict[str, str]:
    """``--set KEY=VALUE`` pairs: config fields changed for every method of the sweep."""
    pairs = dict(item.split("=", 1) for item in args.set)
    return {key.removeprefix("config."): value for key, value in pairs.items()}


def probe_commands(
    pretrained: str, workdir: str, random_init: bool, linear_protocol: str
) -> dict[str, list[str]]:
    flags = [f"--config.pretrained={pretrained}", f"--config.random_init={random_init}"]
    return {
        "linear": [
            sys.executable,
            "launch/linear_probe.py",
            "--config=configs/linear_probe.py",
            f"--workdir={workdir}/{PROBE_DIRS['linear']}",
            *flags,
            f"--config.probe.protocol={linear_protocol}",
        ],
        "knn": [
            sys.executable,
            "launch/knn.py",
            "--config=configs/knn.py",
            f"--workdir={workdir}/{PROBE_DIRS['knn']}",
            *flags,
        ],
    }


def run(command: list[str], log_path: str) -> float:
    """Run ``command`` in the repository root, its output to ``log_path``; wall seconds."""
    print("$", " ".join(command), flush=True)
    t0 = time.perf_counter()
    with open(log_path, "w") as log:
        proc = subprocess.run(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        with open(log_path) as log:
            tail = log.read()[-3000:]
        raise SystemExit(f"{command[1]} failed (exit {proc.returncode}); log {log_path}:\n{tail}")
    return seconds


def read_json(path: str) -> dict:
    with open(path) as f:
        return json.load(f)


def evaluate(pretrained: str, workdir: str, random_init: bool, linear_protocol: str) -> dict:
    os.makedirs(workdir, exist_ok=True)
    row = {}
    for name, command in probe_commands(pretrained, workdir, random_init, linear_protocol).items():
        seconds = run(command, f"{workdir}/{name}.log")
        out = read_json(f"{workdir}/{PROBE_DIRS[name]}/results.json")
        row[f"{name}_s"] = round(seconds, 1)
        if name == "linear":
            row.update(linear_top1=out["top1"], linear_top5=out["top5"])
            row.update({k: out[k] for k in ("l2", "val_top1") if k in out})
        else:
            row.update({f"knn_{k}": v for k, v in out.items() if k.startswith("top1_k")})
        row["commands"] = row.get("commands", []) + [" ".join(command)]
    return row


def machine() -> str:
    return f"{os.cpu_count()} CPU cores ({platform.processor() or platform.machine()})"


def new_workdir(workdir: str) -> str:
    """Create ``workdir`` for a fresh run; refuse one that already holds checkpoints."""
    if os.path.exists(os.path.join(workdir, "checkpoints")):
        raise SystemExit(f"{workdir} already holds checkpoints: remove it or pass --runs.")
    os.makedirs(workdir, exist_ok=True)
    return workdir


def load_results(json_path: str, settings: dict, force: bool) -> dict:
    """The results file's contents for ``settings`` (empty rows for a new file, or with
    ``force`` when its settings differ; an error without ``force``)."""
    results = read_json(json_path) if os.path.exists(json_path) else {"rows": {}}
    # Files written before the protocol could be chosen hold sgd_features rows.
    saved = {"linear_protocol": "sgd_features", **results.get("settings", settings)}
    if saved != settings:
        if not force:
            raise SystemExit(
                f"{json_path} holds results for other settings ({results['settings']}); "
                "pass --force to start over or --out for another folder."
            )
        results = {"rows": {}}
    results["settings"] = settings
    return results


def commit() -> str:
    """The checked-out commit, with ``+dirty`` when tracked files differ from it."""
    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(["git", "diff", "--quiet", "HEAD"], cwd=REPO).returncode != 0
    return (head or "unknown") + ("+dirty" if dirty else "")


def pretrain_and_evaluate(method: str, args, total_steps: int) -> dict:
    workdir = new_workdir(os.path.abspath(os.path.join(args.runs, method)))
    command = pretrain_command(method, args, workdir, total_steps)
    code = commit()  # before the run: the code the run imported
    seconds = run(command, f"{workdir}/pretrain.log")
    out = read_json(f"{workdir}/results.json")
    row = {
        "commit": code,
        "pretrain_s": round(seconds, 1),
        "final_loss": out["loss"],
        "embedding_std": out.get("embedding_std"),
        "images_per_sec": out.get("images_per_sec"),
        "overrides": {**SHORT_RUN_OVERRIDES.get(method, {}), **extra_overrides(args)},
        "last_metrics": {k: v for k, v in out.items() if k not in ("loss", "images_per_sec")},
    }
    evaluation = evaluate(workdir, workdir, random_init=False, linear_protocol=args.linear_protocol)
    row["commands"] = [" ".join(command)] + evaluation.pop("commands")
    row.update(evaluation)
    return row


def pct(value) -> str:
    return "–" if value is None else f"{value:.1f}%"  # the programs report percentages


def markdown(results: dict) -> str:
    s = results["settings"]
    lines = [
        f"CIFAR-10, ResNet-18 (CIFAR stem) width {s['width']}, {s['epochs']} epoch(s) = "
        f"{s['total_steps']} steps of 256, warm-up {s['warmup_fraction']:.0%} of the run, "
        f"each method's `configs/<method>_cifar10.py` recipe otherwise; {s['machine']}. "
        f"Linear probe protocol: {s.get('linear_protocol', 'sgd_features')}.",
        "",
        "| method | linear top-1 / top-5 | kNN k=20 | kNN k=200 | final loss | "
        "embedding std | pretrain min | img/s | changed besides width/epochs |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name in (*METHODS, "random_init"):
        row = results["rows"].get(name)
        if row is None:
            continue
        loss = row.get("final_loss")
        std = row.get("embedding_std")
        imgs = row.get("images_per_sec")
        minutes = row.get("pretrain_s")
        changed = ", ".join(f"{k}={v}" for k, v in row.get("overrides", {}).items()) or "–"
        lines.append(
            f"| {name} | {pct(row['linear_top1'])} / {pct(row['linear_top5'])} | "
            f"{pct(row.get('knn_top1_k20'))} | {pct(row.get('knn_top1_k200'))} | "
            f"{'–' if loss is None else f'{loss:.3f}'} | "
            f"{'–' if std is None else f'{std:.4f}'} | "
            f"{'–' if minutes is None else f'{minutes / 60:.1f}'} | "
            f"{'–' if imgs is None else f'{imgs:.0f}'} | {changed} |"
        )
    return "\n".join(lines) + "\n"


def plot(results: dict, path: str) -> None:
    """Bars of linear and kNN (k=20) top-1 per method; the random-init encoder as lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = results["rows"]
    names = [m for m in METHODS if m in rows]
    if not names:
        return
    fig, ax = plt.subplots(figsize=(9, 3.8))
    width = 0.4
    for i, (key, label) in enumerate((("linear_top1", "linear"), ("knn_top1_k20", "kNN k=20"))):
        xs = [j + (i - 0.5) * width for j in range(len(names))]
        bars = ax.bar(xs, [rows[n].get(key, 0.0) for n in names], width, label=label)
        ax.bar_label(bars, fmt="%.1f", fontsize=7)
        if "random_init" in rows:
            ax.axhline(rows["random_init"][key], color=bars[0].get_facecolor(), ls="--", lw=1)
    ax.set_xticks(range(len(names)), names)
    ax.set_ylabel("CIFAR-10 test top-1 (%)")
    s = results["settings"]
    ax.set_title(
        f"ResNet-18 width {s['width']}, {s['epochs']:g} epoch(s) of pretraining "
        "(dashed: random-init encoder)"
    )
    ax.legend(loc="lower right")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--warmup-fraction", type=float, default=0.1)
    parser.add_argument("--data", default=os.path.join(REPO, "..", "shared", "data", "cifar10"))
    parser.add_argument("--runs", default="runs/cifar10_methods")
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("--force", action="store_true", help="rerun methods already done")
    parser.add_argument("--skip-random", action="store_true")
    parser.add_argument(
        "--linear-protocol",
        default="offline",
        choices=("offline", "augmented"),
        help="config.probe.protocol of the linear probe",
    )
    parser.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="config fields to change for every method, e.g. augment.jitter_prob=0.0",
    )
    args = parser.parse_args()
    if any("=" not in item for item in args.set):
        parser.error(f"--set takes KEY=VALUE pairs, got {args.set}")

    steps_per_epoch = 50_000 // 256
    total_steps = max(1, round(args.epochs * steps_per_epoch))
    settings = {
        "epochs": args.epochs,
        "width": args.width,
        "total_steps": total_steps,
        "batch_size": 256,
        "warmup_fraction": args.warmup_fraction,
        "linear_protocol": args.linear_protocol,
        **({"extra_overrides": extra_overrides(args)} if args.set else {}),
        "data": "CIFAR-10 npz copy, 50,000 train / 10,000 test",
        "machine": machine(),
    }
    os.makedirs(args.out, exist_ok=True)
    json_path = os.path.join(args.out, "cifar10_methods.json")
    results = load_results(json_path, settings, args.force)

    def save():
        with open(json_path, "w") as f:
            json.dump(results, f, indent=2)
        with open(os.path.join(args.out, "cifar10_methods.md"), "w") as f:
            f.write(markdown(results))
        plot(results, os.path.join(args.out, "cifar10_methods.png"))

    for method in args.methods:
        if method in results["rows"] and not args.force:
            print(f"{method}: done already, skipped (--force reruns it)")
            continue
        results["rows"][method] = pretrain_and_evaluate(method, args, total_steps)
        save()
        print(markdown(results), flush=True)
    if not args.skip_random and ("random_init" not in results["rows"] or args.force):
        # The random encoder takes its architecture from a run of this --runs folder (a
        # --force rerun of one method has only that one there).
        done = [m for m in METHODS if os.path.isdir(os.path.join(args.runs, m, "checkpoints"))]
        if done:
            pretrained = os.path.abspath(os.path.join(args.runs, done[0]))
            workdir = os.path.abspath(os.path.join(args.runs, "random_init"))
            evaluation = evaluate(pretrained, workdir, True, args.linear_protocol)
            row = {"commit": commit(), **evaluation}
            results["rows"]["random_init"] = row
    save()
    print(markdown(results))


if __name__ == "__main__":
    main()
