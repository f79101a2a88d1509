"""Distillation on CIFAR-10: how much of a self-supervised teacher a small student keeps.

  python benchmarks/distillation.py [--teacher runs/label_efficiency/mocov3]
      [--methods seed mse mse_clip cosine clusterfit kd] [--student-width 8] [--epochs 2]
      [--ssl-method mocov3] [--data ../shared/data/cifar10] [--runs runs/distillation]
      [--out benchmarks/results/distillation]

Every number comes from the user-facing programs, each in its own process. Rows:

- ``teacher``: the export of ``--teacher`` (any pretraining run; by default the MoCo v3
  ResNet-18 of width 16 that the label-efficiency study pretrained for 5 epochs);
- ``<method>``: ``launch/distill.py --config configs/distill_cifar10.py:<method>`` with the
  student ResNet-18 at ``--student-width``, ``--epochs`` epochs of 256 images, every method
  with the config's optimizer (SEED's SGD). A run that stops on a non-finite loss is a
  ``diverged`` row (its error in the table), not a failure of the script;
- ``mse_clip``: ``mse`` with ``optim.grad_clip_norm=1.0`` (the regression of raw features
  diverges at SEED's learning rate when the teacher's features are large);
- ``kd`` needs a teacher with a categorical head: the teacher fine-tuned on 10% of the labels
  (``launch/finetune.py``, ``--kd-teacher-epochs`` 30, the ``kd_teacher`` row). That row is
  therefore not label-free: 5,000 labels reach its student through the teacher's logits;
- ``ssl_student``: the student architecture trained by ``--ssl-method``'s own recipe
  (``configs/<method>_cifar10.py``) for the CPU time of the mean distillation run: its steps
  are (that CPU time - startup) / CPU per step, both measured by two calibration runs of 20
  and 60 steps;
- ``random_init``: the student architecture freshly initialised.

Each encoder is judged by the offline linear probe and kNN (k = 20) on the 10,000 test images
(``cifar10_methods.evaluate``). The gap closed by a distilled student is
(student - ssl_student) / (teacher - ssl_student), per protocol. Each row records its wall and
CPU seconds (CPU: user + system of the program's process). Results go to
OUT/distillation.json and .md after every program; a finished row is skipped when the script
runs again and an interrupted run resumes from its newest checkpoint.
"""

import argparse
import json
import os
import sys

from cifar10_methods import REPO, commit, evaluate, machine, read_json
from label_efficiency import minutes, pct, timed

STEPS_PER_EPOCH = 50_000 // 256
CALIBRATION = (20, 60)
# Rows that run a method with other settings: name -> (config variant, overrides).
VARIANTS = {"mse_clip": ("mse", {"optim.grad_clip_norm": 1.0})}


def train_overrides(args, steps: int, warmup_epochs: float) -> dict:
    return {
        "data.name": "npz",
        "data.path": args.data,
        "model.width": args.student_width,
        "total_steps": steps,
        "schedule.warmup_epochs": warmup_epochs,
        "evals.knn.every_steps": 0,
        "log.every_steps": 25,
        "log.progress": False,
        "ckpt.every_steps": STEPS_PER_EPOCH,  # a stopped run loses at most an epoch
    }


def train(command: list[str], workdir: str, overrides: dict) -> dict:
    """Run a training program into ``workdir``; its cost, final loss and command."""
    os.makedirs(workdir, exist_ok=True)
    command = command + [f"--workdir={workdir}"]
    command += [f"--config.{k}={v}" for k, v in overrides.items()]
    code = commit()
    log = os.path.join(workdir, f"train_{len(os.listdir(workdir))}.log")
    try:
        cost = timed(command, log)
    except SystemExit:
        diverged = non_finite_error(log)
        if diverged is None:
            raise
        print(f"{workdir}: {diverged}", flush=True)
        return {"commit": code, "diverged": diverged, "command": " ".join(command)}
    out = read_json(os.path.join(workdir, "results.json"))
    if "interrupted_at" in out:
        raise SystemExit(f"{workdir} was interrupted at step {out['interrupted_at']}")
    keep = ("loss", "top1", "val_top1", "final_step", "images_per_sec")
    numbers = {k: out[k] for k in keep if k in out}
    return {"commit": code, **cost, **numbers, "command": " ".join(command)}


