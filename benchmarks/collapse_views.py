"""SwAV and DINO under easier and harder views: when do they collapse at the start?

  python benchmarks/collapse_views.py [--steps 100] [--methods swav dino] [--out benchmarks/results]

SwAV and DINO can collapse in their first steps: SwAV to the uniform assignment (loss at
ln K, embeddings all alike), DINO to a uniform teacher (teacher entropy at ln K). The SwAV
authors list this failure and its workarounds (lower Sinkhorn epsilon, frozen prototypes,
softer augmentation); it is what our one-epoch CIFAR-10 runs show. This benchmark checks
that the collapse comes from the difficulty of the views and not from the implementation:
it pretrains each method with ``launch/pretrain.py`` on the embedded digits (16 px,
ResNet-18 width 16, LR warm-up 10 steps, the CIFAR-10 recipe otherwise) once per view variant

- ``recipe``: the recipe's views (random crops + colour distortion, DINO's local crops);
- ``crop only``: the recipe's crops and flips, no colour distortion, blur or solarisation;
- ``colour only``: the whole image (crop scale and ratio 1), colour distortion as the recipe,
  no local crops;
- ``identical``: the same unaugmented image in both views;

then a linear probe and kNN on the frozen export (``launch/linear_probe.py``,
``launch/knn.py``, digits test split). A random-init encoder is probed the same way. The
collapse signals are the last logged values: SwAV's loss against ln K and its embedding std,
DINO's teacher entropy against ln K. Results: OUT/collapse_views.{json,md}.
"""

import argparse
import json
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cifar10_methods import (  # noqa: E402
    REPO,
    commit,
    evaluate,
    load_results,
    machine,
    new_workdir,
    read_json,
    run,
)

NO_COLOUR = {
    "augment.jitter_prob": 0.0,
    "augment.gray_prob": 0.0,
    "augment.blur_prob": 0.0,
    "augment.solarize_prob": 0.0,
}
WHOLE_IMAGE = {
    "augment.global_crop_scale": "(1.0,1.0)",
    "augment.crop_ratio": "(1.0,1.0)",
    "augment.num_local_crops": 0,
}
VARIANTS = {
    "recipe": {},
    "crop only": NO_COLOUR,
    "colour only": WHOLE_IMAGE,
    "identical": {**NO_COLOUR, **WHOLE_IMAGE, "augment.flip_prob": 0.0},
}
# The parts of the recipes given in epochs of a 1,000-epoch run, off for the short run (as in
# cifar10_methods.py); DINO's teacher temperature at its warm-up start value throughout.
METHOD_OVERRIDES = {
    "swav": {"method.freeze_prototypes_steps": 0, "method.queue_length": 0},
    "dino": {
        "method.base_momentum": 0.99,
        "method.freeze_last_layer_steps": 0,
        "method.warmup_teacher_temp_steps": 0,
        "method.teacher_temp": 0.04,
        "augment.local_crop_size": 8,
    },
}
NUM_OUTPUTS = {"swav": 3000, "dino": 4096}  # K of the CIFAR-10 recipes
# The entropy that reaches ln K at the collapse: SwAV's predictions, DINO's centred teacher.
ENTROPY_KEYS = ("prediction_entropy", "teacher_entropy")


def pretrain_command(method: str, variant: str, workdir: str, steps: int) -> list[str]:
    overrides = {
        "data.name": "digits",
        "data.image_size": 16,
        "augment.crop_size": 16,
        "model.width": 16,
        "total_steps": steps,
        "schedule.warmup_epochs": 2,  # 10 steps (5 steps of 256 per epoch of 1,437 images)
        "evals.knn.every_steps": 0,
        "log.every_steps": 10,
        "log.progress": False,
        "ckpt.every_steps": steps,
        **METHOD_OVERRIDES[method],
        **VARIANTS[variant],
    }
    command = [sys.executable, "launch/pretrain.py", f"--config=configs/{method}_cifar10.py"]
    command.append(f"--workdir={workdir}")
    return command + [f"--config.{key}={value}" for key, value in overrides.items()]


def metrics_rows(workdir: str) -> list[dict]:
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f if line.strip()]


