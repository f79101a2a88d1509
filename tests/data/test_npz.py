"""The npz-folder source, its error messages, and the real CIFAR-10 copy when present."""

import pathlib

import numpy as np
import pytest

from ssl_jax.data import DataError, make_npz_source

CIFAR10 = pathlib.Path(__file__).resolve().parents[2].parent / "shared" / "data" / "cifar10"


def write(folder, name, images, labels=None, **extra):
    arrays = {"images": images, **extra}
    if labels is not None:
        arrays["labels"] = labels
    np.savez(folder / name, **arrays)
    return folder / name


def random_images(rng, n, shape=(4, 4, 3)):
    return rng.integers(0, 256, (n, *shape), dtype=np.uint8)


def test_color_files_are_concatenated_in_sorted_name_order(tmp_path):
    rng = np.random.default_rng(0)
    parts = {name: random_images(rng, n) for name, n in [("train_10", 3), ("train_02", 5)]}
    labels = {"train_10": np.array([7, 8, 9]), "train_02": np.array([0, 1, 2, 3, 4])}
    for name in parts:  # Written 10 first: the order must come from the sorted names.
        write(tmp_path, f"{name}.npz", parts[name], labels[name].astype(np.uint8))
    write(tmp_path, "test_00.npz", random_images(rng, 2), np.array([1, 2]))
    source = make_npz_source(tmp_path, "train", num_classes=10)  # ids 5, 6 have no image
    images, got_labels = source.get(np.arange(8))
    np.testing.assert_array_equal(images, np.concatenate([parts["train_02"], parts["train_10"]]))
    np.testing.assert_array_equal(got_labels, [0, 1, 2, 3, 4, 7, 8, 9])
    assert got_labels.dtype == np.int32 and source.num_classes == 10
    assert source.image_shape == (4, 4, 3)
    test = make_npz_source(tmp_path, "test", num_classes=10)
    assert len(test) == 2 and test.num_classes == 10


@pytest.mark.parametrize("shape", [(6, 5), (6, 5, 1)])
def test_grayscale_is_repeated_to_three_channels(tmp_path, shape):
    images = np.random.default_rng(1).integers(0, 256, (4, *shape), dtype=np.uint8)
    write(tmp_path, "train_0.npz", images, np.arange(4))
    got, _ = make_npz_source(tmp_path, "train").get(np.arange(4))
    assert got.shape == (4, 6, 5, 3)
    for c in range(3):
        np.testing.assert_array_equal(got[..., c], images.reshape(4, 6, 5))


def test_image_size_resizes(tmp_path):
    write(tmp_path, "train_0.npz", np.full((2, 8, 8, 3), 9, np.uint8), np.arange(2))
    source = make_npz_source(tmp_path, "train", image_size=4)
    images, _ = source.get(np.arange(2))
    assert source.image_shape == (4, 4, 3) and images.shape == (2, 4, 4, 3)
    np.testing.assert_array_equal(images, 9)


def test_missing_folder(tmp_path):
    with pytest.raises(DataError, match="does not exist") as info:
        make_npz_source(tmp_path / "nowhere", "train")
    assert "nowhere" in str(info.value) and "data.path" in str(info.value)


def test_no_files_for_split_lists_what_was_found(tmp_path):
    write(tmp_path, "training.npz", np.zeros((1, 2, 2, 3), np.uint8), np.zeros(1, int))
    with pytest.raises(DataError) as info:
        make_npz_source(tmp_path, "train")
    message = str(info.value)
    assert "train_*.npz" in message and "training.npz" in message


def test_missing_key_names_the_keys_found(tmp_path):
    write(tmp_path, "train_0.npz", np.zeros((1, 2, 2, 3), np.uint8), y=np.zeros(1, int))
    with pytest.raises(DataError) as info:
        make_npz_source(tmp_path, "train")
    message = str(info.value)
    assert "train_0.npz" in message and "['labels']" in message and "'y'" in message


@pytest.mark.parametrize(
    "images, labels, expected",
    [
        (np.zeros((2, 4, 4, 3), np.float32), np.zeros(2, int), ["float32", "uint8"]),
        (np.zeros((2, 4, 4, 3, 1), np.uint8), np.zeros(2, int), ["(2, 4, 4, 3, 1)", "(N, H, W"]),
        (np.zeros((2, 4, 4, 3), np.uint8), np.zeros(3, int), ["(3,)", "2 images"]),
        (np.zeros((2, 4, 4, 3), np.uint8), np.zeros(2, np.float32), ["float32", "integer"]),
        (np.zeros((2, 4, 4, 3), np.uint8), np.array([0, -3]), ["-3", ">= 0"]),
    ],
)
def test_bad_arrays_name_the_file_and_the_problem(tmp_path, images, labels, expected):
    write(tmp_path, "train_0.npz", np.zeros((1, 4, 4, 3), np.uint8), np.zeros(1, int))
    write(tmp_path, "train_1.npz", images, labels)
    with pytest.raises(DataError) as info:
        make_npz_source(tmp_path, "train")
    message = str(info.value)
    assert "train_1.npz" in message
    for part in expected:
        assert part in message


def test_label_above_num_classes(tmp_path):
    write(tmp_path, "train_0.npz", np.zeros((2, 4, 4, 3), np.uint8), np.array([0, 4]))
    with pytest.raises(DataError, match=r"train_0.npz: found label 4 but num_classes is 3"):
        make_npz_source(tmp_path, "train", num_classes=3)


