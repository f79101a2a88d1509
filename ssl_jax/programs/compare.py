"""One table of several programs' results across encoders, ``run(config, workdir)``.

Reads the ``results.json`` of each workdir that ``config.workdirs`` (paths or glob patterns,
``**`` included) and ``config.glob`` name, and arranges their metrics in a table: a row per
encoder — the pretrained run (and step) a result refers to, its random-init baseline, its
raw-pixel baseline — or, with ``config.group_by="workdir"``, per workdir; a column per
program (with its protocol and label fraction) and metric, e.g. ``linear_probe/offline top1``,
``knn top1_k20``. Every program writes its name (``program``) and its dataset (``dataset``)
into its results: nothing is guessed. A file without a name (written by an older version)
gives ``unknown program`` columns and is listed under the table; when the results span
several datasets, each column names its own (``finetune @10% labels on digits 8px top1``).
The metrics are the numeric top-level keys that match one of the ``config.metrics`` patterns
(fnmatch) and none of ``config.exclude``: by default every top-1 and accuracy, few-shot
accuracies, cluster accuracy, NMI and ARI, but no training or validation numbers. A
pretraining (or distillation) workdir contributes its monitors' last values
(``pretrain knn_top1_k20``, ...).

Writes ``WORKDIR/compare.md`` (the table; "–" where a row has no value), ``compare.json``
(rows, columns, values and the file each value came from) and ``compare.png`` (a bar panel
per column; a random-init row is drawn as a dashed reference line across its panels unless
``config.random_init_line=False``). Inputs and
``WORKDIR`` may be URIs (``gs://bucket/runs/*/probe``: there ``*`` matches one level and
``**`` is refused). Nothing here uses a device.
"""

import fnmatch
import glob
import json

import ml_collections
from etils import epath

from ssl_jax.data.identity import dataset_label
from ssl_jax.paths import is_remote, resolve
from ssl_jax.plotting import save_figure

RESULTS = "results.json"
# Few-shot: proto_5way_1shot, logreg_allway_5shot (not their _ci95); cluster: acc, nmi, ari.
DEFAULT_METRICS = (
    "*top1*",
    "*accuracy*",
    "acc",
    "*_acc",
    "nmi",
    "*_nmi",
    "ari",
    "*_ari",
    "*way_*shot",
)
DEFAULT_EXCLUDE = ("train_*", "val_*", "*_train_*", "final_*")
GROUP_BY = ("encoder", "workdir")
UNKNOWN_PROGRAM = "unknown program"
# Programs whose workdir holds the encoder export their results are measured on.
EXPORTING = ("pretrain", "distill")


def _glob(pattern: str) -> list[str]:
    """The sorted matches of ``pattern``: local ones by :func:`glob.glob` (``**`` recurses),
    a URI's by epath, from its last folder without a wildcard (``**`` is refused there)."""
    if not is_remote(pattern):
        return sorted(glob.glob(pattern, recursive=True))
    if "**" in pattern:
        raise ValueError(
            f"The pattern {pattern!r} uses '**', which only recurses on local paths; name each "
            "level of a URI pattern with '*', e.g. gs://bucket/runs/*/probe_*."
        )
    parts = pattern.split("/")
    first = next(i for i, part in enumerate(parts) if glob.has_magic(part))
    root = epath.Path("/".join(parts[:first]))
    return sorted(str(p) for p in root.glob("/".join(parts[first:])))


def find_results(workdirs=(), pattern: str = "") -> list[str]:
    """The ``results.json`` paths of ``workdirs`` (each a workdir, a results file, or a glob
    pattern of either; local paths or URIs) and of the glob ``pattern``, in that order, each
    once.

    Raises ``FileNotFoundError`` naming a path without a results file or a pattern that
    matches none.
    """
    found = []
    for entry in [*workdirs, *([pattern] if pattern else [])]:
        entry = str(epath.Path(entry).expanduser())
        if glob.has_magic(entry):
            matches = _glob(entry)
            paths = [p if p.endswith(RESULTS) else str(epath.Path(p) / RESULTS) for p in matches]
            paths = [p for p in paths if epath.Path(p).is_file()]
            if not paths:
                raise FileNotFoundError(
                    f"The pattern {entry!r} matches no workdir with a {RESULTS} (matched: "
                    f"{matches[:5] or 'nothing'}); check the pattern or run the programs first."
                )
        else:
            path = entry if entry.endswith(RESULTS) else str(epath.Path(entry) / RESULTS)
            if not epath.Path(path).is_file():
                raise FileNotFoundError(
                    f"{path} does not exist: {entry} is not the workdir of a finished program "
                    "(each program writes WORKDIR/results.json at its end)."
                )
            paths = [path]
        for path in map(str, map(epath.Path, paths)):  # normalised: a file named twice counts once
            if path not in found:
                found.append(path)
    if not found:
        raise ValueError(
            "Nothing to compare: set config.workdirs (paths or patterns) or config.glob, e.g. "
            "--config.glob='runs/*/probe'."
        )
    return found


