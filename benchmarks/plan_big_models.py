"""ViT recipes at their papers' batches on TPU slices, with each memory setting: what fits.

  python benchmarks/plan_big_models.py [--python .venv-tpu/bin/python] [--recipes mae_l,dino_b]
      [--topologies v5e-16,v5e-32,v5e-64,v5p-8,v5p-32,v4-8] [--variants dp,fsdp,all,all_accum]
      [--timeout 1800] [--out benchmarks/results]

Each (recipe, topology, variant) is one ``launch/plan.py`` compile of the recipe's ImageNet
config with the variant's overrides (benchmarks/plan_imagenet.py's ``plan_one``), written to
OUT/plan_big_models.{json,md} after each one and skipped when already there (resumable; delete
an entry to redo it). Variants:

- ``dp``: data parallel, float32 (the config as it is);
- ``fsdp``: the state split over the chips (``mesh.fsdp=True``);
- ``all``: fsdp + remat (``dots_saveable``) + bfloat16;
- ``all_accum``: ``all`` with 4 micro-batches (``optim.accumulation_steps=4``; DINO and MAE
  only: the other methods refuse accumulation).

Step times are lower bounds from compiled FLOPs and bytes at the chip's peak rates
(projections, never measurements).
"""

import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from plan_imagenet import REPO, cell, load_results, plan_one, save_results  # noqa: E402

# name: (config, overrides, paper batch, where the batch comes from)
RECIPES = {
    "dino_s": ("dino", ["--config.model.backbone=vit_small"], 1024, "DINO §4: 1024"),
    "dino_b": ("dino", ["--config.model.backbone=vit_base"], 1024, "DINO §4: 1024"),
    "dino_l": ("dino", ["--config.model.backbone=vit_large"], 1024, "as DINO's ViT-B"),
    "mae_b": ("mae", ["--config.model.backbone=vit_base"], 4096, "MAE: 4096"),
    "mae_l": ("mae", ["--config.model.backbone=vit_large"], 4096, "MAE: 4096"),
    "mae_h": (
        "mae",
        ["--config.model.backbone=vit_huge", "--config.model.patch_size=14"],
        4096,
        "MAE: 4096",
    ),
    "mocov3_b": ("mocov3", ["--config.model.backbone=vit_base"], 4096, "MoCo v3: 4096"),
    "mocov3_l": ("mocov3", ["--config.model.backbone=vit_large"], 4096, "MoCo v3: 4096"),
}
ACCUMULATES = ("dino", "mae")
TOPOLOGIES = ("v5e-16", "v5e-32", "v5e-64", "v5p-8", "v5p-32", "v4-8")
ALL = [
    "--config.mesh.fsdp=True",
    "--config.model.remat=True",
    "--config.model.remat_policy=dots_saveable",
    "--config.model.dtype=bfloat16",
]
VARIANTS = {
    "dp": [],
    "fsdp": ["--config.mesh.fsdp=True"],
    "all": ALL,
    "all_accum": [*ALL, "--config.optim.accumulation_steps=4"],
}


def entry_cell(r: dict | None) -> str:
    text = cell(r)
    if r and r.get("state_gib_per_chip") is not None:
        text += f"; state {r['state_gib_per_chip']:.2f} GiB/chip"
    return text


def markdown(results: dict, recipes, topologies, variants, command: str) -> str:
    head = "| recipe | batch | variant | " + " | ".join(topologies) + " |"
    rows = [head, "|" + "---|" * (len(topologies) + 3)]
    for name in recipes:
        config, _, batch, source = RECIPES[name]
        for variant in variants:
            if variant == "all_accum" and config not in ACCUMULATES:
                continue
            cells = [entry_cell(results.get(f"{name}/{variant}/{t}")) for t in topologies]
            rows.append(f"| {name} | {batch} ({source}) | {variant} | " + " | ".join(cells) + " |")
    versions = next((r["versions"] for r in results.values() if "versions" in r), {})
    return (
        "# ViT recipes at their papers' batches on TPU slices (compiled ahead of time)\n\n"
        f"Command: `{command}`; {', '.join(f'{k} {v}' for k, v in versions.items())}; "
        f"{len(results)} compiles so far (resumable).\n\n"
        "Variants: dp = data parallel, float32; fsdp = the state split over the chips; all = "
        "fsdp + remat (dots_saveable) + bfloat16; all_accum = all with 4 micro-batches. Each "
        "cell: fits or not, the per-chip peak over the HBM a program may use ('(est.)' when "
        "XLA refused the program and counted temporaries only), the step-time lower bound "
        "(a projection from compiled FLOPs and bytes, not a measurement), and the training "
        "state per chip.\n\n" + "\n".join(rows) + "\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--python", default=sys.executable, help="a Python with libtpu")
    parser.add_argument("--recipes", default=",".join(RECIPES))
    parser.add_argument("--topologies", default=",".join(TOPOLOGIES))
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per compile")
    parser.add_argument("--out", default=os.path.join(REPO, "benchmarks", "results"))
    parser.add_argument(
        "--runs", default=os.path.join(tempfile.gettempdir(), "plan_big_models_runs")
    )
    args = parser.parse_args()
    recipes, topologies = args.recipes.split(","), args.topologies.split(",")
    variants = args.variants.split(",")
    path = os.path.join(args.out, "plan_big_models.json")
    results = load_results(path)
    command = "python benchmarks/plan_big_models.py --python .venv-tpu/bin/python"
    for topology in topologies:
        for name in recipes:
            config, overrides, batch, _ = RECIPES[name]
            for variant in variants:
                key = f"{name}/{variant}/{topology}"
                if key in results or (variant == "all_accum" and config not in ACCUMULATES):
                    continue
                flags = [*overrides, f"--config.data.batch_size={batch}", *VARIANTS[variant]]
                print(f"{key} ...", end=" ", flush=True)
                workdir = os.path.join(args.runs, name, variant, topology)
                results[key] = plan_one(
                    args.python, config, topology, workdir, args.timeout, overrides=flags
                )
                results[key]["overrides"] = flags
                print(entry_cell(results[key]), flush=True)
                table = markdown(results, list(RECIPES), TOPOLOGIES, list(VARIANTS), command)
                save_results(path, command, results, table)


if __name__ == "__main__":
    main()
