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
    out = plot_metrics(workdir, keys=("loss", "lr"), out=str(tmp_path / "x.png"))
    assert out == str(tmp_path / "x.png")
    assert is_png(out)
    assert not os.path.exists(os.path.join(workdir, "loss_lr.png"))


def test_missing_metrics_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="metrics.jsonl does not exist"):
        plot_metrics(str(tmp_path / "nowhere"))


def test_a_misspelled_column_is_an_error_listing_the_logged_ones(workdir):
    with pytest.raises(
        ValueError, match=r"no column\(s\) \['los'\]; the logged columns are \['loss', 'lr'\]"
    ):
        plot_metrics(workdir, keys=("los",))
    assert not os.path.exists(os.path.join(workdir, "los.png"))


def test_the_command_line(workdir, capsys):
    from ssl_jax.plotting import main

    assert main(["plotting", "--help"]) == 0 and "usage:" in capsys.readouterr().out
    assert main(["plotting"]) == 2
    assert main(["plotting", workdir, "los"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("plotting: ") and "'loss'" in err
    assert main(["plotting", workdir, "lr"]) == 0
    assert capsys.readouterr().out.strip() == os.path.join(workdir, "lr.png")
