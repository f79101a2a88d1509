"""Host input pipeline throughput: decoded, resized, batched images/s per worker count.

  python benchmarks/input_pipeline.py [--images 768] [--batch 64] [--seconds 8]
      [--workers 0,1,2] [--out benchmarks/results]

Writes two JPEG folders made from CIFAR-10 images (../shared/data/cifar10, upscaled bicubic,
quality 90; smooth random images when that folder is absent), one at 256x256 (read at 224,
as an ImageNet eval crop) and one at 500x375 (ImageNet's typical size, read at 256 as the
ImageNet configs do), converts each to ArrayRecord shards (launch/convert_data.py: the files'
bytes), then measures, one after the other in this one process on this machine:

- ``old``: the loader this project had before Grain (one background thread computing
  ``BatchIterator.batch_at`` ahead; its code is kept below for this comparison);
- ``grain/0``: the Grain pipeline with one thread, ``grain/N``: with N worker processes.

Per cell: images/s (wall), and images per CPU-second of every process involved (this one and
its workers, from /proc), after a warm-up of two batches per worker. From the plan table
(benchmarks/results/plan_imagenet.json, when present) it derives how many host cores one chip
needs at its projected step rate: a projection from a bound, not a measurement. Results:
OUT/input_pipeline.json and OUT/input_pipeline.md.
"""

import argparse
import itertools
import json
import multiprocessing
import os
import platform
import queue
import sys
import tempfile
import threading
import time

import numpy as np
from PIL import Image

REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, REPO)

from ssl_jax.config import data_defaults  # noqa: E402
from ssl_jax.data import BatchIterator, FolderSource, RecordSource  # noqa: E402
from ssl_jax.programs import convert_data  # noqa: E402

CIFAR = os.path.join(REPO, "..", "shared", "data", "cifar10", "train_00.npz")
KINDS = {  # name: (file size W x H, size read at)
    "256x256 JPEG -> 224": ((256, 256), 224),
    "500x375 JPEG -> 256": ((500, 375), 256),
}


def old_prefetch(iterator, size=2):
    """The previous loader's background thread (ssl_jax/data/prefetch.py before Grain)."""
    items = queue.Queue(maxsize=size)
    stop = threading.Event()

    def work():
        for item in iterator:
            while not stop.is_set():
                try:
                    items.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if stop.is_set():
                return

    threading.Thread(target=work, daemon=True).start()
    try:
        while True:
            yield items.get()
    finally:
        stop.set()


def make_folder(root: str, count: int, size: tuple[int, int]) -> str:
    if os.path.exists(CIFAR):
        with np.load(CIFAR) as f:
            images, labels = f["images"][:count], f["labels"][:count]
        note = "CIFAR-10 train images upscaled (bicubic)"
    else:
        rng = np.random.default_rng(0)
        images = rng.integers(0, 256, (count, 8, 8, 3), dtype=np.uint8)
        labels = rng.integers(0, 10, count)
        note = "smooth random images (CIFAR-10 copy absent)"
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        path = os.path.join(root, f"class_{int(label)}", f"{i:05d}.jpg")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        Image.fromarray(image).resize(size, Image.Resampling.BICUBIC).save(path, quality=90)
    return note


def cpu_seconds(pids: list[int]) -> float:
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / ticks  # utime + stime
        except FileNotFoundError:
            pass
    return total


def measure(source, loader: str, workers: int, batch: int, seconds: float) -> dict:
    batches = BatchIterator(source, global_batch_size=batch, seed=0)
    if loader == "old":
        stream = old_prefetch(batches.batch_at(s) for s in itertools.count())
    else:
        stream = batches.iterate(0, workers=workers)
    for _ in range(2 * max(1, workers)):  # workers started, buffers filled
        next(stream)
    pids = [os.getpid(), *(p.pid for p in multiprocessing.active_children())]
    cpu0, t0, n = cpu_seconds(pids), time.perf_counter(), 0
    while n < 5 or time.perf_counter() - t0 < seconds:
        next(stream)
        n += 1
    wall, cpu = time.perf_counter() - t0, cpu_seconds(pids) - cpu0
    stream.close()
    return {
        "loader": loader if loader == "old" else f"grain/{workers}",
        "workers": workers,
        "batches": n,
        "images_per_s": n * batch / wall,
        "images_per_cpu_s": n * batch / cpu if cpu > 0 else None,
        "processes": len(pids),
    }


