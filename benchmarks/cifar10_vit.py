"""The ViT-era methods on real CIFAR-10 with one ViT-Tiny/4 under one CPU budget.

  python benchmarks/cifar10_vit.py [--methods dino mae ...] [--epochs 3]
      [--data ../shared/data/cifar10] [--runs runs/cifar10_vit] [--out benchmarks/results]

Every method pretrains ViT-Tiny with 4-pixel patches on the 32-pixel images (64 patches,
[CLS] feature) for the same number of epochs of 256 images, with its CIFAR config: the
method's own ``configs/<method>_cifar10.py`` where it is a ViT recipe already, the ``vit``
variant (the authors' ViT recipe on ViT-Tiny/4) for DINO and MoCo v3. Its warm-up is scaled to
the run (``--warmup-fraction`` of it) and the DINO-family's last-layer freeze is dropped
(``SHORT_RUN``: it would last the whole run). Then the frozen export of the last checkpoint
is probed exactly as ``benchmarks/cifar10_methods.py`` does (``launch/linear_probe.py``,
offline protocol, and ``launch/knn.py``, 10,000 test images), next to a random-init
ViT-Tiny/4 (row ``random_init``). For the DINO family the teacher's entropy per epoch is read
from the run's metrics (``teacher_entropy``; ln K is the uniform output).

A method whose config is not in this checkout is skipped with a note. Results go to
OUT/cifar10_vit.{json,md,png}, rewritten after each method; a method whose row is there is
skipped unless ``--force``, so an interrupted sweep resumes. Minutes are wall-clock minutes of
the machine named in the settings (its cores are all the run's).
"""

import argparse
import json
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cifar10_methods as common  # noqa: E402

# method: its config (with variant), in the order of the table
METHODS = {
    "dino": "dino_cifar10.py:vit",
    "ibot": "ibot_cifar10.py",
    "dinov2": "dinov2_cifar10.py",
    "ijepa": "ijepa_cifar10.py",
    "msn": "msn_cifar10.py",
    "mae": "mae_cifar10.py",
    "simmim": "simmim_cifar10.py",
    "data2vec": "data2vec_cifar10.py",
    "mocov3": "mocov3_cifar10.py:vit",
    "lejepa": "lejepa_cifar10.py",
}
DINO_FAMILY = ("dino", "ibot", "dinov2")
# Fields a recipe states for hundreds of epochs that would last the whole short run.
SHORT_RUN = {name: {"method.freeze_last_layer_steps": 0} for name in DINO_FAMILY}
STEPS_PER_EPOCH = 50_000 // 256


def available(method: str) -> bool:
    return os.path.exists(os.path.join(common.REPO, "configs", METHODS[method].split(":")[0]))


def pretrain_command(method: str, args, workdir: str, total_steps: int) -> list[str]:
    overrides = {
        "data.name": "npz",
        "data.path": os.path.abspath(args.data),
        "total_steps": total_steps,
        "schedule.warmup_epochs": args.warmup_fraction * args.epochs,
        "evals.knn.every_steps": 0,
        "log.every_steps": 25,
        "ckpt.every_steps": total_steps,
        **SHORT_RUN.get(method, {}),
    }
    return [
        sys.executable,
        "launch/pretrain.py",
        f"--config=configs/{METHODS[method]}",
        f"--workdir={workdir}",
        *(f"--config.{key}={value}" for key, value in overrides.items()),
    ]