def program_name(results: dict) -> str | None:
    """``results["program"]``; None for files written before programs named themselves."""
    name = results.get("program")
    return None if name is None else str(name)


def column_prefix(results: dict, *, with_dataset: bool = False) -> str:
    """``program[/protocol][ @fraction labels][ on dataset]``, ``unknown program`` for a file
    without a name. A linear probe without a protocol was written when ``sgd_features`` was
    its only one."""
    name = program_name(results)
    protocol = results.get("protocol", "sgd_features" if name == "linear_probe" else None)
    name = name or UNKNOWN_PROGRAM
    if protocol:
        name += f"/{protocol}"
    fraction = results.get("label_fraction", 1.0)
    if isinstance(fraction, int | float) and fraction != 1.0:
        name += f" @{fraction:.0%} labels" if fraction >= 0.01 else f" @{fraction:g} labels"
    if with_dataset:
        name += f" on {dataset_label(results.get('dataset'))}"
    return name


def metric_keys(results: dict, metrics=DEFAULT_METRICS, exclude=DEFAULT_EXCLUDE) -> list[str]:
    """Numeric top-level keys of ``results`` matching a ``metrics`` pattern, no ``exclude``."""
    return [
        k
        for k, v in results.items()
        if isinstance(v, int | float)
        and not isinstance(v, bool)
        and any(fnmatch.fnmatchcase(k, p) for p in metrics)
        and not any(fnmatch.fnmatchcase(k, p) for p in exclude)
    ]


def encoder_key(results: dict, path: str) -> dict:
    """What a result was measured on: ``{"run", "encoder", and "step" | "seed"}``."""
    workdir = str(resolve(path).parent)
    if program_name(results) in EXPORTING:
        return {"run": workdir, "encoder": "pretrained", "step": results.get("final_step")}
    if not results.get("pretrained"):
        return {"run": workdir, "encoder": "workdir"}
    key = {"run": str(resolve(results["pretrained"])), "encoder": results.get("encoder")}
    if key["encoder"] == "pretrained":
        key["step"] = results.get("step")
    elif key["encoder"] == "random_init":
        key["seed"] = results.get("seed")
    return key


def _unique_suffixes(paths: list[str]) -> list[str]:
    """The shortest trailing path parts that tell ``paths`` apart."""
    parts = [str(epath.Path(p)).split("/") for p in paths]
    for depth in range(1, max(len(p) for p in parts) + 1):
        names = ["/".join(p[-depth:]) for p in parts]
        if len(set(names)) == len(set(map(tuple, parts))):
            return names
    return ["/".join(p) for p in parts]


def _row_labels(keys: list[dict]) -> list[str]:
    runs = sorted({k["run"] for k in keys})
    short = dict(zip(runs, _unique_suffixes(runs), strict=True))
    steps = {}
    for k in keys:
        if k["encoder"] == "pretrained":
            steps.setdefault(k["run"], set()).add(k.get("step"))
    labels = []
    for k in keys:
        label = short[k["run"]]
        if k["encoder"] == "random_init":
            label += " (random init)"
        elif k["encoder"] == "raw_pixels":
            label += " (raw pixels)"
        elif k["encoder"] == "pretrained" and len(steps[k["run"]]) > 1:
            label += f" (step {k.get('step')})"
        labels.append(label)
    return labels


def _read(path: str) -> dict:
    try:
        return json.loads(epath.Path(path).read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e}).") from e


def collect(
    paths: list[str], *, metrics=DEFAULT_METRICS, exclude=DEFAULT_EXCLUDE, group_by="encoder"
):
    """The table of ``paths`` (results files): ``{"columns": [...], "rows": [{"label",
    "key", "reference", "values": {column: value}, "sources": {column: path}}], "datasets":
    [...], "unlabelled": [...]}``, rows and columns in the order they first appear.
    ``reference`` marks a random-init row; ``datasets`` are the results' dataset labels
    (columns name theirs when there are several); ``unlabelled`` the files without a program
    name. Raises ``ValueError`` when two files give the same cell."""
    if group_by not in GROUP_BY:
        raise ValueError(f"config.group_by={group_by!r} is unknown; valid: {list(GROUP_BY)}.")
    inputs = [(path, _read(path)) for path in paths]
    datasets = list(dict.fromkeys(dataset_label(r.get("dataset")) for _, r in inputs))
    columns, rows = [], {}
    for path, results in inputs:
        if group_by == "workdir":
            key = {"run": str(resolve(path).parent), "encoder": "workdir"}
        else:
            key = encoder_key(results, path)
        row = rows.setdefault(
            json.dumps(key, sort_keys=True),
            {"key": key, "reference": False, "values": {}, "sources": {}},
        )
        row["reference"] |= results.get("encoder") == "random_init"
        prefix = column_prefix(results, with_dataset=len(datasets) > 1)
        for metric in metric_keys(results, metrics, exclude):
            column = f"{prefix} {metric}"
            if column in row["sources"]:
                raise ValueError(
                    f"{row['sources'][column]} and {path} both give {column!r} for the same "
                    "encoder; pass only one, or set config.group_by='workdir' (a row per workdir)."
                )
            if column not in columns:
                columns.append(column)
            row["values"][column] = results[metric]
            row["sources"][column] = path
    rows = list(rows.values())
    if group_by == "workdir":
        labels = _unique_suffixes([r["key"]["run"] for r in rows])
    else:
        labels = _row_labels([r["key"] for r in rows])
    for row, label in zip(rows, labels, strict=True):
        row["label"] = label
    return {
        "columns": columns,
        "rows": [{"label": r.pop("label"), **r} for r in rows],
        "datasets": datasets,
        "unlabelled": [path for path, results in inputs if program_name(results) is None],
    }