def non_finite_error(log: str) -> str | None:
    """The first sentence of the NonFiniteLossError that ended a run, or None."""
    with open(log) as f:
        lines = [line for line in f if "NonFiniteLossError:" in line]
    if not lines:
        return None
    return lines[-1].split("NonFiniteLossError:", 1)[1].split(". ")[0].strip()


def distill_command(method: str, teacher: str) -> list[str]:
    return [
        sys.executable,
        "launch/distill.py",
        f"--config=configs/distill_cifar10.py:{method}",
        f"--config.teacher={teacher}",
    ]


def ssl_command(method: str) -> list[str]:
    return [sys.executable, "launch/pretrain.py", f"--config=configs/{method}_cifar10.py"]


def kd_teacher_command(args) -> list[str]:
    return [
        sys.executable,
        "launch/finetune.py",
        "--config=configs/finetune.py",
        f"--config.pretrained={args.teacher}",
        "--config.data.label_fraction=0.1",
        f"--config.epochs={args.kd_teacher_epochs}",
        "--config.data.name=npz",
        f"--config.data.path={args.data}",
        "--config.log.progress=False",
    ]


def ssl_steps(args, rows: dict, save) -> int:
    """Steps of ``--ssl-method`` whose CPU time matches the mean distillation run's."""
    distilled = [rows[m]["train"].get("cpu_s") for m in args.methods if "train" in rows.get(m, {})]
    distilled = [c for c in distilled if c is not None]  # a diverged run has no cost
    if not distilled:
        raise SystemExit("no distillation run finished: the SSL student's budget is unknown")
    target = sum(distilled) / len(distilled)
    calib = rows.setdefault("ssl_calibration", {})
    for steps in CALIBRATION:
        if str(steps) not in calib:
            workdir = os.path.join(args.runs, f"ssl_calibration_{steps}")
            overrides = train_overrides(args, steps, 0.0)
            calib[str(steps)] = train(ssl_command(args.ssl_method), workdir, overrides)
            save()
    (n0, n1), (c0, c1) = CALIBRATION, (calib[str(s)]["cpu_s"] for s in CALIBRATION)
    per_step = (c1 - c0) / (n1 - n0)
    startup = c0 - n0 * per_step
    calib.update(target_cpu_s=round(target, 1), cpu_s_per_step=round(per_step, 3))
    return max(n0, round((target - startup) / per_step))


def gap_closed(value, low, high):
    if None in (value, low, high) or high == low:
        return None
    return 100.0 * (value - low) / (high - low)


