import json
import os

import pytest

from ssl_jax.plotting import plot_metrics

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def workdir(tmp_path):
    rows = [{"step": s, "loss": 2.0 / s, "lr": 0.1 * s} for s in range(1, 11)]
    rows.append({"step": 11, "loss": "nan"})
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(tmp_path)


def is_png(path):
    with open(path, "rb") as f:
        data = f.read()
    return data.startswith(PNG_MAGIC) and len(data) > 1000


def test_default_loss_plot(workdir):
    out = plot_metrics(workdir)
    assert out == os.path.join(workdir, "loss.png")
    assert is_png(out)


def test_several_keys_and_explicit_out(workdir, tmp_path):
    out = plot_metrics(workdir, keys=("loss", "lr", "never_logged"), out=str(tmp_path / "x.png"))
    assert out == str(tmp_path / "x.png")
    assert is_png(out)
    assert not os.path.exists(os.path.join(workdir, "loss_lr_never_logged.png"))


def test_missing_metrics_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="metrics.jsonl does not exist"):
        plot_metrics(str(tmp_path / "nowhere"))
