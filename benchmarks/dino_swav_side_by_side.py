"""DINO and SwAV on CIFAR-10, ours and a PyTorch reference side by side, per epoch (issue #14).

  pip install torch==2.13.0      # benchmark-only
  python benchmarks/dino_swav_side_by_side.py --method dino [--epochs 3] [--width 16]
      [--data ../shared/data/cifar10] [--runs runs/dino_swav] [--out benchmarks/results/dino_swav]
      [--steps-per-epoch N (a shorter "epoch", for smoke tests)] [--set KEY=VALUE ...]
      [--side ours|reference (train one side only, e.g. both at once on a larger machine)]

Ours is the user-facing program: ``launch/pretrain.py --config configs/<method>_cifar10.py``
on the npz copy of CIFAR-10, its kNN monitor (k = 20 and 200) after every epoch. The
reference (``benchmarks/torch_dino_swav.py``) is PyTorch: the same architecture and width,
the same hyper-parameters read from the same config (``--set`` overrides both), the same
optimizer (LARS) and schedules written again in PyTorch, the same data and batch size; its
crops are made by ssl_jax's multi-crop function of that config (the same crop and colour
operations, other random draws), so the views are not what this comparison tests. After each
epoch the reference's exported network (DINO's teacher, SwAV's backbone) embeds the 50,000
training and 10,000 test images as ours does (its BatchNorm statistics, the config's eval
normalisation) for the same kNN. Per epoch and implementation: mean loss over the steps ours logs
(every 25th and the epoch's last; the reference also reports its mean over all steps),
the collapse signal (DINO ``teacher_entropy``, SwAV ``prediction_entropy``; ``ln K`` is the
uniform output), kNN top-1 and CPU minutes. Both sides resume from their last finished epoch
when the command is run again. Results: OUT/<method>.json and .md (written when both sides
have finished: run the command without ``--side`` after two one-sided runs).
"""

import argparse
import json
import math
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)
sys.path.insert(0, HERE)
from cifar10_methods import commit, machine  # noqa: E402

SIGNAL = {"dino": "teacher_entropy", "swav": "prediction_entropy"}
TRAIN_IMAGES = 50_000
LOG_EVERY = 25  # ours logs (and the table averages) every LOG_EVERY-th step


def tag(args) -> str:
    """The method and its ``--set`` overrides: names the runs and the result files."""
    return args.method + "".join(f"_{s.replace('=', '-')}" for s in args.set)


def load_config(args):
    from importlib import import_module

    config = import_module(f"configs.{args.method}_cifar10").get_config()
    config.model.width = args.width
    for item in args.set:
        key, value = item.split("=", 1)
        node = config
        *parents, leaf = key.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = type(node[leaf])(eval(value)) if node[leaf] is not None else eval(value)
    return config


def overrides(args, spe: int) -> list[str]:
    sets = {
        "data.name": "npz",
        "data.path": args.data,
        "model.width": args.width,
        "total_steps": spe * args.epochs,
        "evals.knn.every_steps": spe,
        "log.every_steps": min(LOG_EVERY, spe),
        "log.progress": False,
        "ckpt.every_steps": spe,
    }
    extra = [f"--config.{k}" for k in args.set]
    return [f"--config.{k}={v}" for k, v in sets.items()] + extra


