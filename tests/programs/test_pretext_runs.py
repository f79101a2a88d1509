"""The generative pretext tasks through the pretrain program: their pictures are drawn at the
end of the run, and a colorization encoder's export takes the L channel, which every
downstream program then feeds it without being told."""

import os

import numpy as np
import pytest

from ssl_jax.export import load_export, read_spec
from ssl_jax.programs import knn, pretrain
from tests.methods.test_pretext import DEVICE_CONFIGS
from tests.programs.tiny import tiny_pretrain_config, tiny_probe_config


def run(name, workdir, **overrides):
    config = tiny_pretrain_config(
        **{"method.name": name, "total_steps": 2, "data.batch_size": 8, **DEVICE_CONFIGS[name]},
        **overrides,
    )
    return pretrain.run(config, str(workdir))


@pytest.mark.slow  # a pretraining run and a kNN program (about 18 s)
def test_colorization_exports_a_lightness_encoder_and_draws_its_colorizations(tmp_path):
    results = run("colorization", tmp_path / "run")
    assert os.path.getsize(results["reconstructions"]) > 1000  # a PNG of 3 rows x 8 images
    assert read_spec(str(tmp_path / "run"))["input"]["color_space"] == "lab_l"

    # Downstream programs feed it L: images that differ only in colour encode alike.
    export = load_export(str(tmp_path / "run"))
    gray = np.full((2, 16, 16, 3), 128, np.uint8)
    tinted = gray.copy()
    tinted[..., 0] += 40  # redder at (nearly) the same lightness as ...
    tinted[..., 1] -= 14  # ... the gray: L* of (168, 114, 128) is 54.0 vs 53.6
    f_gray, f_tinted = np.asarray(export.encode(gray)), np.asarray(export.encode(tinted))
    np.testing.assert_allclose(f_gray, f_tinted, rtol=0.05, atol=0.05)
    out = knn.run(tiny_probe_config(str(tmp_path / "run")), str(tmp_path / "knn"))
    assert out["feature_dim"] == 32 and out["top1_k5"] > 10.0


@pytest.mark.slow  # two more runs to compile (about 40 s)
@pytest.mark.parametrize("name", ["inpainting", "mae"])
def test_inpainting_and_mae_runs_draw_their_reconstructions(name, tmp_path):
    results = run(name, tmp_path)
    assert os.path.getsize(results["reconstructions"]) > 1000
    assert results["final_step"] == 2 and np.isfinite(results["loss"])