def _cell(value) -> str:
    return "–" if value is None else f"{value:.4g}"


def markdown(table: dict, title: str = "") -> str:
    """The table as Markdown: a row per encoder (or workdir), a column per program metric."""
    columns = table["columns"]
    lines = [f"{title}\n"] if title else []
    lines.append("| encoder | " + " | ".join(columns) + " |")
    lines.append("|---|" + "---|" * len(columns))
    for row in table["rows"]:
        cells = [_cell(row["values"].get(c)) for c in columns]
        lines.append(f"| {row['label']} | " + " | ".join(cells) + " |")
    notes = []
    if table.get("datasets") and len(table["datasets"]) == 1:
        if table["datasets"][0] != dataset_label(None):
            notes.append(f"Every result is on {table['datasets'][0]}.")
    if table.get("unlabelled"):
        notes.append(
            "Results with no program name (written by an older version): "
            + ", ".join(table["unlabelled"])
            + "; rerun those programs to label their columns."
        )
    return "\n".join([*lines, *(["", *notes] if notes else [])]) + "\n"


def plot(
    table: dict, path: epath.PathLike, title: str = "", *, random_init_line: bool = True
) -> str:
    """A panel per column, a bar per row (missing values left out, each row at the same
    place and in the same colour in every panel); returns ``path``. With
    ``random_init_line``, a random-init row is a dashed horizontal line across the panel
    instead (the level a pretrained encoder must beat), named in the panel's legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns, rows = table["columns"], table["rows"]
    lines = [i for i, r in enumerate(rows) if random_init_line and r.get("reference")]
    bars = [i for i in range(len(rows)) if i not in lines]
    place = {i: x for x, i in enumerate(bars)}
    ncols = min(len(columns), 3) or 1
    nrows = -(-max(len(columns), 1) // ncols)
    width = max(4.0, 0.6 * len(bars) + 1.5)
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, 3.8 * nrows), squeeze=False)
    for ax in axes.flat[len(columns) :]:
        ax.axis("off")
    for ax, column in zip(axes.flat, columns, strict=False):
        shown = [i for i in bars if column in rows[i]["values"]]
        drawn = ax.bar(
            [place[i] for i in shown],
            [rows[i]["values"][column] for i in shown],
            color=[f"C{i % 10}" for i in shown],  # one colour and place per row, every panel
        )
        ax.bar_label(drawn, fmt="%.4g", fontsize=7)
        for i in lines:
            if column in rows[i]["values"]:
                value = rows[i]["values"][column]
                ax.axhline(value, color=f"C{i % 10}", linestyle="--", label=rows[i]["label"])
        if ax.get_lines():
            ax.legend(fontsize=7, loc="lower right")
        ax.set_xticks(range(len(bars)), [rows[i]["label"] for i in bars], rotation=30, ha="right")
        ax.tick_params(axis="x", labelsize=8)
        ax.set_xlim(-0.6, max(len(bars), 1) - 0.4)
        ax.set_title(column, fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path)


def run(config: ml_collections.ConfigDict, workdir: epath.PathLike) -> dict:
    """Collect, then write ``compare.md``, ``compare.json`` and ``compare.png`` into
    ``workdir``; returns the table with ``markdown`` and the output paths."""
    paths = find_results(config.workdirs, config.glob)
    table = collect(
        paths,
        metrics=tuple(config.metrics),
        exclude=tuple(config.exclude),
        group_by=config.group_by,
    )
    workdir = resolve(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    text = markdown(table, config.title)
    outputs = {
        "markdown": str(workdir / "compare.md"),
        "json": str(workdir / "compare.json"),
        "plot": str(workdir / "compare.png"),
    }
    epath.Path(outputs["markdown"]).write_text(text)
    epath.Path(outputs["json"]).write_text(json.dumps({**table, "inputs": paths}, indent=2) + "\n")
    plot(
        table,
        outputs["plot"],
        config.title,
        random_init_line=config.get("random_init_line", True),
    )
    return {**table, "inputs": paths, "outputs": outputs, "table": text}