def run_ours(args, spe: int, config) -> list[dict]:
    """Train (or resume) ours to the end; per-epoch rows from its metrics.jsonl."""
    import subprocess

    workdir = os.path.join(args.runs, f"{tag(args)}_ours")
    os.makedirs(workdir, exist_ok=True)
    command = [
        sys.executable,
        "launch/pretrain.py",
        f"--config=configs/{args.method}_cifar10.py",
        f"--workdir={workdir}",
        *overrides(args, spe),
    ]
    results = os.path.join(workdir, "results.json")
    if (
        not os.path.exists(results)
        or json.load(open(results)).get("final_step") != spe * args.epochs
    ):
        print("$", " ".join(command), flush=True)
        with open(os.path.join(workdir, "commits.txt"), "a") as f:
            f.write(commit() + "\n")  # the code this (possibly resumed) training imports
        usage0 = os.times()
        with open(os.path.join(workdir, f"train_{int(time.time())}.log"), "w") as log:
            subprocess.run(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, check=True)
        usage1 = os.times()
        cpu = (usage1.children_user + usage1.children_system) - (
            usage0.children_user + usage0.children_system
        )
        with open(os.path.join(workdir, "cpu_s.txt"), "a") as f:
            f.write(f"{cpu:.1f}\n")
    rows = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
    commits = read_commits(os.path.join(workdir, "commits.txt"))
    cpu = sum(float(x) for x in open(os.path.join(workdir, "cpu_s.txt")))
    epochs = []
    for e in range(1, args.epochs + 1):
        in_epoch = [r for r in rows if (e - 1) * spe < r["step"] <= e * spe]
        end = [r for r in in_epoch if "knn_top1_k20" in r]
        epochs.append(
            {
                "epoch": e,
                "loss": float(np.mean([r["loss"] for r in in_epoch])),
                "signal": float(np.mean([r[SIGNAL[args.method]] for r in in_epoch])),
                "knn_top1_k20": end[-1]["knn_top1_k20"] if end else None,
                "knn_top1_k200": end[-1].get("knn_top1_k200") if end else None,
                # one program: its CPU time is known for the whole run only
                "cpu_min_total": cpu / 60 if e == args.epochs else None,
                "commit": commits,
            }
        )
    return epochs


def read_commits(path: str) -> str:
    """The commits a run trained at (several if it was resumed at other code), or unknown."""
    if not os.path.exists(path):
        return "unknown"
    return ", ".join(dict.fromkeys(line.strip() for line in open(path) if line.strip()))


def embed(encoder, images, mean, std, batch=512):
    import torch

    out = []
    encoder.eval()
    with torch.no_grad():
        for s in range(0, len(images), batch):
            x = (images[s : s + batch].astype(np.float32) / 255.0 - mean) / std
            out.append(encoder(torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()).numpy())
    encoder.train()
    return np.concatenate(out)


def run_reference(args, spe: int, config) -> list[dict]:
    """Train (or resume) the PyTorch reference epoch by epoch; its per-epoch rows."""
    import jax
    import torch
    from torch_dino_swav import Reference

    from ssl_jax.augment.from_config import eval_settings, multicrop_from_config
    from ssl_jax.augment.multicrop import make_multicrop_fn
    from ssl_jax.data import get_source
    from ssl_jax.evaluators.knn import knn_accuracies

    torch.manual_seed(0)
    torch.set_num_threads(os.cpu_count())
    config.data.update(name="npz", path=args.data)
    train, test = get_source(config.data, "train"), get_source(config.data, "test")
    x_train, y_train = train.get(np.arange(len(train)))
    x_test, y_test = test.get(np.arange(len(test)))
    crops = jax.jit(make_multicrop_fn(*multicrop_from_config(config.augment)))
    ev = eval_settings(config.augment)
    mean, std = np.asarray(ev["mean"], np.float32), np.asarray(ev["std"], np.float32)
    batch = config.data.batch_size
    state_path = os.path.join(args.runs, f"{tag(args)}_reference.pt")
    ref, epochs = Reference(args.method, config, spe * args.epochs, spe), []
    if os.path.exists(state_path):
        saved = torch.load(state_path, weights_only=False)
        ref.load_state_dict(saved["reference"])
        epochs = saved["epochs"]
    key, code = jax.random.key(1), commit()  # the code this process imported
    for e in range(len(epochs) + 1, args.epochs + 1):
        cpu0, rows = time.process_time(), []
        order = np.random.default_rng(e).permutation(len(x_train))
        for j in range(spe):
            i = (e - 1) * spe + j
            globals_, locals_ = crops(
                x_train[order[j * batch : (j + 1) * batch]], jax.random.fold_in(key, i)
            )
            to_torch = [
                torch.from_numpy(np.asarray(c)).permute(0, 3, 1, 2).contiguous()
                for c in (*globals_, *locals_)
            ]
            rows.append(ref.step(to_torch[: len(globals_)], to_torch[len(globals_) :], i))
            if not math.isfinite(rows[-1]["loss"]):
                raise SystemExit(f"reference: non-finite loss at step {i}")
        every = min(LOG_EVERY, spe)
        logged = [j for j in range(spe) if ((e - 1) * spe + j + 1) % every == 0 or j == spe - 1]
        encoder = ref.encoder()
        knn = knn_accuracies(
            (embed(encoder, x_train, mean, std), y_train),
            (embed(encoder, x_test, mean, std), y_test),
            ks=(20, 200),
            temperature=config.evals.knn.temperature,
            num_classes=10,
        )
        previous = epochs[-1]["cpu_min_total"] if epochs else 0.0
        epochs.append(
            {
                "epoch": e,
                # the steps ours logs (every LOG_EVERY-th and the epoch's last), as ours
                "loss": float(np.mean([rows[j]["loss"] for j in logged])),
                "signal": float(np.mean([rows[j][SIGNAL[args.method]] for j in logged])),
                "loss_all_steps": float(np.mean([r["loss"] for r in rows])),
                "knn_top1_k20": knn["top1_k20"],
                "knn_top1_k200": knn["top1_k200"],
                "cpu_min_total": previous + (time.process_time() - cpu0) / 60,
                "commit": code,
            }
        )
        torch.save({"reference": ref.state_dict(), "epochs": epochs}, state_path + ".tmp")
        os.replace(state_path + ".tmp", state_path)
        print("reference", epochs[-1], flush=True)
    return epochs