def entropy_per_epoch(workdir: str) -> list[float] | None:
    """The mean logged ``teacher_entropy`` of each epoch of the run (None: not logged)."""
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    rows = [r for r in rows if "teacher_entropy" in r]
    if not rows:
        return None
    epochs: dict[int, list[float]] = {}
    for r in rows:
        epochs.setdefault((r["step"] - 1) // STEPS_PER_EPOCH, []).append(r["teacher_entropy"])
    return [round(sum(v) / len(v), 4) for _, v in sorted(epochs.items())]


def out_dim(workdir: str) -> int | None:
    """K, the number of prototypes of the run's head, from the config of its checkpoint."""
    from ssl_jax.checkpoint import read_config  # noqa: PLC0415 (jax only when needed)

    return read_config(workdir)["method"].get("out_dim")


def pretrain_and_evaluate(method: str, args, total_steps: int) -> dict:
    workdir = common.new_workdir(os.path.abspath(os.path.join(args.runs, method)))
    command = pretrain_command(method, args, workdir, total_steps)
    code = common.commit()
    seconds = common.run(command, f"{workdir}/pretrain.log")
    out = common.read_json(f"{workdir}/results.json")
    row = {
        "commit": code,
        "config": METHODS[method],
        "pretrain_s": round(seconds, 1),
        "final_loss": out["loss"],
        "images_per_sec": out.get("images_per_sec"),
        "overrides": SHORT_RUN.get(method, {}),
        "teacher_entropy_per_epoch": entropy_per_epoch(workdir),
    }
    if row["teacher_entropy_per_epoch"]:
        row["out_dim"] = out_dim(workdir)
    evaluation = common.evaluate(workdir, workdir, random_init=False, linear_protocol="offline")
    row["commands"] = [" ".join(command)] + evaluation.pop("commands")
    row.update(evaluation)
    return row


def markdown(results: dict) -> str:
    s = results["settings"]
    lines = [
        f"CIFAR-10, ViT-Tiny/4 (32 px, 64 patches), {s['epochs']:g} epoch(s) = "
        f"{s['total_steps']} steps of 256, warm-up {s['warmup_fraction']:.0%} of the run; "
        f"{s['machine']}. Linear probe: offline protocol; kNN on the frozen [CLS] features.",
        "",
        "| method | config | linear top-1 | kNN k=20 | final loss | teacher entropy per "
        "epoch (ln K = uniform) | pretrain min | img/s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in (*METHODS, "random_init"):
        row = results["rows"].get(name)
        if row is None:
            continue
        entropy = row.get("teacher_entropy_per_epoch")
        if entropy:
            k = row.get("out_dim")
            entropy = " → ".join(f"{e:.2f}" for e in entropy) + (
                f" (ln K = {math.log(k):.2f})" if k else ""
            )
        loss, minutes, imgs = (
            row.get("final_loss"),
            row.get("pretrain_s"),
            row.get("images_per_sec"),
        )
        lines.append(
            f"| {name} | {row.get('config', '–')} | {common.pct(row.get('linear_top1'))} | "
            f"{common.pct(row.get('knn_top1_k20'))} | "
            f"{'–' if loss is None else f'{loss:.3f}'} | {entropy or '–'} | "
            f"{'–' if minutes is None else f'{minutes / 60:.1f}'} | "
            f"{'–' if imgs is None else f'{imgs:.0f}'} |"
        )
    if results.get("skipped"):
        lines += ["", "Not in this checkout (no config): " + ", ".join(results["skipped"]) + "."]
    return "\n".join(lines) + "\n"


def plot(results: dict, path: str) -> None:
    """Linear and kNN top-1 per method; the random-init ViT as dashed lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = results["rows"]
    names = [m for m in METHODS if m in rows]
    if not names:
        return
    fig, ax = plt.subplots(figsize=(10, 3.8))
    for i, (key, label) in enumerate((("linear_top1", "linear"), ("knn_top1_k20", "kNN k=20"))):
        xs = [j + (i - 0.5) * 0.4 for j in range(len(names))]
        bars = ax.bar(xs, [rows[n].get(key, 0.0) for n in names], 0.4, label=label)
        ax.bar_label(bars, fmt="%.1f", fontsize=7)
        if "random_init" in rows:
            ax.axhline(rows["random_init"][key], color=bars[0].get_facecolor(), ls="--", lw=1)
    ax.set_xticks(range(len(names)), names)
    ax.set_ylabel("CIFAR-10 test top-1 (%)")
    s = results["settings"]
    ax.set_title(f"ViT-Tiny/4, {s['epochs']:g} epoch(s) of pretraining (dashed: random init)")
    ax.legend(loc="lower right")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--epochs", type=float, default=3.0)
    parser.add_argument("--warmup-fraction", type=float, default=0.1)
    parser.add_argument(
        "--data", default=os.path.join(common.REPO, "..", "shared", "data", "cifar10")
    )
    parser.add_argument("--runs", default="runs/cifar10_vit")
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("--force", action="store_true", help="rerun methods already done")
    args = parser.parse_args()

    total_steps = max(1, round(args.epochs * STEPS_PER_EPOCH))
    settings = {
        "epochs": args.epochs,
        "total_steps": total_steps,
        "batch_size": 256,
        "warmup_fraction": args.warmup_fraction,
        "linear_protocol": "offline",
        "backbone": "vit_tiny, patch 4, 32 px",
        "data": "CIFAR-10 npz copy, 50,000 train / 10,000 test",
        "machine": common.machine(),
    }
    os.makedirs(args.out, exist_ok=True)
    json_path = os.path.join(args.out, "cifar10_vit.json")
    results = common.load_results(json_path, settings, args.force)
    results["skipped"] = [m for m in args.methods if not available(m)]

    def save():
        with open(json_path, "w") as f:
            json.dump(results, f, indent=2)
        with open(os.path.join(args.out, "cifar10_vit.md"), "w") as f:
            f.write(markdown(results))
        plot(results, os.path.join(args.out, "cifar10_vit.png"))

    for method in args.methods:
        if not available(method):
            print(f"{method}: no configs/{METHODS[method].split(':')[0]} here, skipped")
            continue
        if method in results["rows"] and not args.force:
            print(f"{method}: done already, skipped (--force reruns it)")
            continue
        results["rows"][method] = pretrain_and_evaluate(method, args, total_steps)
        save()
        print(markdown(results), flush=True)
    done = [m for m in METHODS if os.path.isdir(os.path.join(args.runs, m, "checkpoints"))]
    if done and ("random_init" not in results["rows"] or args.force):
        pretrained = os.path.abspath(os.path.join(args.runs, done[0]))  # the same ViT-Tiny/4
        workdir = os.path.abspath(os.path.join(args.runs, "random_init"))
        evaluation = common.evaluate(pretrained, workdir, True, "offline")
        results["rows"]["random_init"] = {"commit": common.commit(), **evaluation}
    save()
    print(markdown(results))


if __name__ == "__main__":
    main()