def markdown(results: dict) -> str:
    s, rows = results["settings"], results["rows"]
    lines = [
        f"CIFAR-10; teacher `{s['teacher']}`; students ResNet-18 width {s['student_width']} "
        f"(CIFAR stem), {s['epochs']:g} epoch(s) of 256 per distillation; {s['machine']}. "
        "Offline linear probe and kNN (k = 20), test top-1 (%). Gap closed: (student - SSL "
        "student) / (teacher - SSL student).",
        "",
        "| encoder | linear | kNN | gap closed, linear | gap closed, kNN | train wall / CPU min |",
        "|---|---|---|---|---|---|",
    ]
    ssl = rows.get("ssl_student", {}).get("eval", {})
    teacher = rows.get("teacher", {}).get("eval", {})
    names = ["teacher", "kd_teacher", *s["methods"], "ssl_student", "random_init"]
    for name in names:
        row = rows.get(name, {})
        ev, tr = row.get("eval", {}), row.get("train")
        lin, knn = ev.get("linear_top1"), ev.get("knn_top1_k20")
        if name == "kd_teacher":  # a classifier: its own test top-1
            lin = tr.get("top1") if tr else None
        closed = [None, None]
        if name in s["methods"]:
            closed = [
                gap_closed(lin, ssl.get("linear_top1"), teacher.get("linear_top1")),
                gap_closed(knn, ssl.get("knn_top1_k20"), teacher.get("knn_top1_k20")),
            ]
        if tr and "diverged" in tr:
            cells = [f"diverged: {tr['diverged']}", "–", "–", "–", "–"]
        else:
            cells = [pct(v) for v in (lin, knn, *closed)] + [minutes(tr) if tr else "–"]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "kd_teacher: the teacher fine-tuned on 10% of the labels (its test top-1 as a "
        "classifier); the kd student learns from its logits, so it is not label-free.",
        *(
            f"{name}: {variant} with {', '.join(f'{k}={v}' for k, v in extra.items())}."
            for name, (variant, extra) in VARIANTS.items()
            if name in s["methods"]
        ),
    ]
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--teacher", default="runs/label_efficiency/mocov3")
    parser.add_argument(
        "--methods",
        nargs="+",
        default=["seed", "mse", "mse_clip", "cosine", "clusterfit", "kd"],
        help=f"config variants of configs/distill_cifar10.py, or {', '.join(VARIANTS)}",
    )
    parser.add_argument("--student-width", type=int, default=8)
    parser.add_argument("--epochs", type=float, default=2.0, help="distillation epochs")
    parser.add_argument("--ssl-method", default="mocov3")
    parser.add_argument("--kd-teacher-epochs", type=int, default=30, help="its fine-tuning")
    parser.add_argument("--data", default=os.path.join(REPO, "..", "shared", "data", "cifar10"))
    parser.add_argument("--runs", default="runs/distillation")
    parser.add_argument("--out", default="benchmarks/results/distillation")
    args = parser.parse_args()
    args.data, args.runs = os.path.abspath(args.data), os.path.abspath(args.runs)
    args.teacher = os.path.abspath(args.teacher)
    if not os.path.isdir(os.path.join(args.teacher, "checkpoints")):
        parser.error(f"--teacher {args.teacher} holds no checkpoints: pass a pretraining workdir")
    steps = max(1, round(args.epochs * STEPS_PER_EPOCH))
    settings = {
        "teacher": args.teacher,
        "methods": args.methods,
        "student_width": args.student_width,
        "epochs": args.epochs,
        "steps": steps,
        "ssl_method": args.ssl_method,
        "kd_teacher_epochs": args.kd_teacher_epochs,
        "machine": machine(),
    }
    os.makedirs(args.out, exist_ok=True)
    json_path = os.path.join(args.out, "distillation.json")
    results = read_json(json_path) if os.path.exists(json_path) else {"rows": {}}
    kept = {k: v for k, v in results.get("settings", settings).items() if k != "methods"}
    if kept != {k: v for k, v in settings.items() if k != "methods"}:  # rows may be added
        raise SystemExit(f"{json_path} holds another setting ({results['settings']}); --out.")
    results["settings"] = settings
    rows = results["rows"]

    def save():
        with open(json_path, "w") as f:
            json.dump(results, f, indent=2)
        with open(os.path.join(args.out, "distillation.md"), "w") as f:
            f.write(markdown(results))

    def evaluated(name: str, pretrained: str, random_init: bool = False) -> None:
        row = rows.setdefault(name, {})
        if "eval" not in row:
            workdir = os.path.join(args.runs, name, "eval")
            row["eval"] = evaluate(pretrained, workdir, random_init, "offline")
            save()
            print(name, {k: v for k, v in row["eval"].items() if "top1" in k}, flush=True)

    evaluated("teacher", args.teacher)
    for method in args.methods:
        teacher = args.teacher
        if method == "kd":
            teacher = os.path.join(args.runs, "kd_teacher")
            if "train" not in rows.setdefault("kd_teacher", {}):
                rows["kd_teacher"]["train"] = train(kd_teacher_command(args), teacher, {})
                save()
        workdir = os.path.join(args.runs, method)
        variant, extra = VARIANTS.get(method, (method, {}))
        if "train" not in rows.setdefault(method, {}):
            overrides = train_overrides(args, steps, 0.0) | extra
            rows[method]["train"] = train(distill_command(variant, teacher), workdir, overrides)
            save()
        if "diverged" not in rows[method]["train"]:
            evaluated(method, workdir)
    workdir = os.path.join(args.runs, "ssl_student")
    if "train" not in rows.setdefault("ssl_student", {}):
        n = ssl_steps(args, rows, save)
        overrides = train_overrides(args, n, 0.1 * n / STEPS_PER_EPOCH)
        rows["ssl_student"]["train"] = train(ssl_command(args.ssl_method), workdir, overrides)
        save()
    evaluated("ssl_student", workdir)
    evaluated("random_init", workdir, random_init=True)
    save()
    print(markdown(results))


if __name__ == "__main__":
    main()