def markdown(method: str, k: int, result: dict) -> str:
    signal = SIGNAL[method]
    lines = [
        f"{method} on CIFAR-10, ResNet-18 width {result['settings']['width']}, "
        f"{result['settings']['steps_per_epoch']} steps of {result['settings']['batch']} per "
        f"epoch; ln K = {math.log(k):.3f} (K = {k}). Loss and {signal}: means over the "
        f"epoch's logged steps (every {LOG_EVERY}th of the run and the epoch's last); kNN "
        "(k = 20) after the epoch.",
        "",
        f"| epoch | loss, ours | loss, reference | {signal}, ours | {signal}, reference | "
        "kNN, ours | kNN, reference | CPU min (cumulative), ours / reference |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for o, r in zip(result["ours"], result["reference"], strict=False):

        def f(x, d=3):
            return "–" if x is None else f"{x:.{d}f}"

        lines.append(
            f"| {o['epoch']} | {f(o['loss'])} | {f(r['loss'])} | {f(o['signal'])} | "
            f"{f(r['signal'])} | {f(o['knn_top1_k20'], 1)} | {f(r['knn_top1_k20'], 1)} | "
            f"{f(o['cpu_min_total'], 1)} / {f(r['cpu_min_total'], 1)} |"
        )
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--method", choices=("dino", "swav"), required=True)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--steps-per-epoch", type=int, default=None)
    parser.add_argument("--data", default=os.path.join(REPO, "..", "shared", "data", "cifar10"))
    parser.add_argument("--runs", default="runs/dino_swav")
    parser.add_argument("--out", default="benchmarks/results/dino_swav")
    parser.add_argument("--set", action="append", default=[], help="config KEY=VALUE, both sides")
    parser.add_argument("--side", choices=("ours", "reference"), default=None, help="only one")
    args = parser.parse_args()
    args.data, args.runs = os.path.abspath(args.data), os.path.abspath(args.runs)
    config = load_config(args)
    spe = args.steps_per_epoch or TRAIN_IMAGES // config.data.batch_size
    os.makedirs(args.runs, exist_ok=True)
    ours = run_ours(args, spe, config) if args.side != "reference" else None
    reference = run_reference(args, spe, load_config(args)) if args.side != "ours" else None
    if ours is None or reference is None:
        print(json.dumps({args.side: ours or reference}, indent=1))
        return
    k = config.method.out_dim if args.method == "dino" else config.method.num_prototypes
    result = {
        "settings": {
            "method": args.method,
            "width": args.width,
            "batch": config.data.batch_size,
            "steps_per_epoch": spe,
            "epochs": args.epochs,
            "set": args.set,
            "machine": machine(),
        },
        "ours": ours,
        "reference": reference,
    }
    os.makedirs(args.out, exist_ok=True)
    name = tag(args)
    with open(os.path.join(args.out, f"{name}.json"), "w") as f:
        json.dump(result, f, indent=2)
    table = markdown(args.method, k, result)
    with open(os.path.join(args.out, f"{name}.md"), "w") as f:
        f.write(table)
    print(table)


if __name__ == "__main__":
    main()