def pretrain_and_evaluate(method: str, variant: str, args) -> dict:
    workdir = new_workdir(
        os.path.abspath(os.path.join(args.runs, method, variant.replace(" ", "_")))
    )
    command = pretrain_command(method, variant, workdir, args.steps)
    code = commit()
    seconds = run(command, f"{workdir}/pretrain.log")
    rows = metrics_rows(workdir)
    keys = ENTROPY_KEYS + ("loss", "embedding_std", "teacher_batch_entropy")
    row = {
        "commit": code,
        "pretrain_s": round(seconds, 1),
        "ln_k": math.log(NUM_OUTPUTS[method]),
        "first": {k: rows[0][k] for k in keys if k in rows[0]} | {"step": rows[0]["step"]},
        "last": {k: rows[-1][k] for k in keys if k in rows[-1]} | {"step": rows[-1]["step"]},
    }
    row["collapse_warning"] = read_json(f"{workdir}/results.json").get("warnings")
    evaluation = evaluate(workdir, workdir, random_init=False)
    row["commands"] = [" ".join(command)] + evaluation.pop("commands")
    row.update(evaluation)
    return row


def fmt(value, spec=".3f") -> str:
    return "–" if value is None else format(value, spec)


def markdown(results: dict) -> str:
    s = results["settings"]
    lines = [
        f"Embedded digits (16 px), ResNet-18 width {s['width']}, {s['steps']} steps of 256, "
        f"each method's CIFAR-10 recipe otherwise; {s['machine']}. Values at the first and "
        "last logged steps; `ln K` is the loss (SwAV) or teacher entropy (DINO) of a "
        "uniform, collapsed output; output entropy is that of SwAV's predictions or DINO's "
        "centred teacher, ln K at the collapse; warned: the step at which "
        "`launch/pretrain.py` logged its collapse warning.",
        "",
        "| method | views | loss first → last | output entropy first → last | ln K | "
        "embedding std first → last | warned | linear top-1 | kNN k=20 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for key, row in results["rows"].items():
        if key == "random_init":
            continue
        method, variant = key.split("/")
        first, last = row["first"], row["last"]
        pair = lambda k, first=first, last=last: (  # noqa: E731
            "–" if k not in first else f"{fmt(first[k])} → {fmt(last.get(k))}"
        )
        entropy = next((k for k in ENTROPY_KEYS if k in first), None)
        warned = row.get("collapse_warning")
        lines.append(
            f"| {method} | {variant} | {pair('loss')} | {pair(entropy)} | {row['ln_k']:.3f} | "
            f"{pair('embedding_std')} | {warned[0].split(':')[0] if warned else 'no'} | "
            f"{row['linear_top1']:.1f}% | {row['knn_top1_k20']:.1f}% |"
        )
    rnd = results["rows"].get("random_init")
    if rnd:
        lines.append(
            f"| random init | – | – | – | – | – | – | {rnd['linear_top1']:.1f}% | "
            f"{rnd['knn_top1_k20']:.1f}% |"
        )
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--methods", nargs="+", default=["swav", "dino"], choices=["swav", "dino"])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--runs", default="runs/collapse_views")
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("--force", action="store_true", help="rerun rows already done")
    args = parser.parse_args()

    settings = {
        "steps": args.steps,
        "width": 16,
        "batch_size": 256,
        "data": "embedded digits, 16 px",
        "machine": machine(),
    }
    os.makedirs(args.out, exist_ok=True)
    json_path = os.path.join(args.out, "collapse_views.json")
    results = load_results(json_path, settings, args.force)

    def save():
        with open(json_path, "w") as f:
            json.dump(results, f, indent=2)
        with open(os.path.join(args.out, "collapse_views.md"), "w") as f:
            f.write(markdown(results))

    for method in args.methods:
        for variant in args.variants:
            key = f"{method}/{variant}"
            if key in results["rows"] and not args.force:
                print(f"{key}: done already, skipped (--force reruns it)")
                continue
            results["rows"][key] = pretrain_and_evaluate(method, variant, args)
            save()
            print(markdown(results), flush=True)
    if "random_init" not in results["rows"] or args.force:
        done = [k for k in results["rows"] if k != "random_init"]
        if done:
            method, variant = done[0].split("/")
            pretrained = os.path.abspath(os.path.join(args.runs, method, variant.replace(" ", "_")))
            workdir = os.path.abspath(os.path.join(args.runs, "random_init"))
            results["rows"]["random_init"] = {
                "commit": commit(),
                **evaluate(pretrained, workdir, random_init=True),
            }
    save()
    print(markdown(results))


if __name__ == "__main__":
    os.chdir(REPO)
    main()