@pytest.mark.parametrize("content", [b"not a zip file at all", b"PK\x03\x04" + b"\x00" * 40])
def test_corrupt_file_is_named(tmp_path, content):
    write(tmp_path, "train_0.npz", np.zeros((1, 4, 4, 3), np.uint8), np.zeros(1, int))
    (tmp_path / "train_1.npz").write_bytes(content)
    with pytest.raises(DataError) as info:
        make_npz_source(tmp_path, "train")
    assert "train_1.npz" in str(info.value) and "cannot read" in str(info.value)


def test_truncated_file_is_named(tmp_path):
    path = write(tmp_path, "train_0.npz", np.ones((50, 8, 8, 3), np.uint8), np.zeros(50, int))
    path.write_bytes(path.read_bytes()[:3000])
    with pytest.raises(DataError, match="train_0.npz: cannot read"):
        make_npz_source(tmp_path, "train")


def test_mismatched_image_shapes_across_files(tmp_path):
    write(tmp_path, "train_0.npz", np.zeros((1, 4, 4, 3), np.uint8), np.zeros(1, int))
    write(tmp_path, "train_1.npz", np.zeros((1, 5, 4, 3), np.uint8), np.zeros(1, int))
    with pytest.raises(DataError) as info:
        make_npz_source(tmp_path, "train")
    message = str(info.value)
    assert "train_1.npz" in message and "train_0.npz" in message
    assert "(5, 4, 3)" in message and "(4, 4, 3)" in message


def test_bad_split_name(tmp_path):
    with pytest.raises(DataError, match="'validation'"):
        make_npz_source(tmp_path, "validation")


@pytest.mark.skipif(not CIFAR10.is_dir(), reason=f"CIFAR-10 copy not found at {CIFAR10}")
def test_real_cifar10_copy():
    for split, size in (("train", 50000), ("test", 10000)):
        source = make_npz_source(CIFAR10, split)
        assert len(source) == size and source.num_classes == 10
        assert source.image_shape == (32, 32, 3)
        images, labels = source.get(np.arange(0, size, 97))
        assert images.dtype == np.uint8 and images.shape[1:] == (32, 32, 3)
        assert labels.min() == 0 and labels.max() == 9
        np.testing.assert_array_equal(np.bincount(source.labels), np.full(10, size // 10))


def test_images_are_memory_mapped_not_loaded(tmp_path):
    images = random_images(np.random.default_rng(2), 6)
    write(tmp_path, "train_0.npz", images, np.arange(6))
    source = make_npz_source(tmp_path, "train")
    mapped = source._open()[0]
    assert isinstance(mapped, np.memmap) and str(mapped.filename) == str(tmp_path / "train_0.npz")
    np.testing.assert_array_equal(source.get(np.array([5, 0]))[0], images[[5, 0]])


def test_a_compressed_file_is_extracted_once_to_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SSL_JAX_CACHE", str(tmp_path / "cache"))
    images = random_images(np.random.default_rng(3), 7)
    np.savez_compressed(tmp_path / "train_0.npz", images=images, labels=np.arange(7))
    first = make_npz_source(tmp_path, "train")
    (cached,) = (tmp_path / "cache" / "npz").glob("*/images.npy")
    stamp = cached.stat().st_mtime_ns
    second = make_npz_source(tmp_path, "train")
    for source in (first, second):
        np.testing.assert_array_equal(source.get(np.arange(7))[0], images)
    assert cached.stat().st_mtime_ns == stamp  # not extracted again
    np.savez_compressed(tmp_path / "train_0.npz", images=images[::-1], labels=np.arange(7))
    np.testing.assert_array_equal(
        make_npz_source(tmp_path, "train").get(np.arange(7))[0], images[::-1]
    )


def test_the_source_pickles_without_its_arrays(tmp_path):
    import pickle

    write(tmp_path, "train_0.npz", np.zeros((400, 16, 16, 3), np.uint8), np.zeros(400, int))
    source = make_npz_source(tmp_path, "train")
    source.get(np.arange(3))
    assert len(pickle.dumps(source)) < 20_000  # the 300 KB of images stay in the file
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(source)).get(np.arange(3))[0], 0)


def labelled(tmp_path, train_labels, test_labels=None):
    n = len(train_labels)
    write(tmp_path, "train_0.npz", np.zeros((n, 2, 2, 3), np.uint8), np.asarray(train_labels))
    if test_labels is not None:
        m = len(test_labels)
        write(tmp_path, "test_0.npz", np.zeros((m, 2, 2, 3), np.uint8), np.asarray(test_labels))


def test_a_stray_label_is_an_error_naming_it(tmp_path):
    labelled(tmp_path, [0, 1, 2] * 20 + [255])
    with pytest.raises(DataError, match=r"4 distinct ids up to 255.*rare ids: 255 \(1 images\)"):
        make_npz_source(tmp_path, "train")


def test_sparse_ids_need_num_classes(tmp_path):
    labelled(tmp_path, [0, 1000, 2000] * 5, [0, 2000])
    with pytest.raises(DataError, match="--config.data.num_classes=2001 to keep sparse ids"):
        make_npz_source(tmp_path, "train")
    assert make_npz_source(tmp_path, "train", num_classes=2001).num_classes == 2001
    assert make_npz_source(tmp_path, "test", num_classes=2001).num_classes == 2001


def test_a_class_only_in_test_is_an_error_and_test_takes_trains_classes(tmp_path):
    labelled(tmp_path, [0, 1, 2, 3] * 5, [0, 1, 4])
    with pytest.raises(DataError, match=r"label\(s\) \[4\] appear in the test split but not"):
        make_npz_source(tmp_path, "test")
    labelled(tmp_path, [0, 1, 2, 3] * 5, [0, 1])  # a test split without the last classes
    assert make_npz_source(tmp_path, "test").num_classes == 4
