import glob
import json
import os

import jax.numpy as jnp
import numpy as np
import pytest

from ssl_jax.metrics import (
    MetricsWriter,
    read_metrics,
    topk_accuracy,
    truncate_after,
    write_results,
)


def _reject_constant(name):
    raise ValueError(f"{name} is not valid JSON")


def strict_rows(path):
    """Rows parsed as strict JSON: NaN/Infinity tokens are rejected."""
    with open(path) as f:
        return [json.loads(line, parse_constant=_reject_constant) for line in f if line.strip()]


def test_writer_writes_python_scalars(tmp_path):
    writer = MetricsWriter(str(tmp_path))
    row = writer.write(
        jnp.int32(3),
        {
            "loss": jnp.float32(1.5),
            "count": jnp.array(7, jnp.int32),
            "lr": np.float64(0.25),
            "half": jnp.bfloat16(0.5),
            "hist": jnp.array([1.0, 2.0]),
        },
    )
    writer.write(4, {"loss": 1.25})
    writer.close()
    expected_first = {"step": 3, "loss": 1.5, "count": 7, "lr": 0.25, "half": 0.5, "hist": [1, 2]}
    assert row == expected_first
    rows = strict_rows(tmp_path / "metrics.jsonl")
    assert rows == [expected_first, {"step": 4, "loss": 1.25}]
    assert type(rows[0]["count"]) is int and type(rows[0]["loss"]) is float
    assert read_metrics(str(tmp_path / "metrics.jsonl")) == rows


def test_nonfinite_scalars_become_strings(tmp_path):
    writer = MetricsWriter(str(tmp_path))
    row = writer.write(1, {"loss": jnp.float32(jnp.nan), "grad": np.float32(np.inf)})
    assert row == {"step": 1, "loss": "nan", "grad": "inf"}
    assert strict_rows(tmp_path / "metrics.jsonl") == [row]


def test_nonfinite_in_array_metric_is_valid_json(tmp_path):
    row = MetricsWriter(str(tmp_path)).write(1, {"per_class": jnp.array([0.5, jnp.nan])})
    assert row["per_class"] == [0.5, "nan"]
    assert strict_rows(tmp_path / "metrics.jsonl") == [row]


def test_writer_creates_workdir(tmp_path):
    workdir = tmp_path / "a" / "b"
    MetricsWriter(str(workdir)).write(0, {"x": 1})
    assert (workdir / "metrics.jsonl").exists()


def test_tensorboard_event_files(tmp_path):
    writer = MetricsWriter(str(tmp_path), tensorboard=True)
    writer.write(1, {"my_loss_tag": jnp.float32(0.5)})
    writer.write(2, {"my_loss_tag": jnp.float32(0.25)})
    writer.close()
    events = glob.glob(os.path.join(tmp_path, "tensorboard", "events.out.tfevents.*"))
    assert len(events) == 1
    with open(events[0], "rb") as f:
        content = f.read()
    assert content.count(b"my_loss_tag") == 2


def test_no_tensorboard_dir_by_default(tmp_path):
    MetricsWriter(str(tmp_path)).write(1, {"loss": 0.5})
    assert not (tmp_path / "tensorboard").exists()


def test_truncate_after_drops_later_rows_and_cut_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    lines = [json.dumps({"step": s, "loss": 1.0 / s}) for s in range(1, 6)]
    path.write_text("\n".join(lines) + '\n{"step": 6, "lo')
    truncate_after(str(path), 3)
    assert strict_rows(path) == [{"step": s, "loss": 1.0 / s} for s in range(1, 4)]
    assert path.read_text().endswith("\n")


def test_truncate_after_keeps_everything_up_to_step(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1}\n{"step": 2}\n{"step": 2, "eval": 3}\n')
    truncate_after(str(path), 2)
    assert strict_rows(path) == [{"step": 1}, {"step": 2}, {"step": 2, "eval": 3}]


def test_truncate_after_missing_file_is_noop(tmp_path):
    truncate_after(str(tmp_path / "metrics.jsonl"), 3)
    assert not (tmp_path / "metrics.jsonl").exists()


def test_write_results(tmp_path):
    workdir = tmp_path / "probe"
    path = write_results(str(workdir), {"top1": jnp.float32(87.5), "n": jnp.int32(3), "x": 2})
    assert path == os.path.join(str(workdir), "results.json")
    with open(path) as f:
        results = json.load(f)
    assert results == {"top1": 87.5, "n": 3, "x": 2}


def test_topk_accuracy_hand_cases():
    logits = np.array([[0.1, 0.5, 0.4], [0.9, 0.05, 0.05], [0.2, 0.3, 0.5], [0.0, 0.1, 0.2]])
    labels = np.array([2, 0, 0, 2])
    acc = topk_accuracy(logits, labels, ks=(1, 2, 3))
    assert acc == pytest.approx({"top1": 50.0, "top2": 75.0, "top3": 100.0})


def test_topk_accuracy_ties_go_to_lower_index():
    logits = np.array([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0]])
    assert topk_accuracy(logits, np.array([0, 1]), ks=(1,)) == {"top1": 50.0}