def cores_per_chip(per_core: float) -> list[dict]:
    path = os.path.join(REPO, "benchmarks", "results", "plan_imagenet.json")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        results = json.load(f)["results"]
    rows = []
    for key, r in sorted(results.items()):
        if r.get("status") != "fits" or not r.get("images_per_s_upper_bound"):
            continue
        per_chip = r["images_per_s_upper_bound"] / r["chips"]
        rows.append(
            {
                "plan": key,
                "images_per_s_per_chip_bound": per_chip,
                "host_cores_per_chip": per_chip / per_core,
            }
        )
    return rows


def markdown(report: dict) -> str:
    lines = [
        "# Input pipeline: decoded, resized, batched images/s on this machine",
        "",
        f"Command: `{report['command']}`; {report['machine']}; {report['images']} images per "
        f"folder ({report['data']}), global batch {report['batch']}, "
        f"about {report['seconds']} s per cell after warm-up, all cells in one run. "
        "Upscaled CIFAR-10 images are smoother than photographs and decode faster: expect "
        "lower rates on real ImageNet files; the comparison between loaders is the point.",
        "",
        "| source | loader | images/s | images per CPU-second | processes |",
        "|---|---|---|---|---|",
    ]
    for r in report["cells"]:
        per_cpu = f"{r['images_per_cpu_s']:.0f}" if r["images_per_cpu_s"] else "?"
        lines.append(
            f"| {r['source']} | {r['loader']} | {r['images_per_s']:.0f} | {per_cpu} | "
            f"{r['processes']} |"
        )
    if report["cores_per_chip"]:
        lines += [
            "",
            f"Host cores one chip needs at its plan's step-rate bound, at "
            f"{report['per_core_rate']:.0f} decoded 500x375 images per CPU-second (the best "
            "ImageNet-size cell above; a projection from a bound, not a measurement):",
            "",
            "| plan | images/s per chip (bound) | host cores per chip |",
            "|---|---|---|",
        ]
        for r in report["cores_per_chip"]:
            lines.append(
                f"| {r['plan']} | {r['images_per_s_per_chip_bound']:.0f} | "
                f"{r['host_cores_per_chip']:.1f} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=768)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument(
        "--workers", default=f"0,{','.join(map(str, range(1, os.cpu_count() + 1)))}"
    )
    parser.add_argument("--out", default=os.path.join(REPO, "benchmarks", "results"))
    args = parser.parse_args()
    worker_counts = [int(w) for w in args.workers.split(",")]
    report = {
        "command": "python benchmarks/input_pipeline.py " + " ".join(sys.argv[1:]),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "images": args.images,
        "batch": args.batch,
        "seconds": args.seconds,
        "cells": [],
    }
    with tempfile.TemporaryDirectory() as tmp:
        for kind, (size, read_at) in KINDS.items():
            folder, records = (
                os.path.join(tmp, f"{size[0]}_jpeg"),
                os.path.join(tmp, f"{size[0]}_rec"),
            )
            report["data"] = make_folder(folder, args.images, size)
            data = data_defaults(name="folder", path=folder, image_size=read_at)
            convert_data.convert(data, records, splits=("train",), progress=False)
            sources = {
                f"folder, {kind}": FolderSource(folder, "train", image_size=read_at),
                f"records, {kind}": RecordSource(records, "train", image_size=read_at),
            }
            for name, source in sources.items():
                cells = [("old", 0)] + [("grain", w) for w in worker_counts]
                for loader, workers in cells:
                    cell = measure(source, loader, workers, args.batch, args.seconds)
                    cell["source"] = name
                    report["cells"].append(cell)
                    print(
                        f"{name:32} {cell['loader']:8} {cell['images_per_s']:7.0f} img/s "
                        f"{cell['images_per_cpu_s'] or 0:7.0f} img/CPU-s",
                        flush=True,
                    )
    big = [c for c in report["cells"] if "500x375" in c["source"] and c["images_per_cpu_s"]]
    report["per_core_rate"] = max(c["images_per_cpu_s"] for c in big)
    report["cores_per_chip"] = cores_per_chip(report["per_core_rate"])
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "input_pipeline.json"), "w") as f:
        json.dump(report, f, indent=2)
    with open(os.path.join(args.out, "input_pipeline.md"), "w") as f:
        f.write(markdown(report))


if __name__ == "__main__":
    main()
