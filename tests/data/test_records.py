"""ArrayRecord shards: the converter (folder, digits), reading them back, resuming, errors."""

import json
import os

import ml_collections
import numpy as np
import pytest

from ssl_jax.config import data_defaults
from ssl_jax.data import BatchIterator, DataError, FolderSource, RecordSource, get_source
from ssl_jax.data.records import MANIFEST
from ssl_jax.programs import convert_data
from tests.data.test_folder import write_image


def data(**fields) -> ml_collections.ConfigDict:
    return data_defaults(**fields)


def convert(out, shard_size=500, splits=("train", "test"), **fields):
    return convert_data.convert(
        data(**fields), out, splits=splits, shard_size=shard_size, progress=False
    )


@pytest.fixture(scope="module")
def digits_records(tmp_path_factory):
    out = tmp_path_factory.mktemp("digits_records")
    convert(out, name="digits", image_size=8)
    return out


def test_digits_read_back_exactly(digits_records):
    for split in ("train", "test"):
        want = get_source(data(name="digits", image_size=8), split)
        got = RecordSource(digits_records, split)
        assert len(got) == len(want) and got.image_shape == want.image_shape == (8, 8, 3)
        assert got.num_classes == want.num_classes == 10
        indices = np.random.default_rng(0).permutation(len(want))[:300]
        for a, b in zip(got.get(indices), want.get(indices), strict=True):
            np.testing.assert_array_equal(a, b)
    manifest = json.loads((digits_records / MANIFEST).read_text())
    assert [s["count"] for s in manifest["splits"]["train"]["shards"]] == [500, 500, 437]


def test_the_records_source_through_the_config(digits_records):
    source = get_source(data(name="records", path=str(digits_records)), "train")
    assert isinstance(source, RecordSource) and len(source) == 1437


def test_workers_read_the_same_batches(digits_records):
    source = RecordSource(digits_records, "train")
    batches = BatchIterator(source, global_batch_size=64, seed=1)
    got = [b for _, (_, b) in zip(range(5), batches.iterate(20, workers=2), strict=False)]
    for step, batch in zip(range(20, 25), got, strict=True):
        want = batches.batch_at(step)
        np.testing.assert_array_equal(batch["images"], want["images"])
        np.testing.assert_array_equal(batch["labels"], want["labels"])


def make_folder(root):
    """JPEG and PNG files of several sizes in two classes."""
    for c, name in enumerate(["cat", "dog"]):
        for i in range(6):
            size = (12 + i, 9 + 2 * i)
            path = root / name / f"{i}.{'jpg' if i % 2 else 'png'}"
            write_image(path, 40 * c + 5 * i, size=size)
    return root


def test_a_folder_keeps_its_files_and_reads_like_the_folder(tmp_path):
    root = make_folder(tmp_path / "images")
    manifest = convert(
        tmp_path / "out", shard_size=4, splits=("train",), name="folder", path=str(root)
    )
    assert manifest["class_names"] == ["cat", "dog"] and manifest["splits"]["train"]["count"] == 12
    assert manifest["splits"]["train"]["image_shape"] is None  # several sizes
    with pytest.raises(DataError, match="several sizes; set --config.data.image_size"):
        RecordSource(tmp_path / "out", "train")
    got = RecordSource(tmp_path / "out", "train", image_size=8)
    want = FolderSource(root, "train", image_size=8)
    for a, b in zip(got.get(np.arange(12)), want.get(np.arange(12)), strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_corrupt_file_stops_the_conversion_with_its_name(tmp_path):
    root = make_folder(tmp_path / "images")
    (root / "dog" / "3.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match=r"dog/3.jpg: cannot decode the image"):
        convert(tmp_path / "out", shard_size=4, splits=("train",), name="folder", path=str(root))
    assert not (tmp_path / "out" / MANIFEST).exists()


def test_an_interrupted_conversion_resumes_and_keeps_finished_shards(tmp_path, monkeypatch):
    out = tmp_path / "out"
    real = convert_data._write_shard
    calls = []

    def fail_third(source, start, stop, path, bar):
        calls.append(path.name)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(source, start, stop, path, bar)

    monkeypatch.setattr(convert_data, "_write_shard", fail_third)
    with pytest.raises(KeyboardInterrupt):
        convert(out, name="digits", image_size=8)
    assert not (out / MANIFEST).exists()
    first = out / "train-00000-of-00003.array_record"
    stamp = os.stat(first).st_mtime_ns
    monkeypatch.setattr(convert_data, "_write_shard", real)
    resumed = convert(out, name="digits", image_size=8)
    assert os.stat(first).st_mtime_ns == stamp  # not written again
    reference = convert(tmp_path / "reference", name="digits", image_size=8)
    assert resumed["splits"] == reference["splits"]  # same shards, same checksums
    assert sorted(os.listdir(out)) == sorted(os.listdir(tmp_path / "reference"))


def test_another_input_into_the_same_folder_is_refused(digits_records):
    with pytest.raises(DataError, match="holds a conversion of another input"):
        convert(digits_records, name="digits", image_size=16)


def test_missing_or_damaged_records_are_clear_errors(tmp_path, digits_records):
    with pytest.raises(DataError, match="no manifest.json; expected a folder written by"):
        RecordSource(tmp_path, "train")
    copy = tmp_path / "copy"
    copy.mkdir()
    manifest = json.loads((digits_records / MANIFEST).read_text())
    (copy / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(DataError, match="shard\\(s\\) \\['train-00000-of-00003.array_record'"):
        RecordSource(copy, "train")
    for shard in manifest["splits"]["train"]["shards"]:
        os.symlink(digits_records / shard["file"], copy / shard["file"])
    manifest["splits"]["train"]["count"] = 1500
    (copy / MANIFEST).write_text(json.dumps(manifest))
    source = RecordSource(copy, "train")
    with pytest.raises(DataError, match="hold 1437 records but manifest.json says 1500"):
        source.get(np.arange(3))
    with pytest.raises(DataError, match="no split 'test'"):
        del manifest["splits"]["test"]
        (copy / MANIFEST).write_text(json.dumps(manifest))
        RecordSource(copy, "test")


def test_a_remote_output_folder_is_refused(tmp_path):
    with pytest.raises(DataError, match="written to a local folder"):
        convert("gs://bucket/records", name="digits")


def convert_command(workdir) -> list[str]:
    """launch/convert_data.py on the digits into ``workdir`` (run from the repository root)."""
    import sys

    return [
        sys.executable,
        "launch/convert_data.py",
        "--config=configs/convert_data.py:runlocal",
        f"--workdir={workdir}",
        "--config.progress=False",
    ]


def test_the_launcher_converts_and_resumes(tmp_path):
    import subprocess

    from tests.programs.test_launch import REPO

    cmd = convert_command(tmp_path)
    for _ in range(2):  # the second run finds every shard done
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert json.loads(proc.stdout)["train_count"] == 1437
        assert "Unable to initialize backend" not in proc.stderr  # JAX's INFO, silenced
