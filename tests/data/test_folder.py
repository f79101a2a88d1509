"""The image-folder source on PNG files written by the tests."""

import io
import re

import numpy as np
import pytest
from PIL import Image

from ssl_jax.data import BatchIterator, DataError, FolderSource, iterate_eval


def write_image(path, value, size=(4, 4), mode="RGB"):
    """A constant image; `value` encodes which file it is."""
    path.parent.mkdir(parents=True, exist_ok=True)
    channels = {"RGB": 3, "RGBA": 4, "L": None}[mode]
    shape = (size[0], size[1]) if channels is None else (size[0], size[1], channels)
    Image.fromarray(np.full(shape, value, np.uint8), mode).save(path)


def make_holdout_tree(root, per_class=20):
    for class_id, name in [(1, "b_dog"), (0, "a_cat")]:  # Created out of order on purpose.
        for i in range(per_class):
            write_image(root / name / f"img_{i:02d}.png", class_id * 100 + i)
    return root


def pixel_ids(source):
    images, labels = source.get(np.arange(len(source)))
    return images[:, 0, 0, 0].astype(int), labels


def test_holdout_split_every_tenth_file_is_test(tmp_path):
    root = make_holdout_tree(tmp_path)
    train, test = FolderSource(root, "train"), FolderSource(root, "test")
    assert train.class_names == ["a_cat", "b_dog"] and train.num_classes == 2
    assert len(train) == 36 and len(test) == 4
    test_ids, test_labels = pixel_ids(test)
    np.testing.assert_array_equal(test_ids, [9, 19, 109, 119])
    np.testing.assert_array_equal(test_labels, [0, 0, 1, 1])
    train_ids, train_labels = pixel_ids(train)
    expected = [c * 100 + i for c in (0, 1) for i in range(20) if i % 10 != 9]
    np.testing.assert_array_equal(train_ids, expected)
    np.testing.assert_array_equal(train_labels, np.array(expected) // 100)
    assert train_labels.dtype == np.int32


def test_get_decodes_in_the_requested_order_to_uint8_rgb(tmp_path):
    source = FolderSource(make_holdout_tree(tmp_path), "train")
    images, labels = source.get(np.array([20, 0, 20]))
    assert images.shape == (3, 4, 4, 3) and images.dtype == np.uint8
    np.testing.assert_array_equal(images[:, 0, 0, 0], [102, 0, 102])
    np.testing.assert_array_equal(labels, [1, 0, 1])
    assert source.image_shape == (4, 4, 3)


@pytest.mark.parametrize("test_dir", ["test", "val"])
def test_train_test_layout(tmp_path, test_dir):
    for split, n in (("train", 3), (test_dir, 2)):
        for class_id, name in enumerate(["cat", "dog", "emu"]):
            for i in range(n):
                write_image(tmp_path / split / name / f"{i}.png", 10 * class_id + i)
    write_image(tmp_path / "notes" / "x.png", 0)  # Ignored: the train/ layout is used.
    train, test = FolderSource(tmp_path, "train"), FolderSource(tmp_path, "test")
    assert len(train) == 9 and len(test) == 6 and test.num_classes == 3
    ids, labels = pixel_ids(test)
    np.testing.assert_array_equal(ids, [0, 1, 10, 11, 20, 21])
    np.testing.assert_array_equal(labels, [0, 0, 1, 1, 2, 2])


def test_test_class_ids_follow_the_train_classes(tmp_path):
    for name in ("a", "b", "c"):
        write_image(tmp_path / "train" / name / "0.png", 1)
    write_image(tmp_path / "test" / "c" / "0.png", 1)
    _, labels = FolderSource(tmp_path, "test").get(np.array([0]))
    assert labels[0] == 2
    write_image(tmp_path / "test" / "zebra" / "0.png", 1)
    with pytest.raises(DataError, match="'zebra' has no folder in"):
        FolderSource(tmp_path, "test")


def test_train_layout_without_test_or_val(tmp_path):
    write_image(tmp_path / "train" / "a" / "0.png", 1)
    assert len(FolderSource(tmp_path, "train")) == 1
    with pytest.raises(DataError, match="neither test/ nor val/"):
        FolderSource(tmp_path, "test")


def test_extensions_modes_and_ignored_files(tmp_path):
    write_image(tmp_path / "a" / "0.PNG", 50, mode="L")
    write_image(tmp_path / "a" / "1.bmp", 60, mode="RGB")
    write_image(tmp_path / "a" / "2.png", 70, mode="RGBA")
    (tmp_path / "a" / "readme.txt").write_text("not an image")
    (tmp_path / "a" / ".hidden.png").write_bytes(b"junk")
    source = FolderSource(tmp_path, "train")
    images, _ = source.get(np.arange(len(source)))
    assert len(source) == 3 and images.shape == (3, 4, 4, 3)
    np.testing.assert_array_equal(images[:, 1, 1], [[50] * 3, [60] * 3, [70] * 3])


def test_resizing_to_image_size_allows_mixed_sizes(tmp_path):
    write_image(tmp_path / "a" / "0.png", 30, size=(4, 4))
    write_image(tmp_path / "b" / "0.png", 40, size=(6, 10))
    source = FolderSource(tmp_path, "train", image_size=8)
    images, _ = source.get(np.arange(2))
    assert source.image_shape == (8, 8, 3) and images.shape == (2, 8, 8, 3)
    np.testing.assert_array_equal(images[0], 30)
    np.testing.assert_array_equal(images[1], 40)


def test_mixed_sizes_without_image_size_fail_at_construction(tmp_path):
    write_image(tmp_path / "a" / "0.png", 1, size=(4, 4))
    write_image(tmp_path / "b" / "0.png", 1, size=(6, 4))
    with pytest.raises(DataError) as info:
        FolderSource(tmp_path, "train")
    message = str(info.value)
    assert "b/0.png" in message and "6x4" in message and "data.image_size" in message


def test_mixed_sizes_within_a_class_fail_in_get(tmp_path):
    write_image(tmp_path / "a" / "0.png", 1, size=(4, 4))
    write_image(tmp_path / "a" / "1.png", 1, size=(5, 5))
    source = FolderSource(tmp_path, "train")
    source.get(np.array([0]))
    with pytest.raises(DataError, match=r"a/1.png: image is 5x5 .*data.image_size"):
        source.get(np.array([0, 1]))


def test_corrupt_first_file_fails_at_construction(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "0.jpg").write_bytes(b"\xff\xd8 definitely not a jpeg")
    write_image(tmp_path / "a" / "1.png", 1)
    with pytest.raises(DataError, match=r"a/0.jpg: cannot decode the image"):
        FolderSource(tmp_path, "train")


def test_corrupt_later_file_fails_in_get_naming_it(tmp_path):
    write_image(tmp_path / "a" / "0.png", 1)
    write_image(tmp_path / "a" / "1.png", 1, size=(64, 64))
    path = tmp_path / "a" / "1.png"
    path.write_bytes(path.read_bytes()[:60])  # Truncated: the header opens, decoding fails.
    source = FolderSource(tmp_path, "train", image_size=4)
    with pytest.raises(DataError, match=r"a/1.png: cannot decode the image"):
        source.get(np.array([0, 1]))


def test_missing_folder(tmp_path):
    with pytest.raises(DataError, match=r"nowhere does not exist.*data.path"):
        FolderSource(tmp_path / "nowhere", "train")


def test_no_class_folders(tmp_path):
    write_image(tmp_path / "loose.png", 1)
    with pytest.raises(DataError, match=r"no class folders; found \['loose.png'\]"):
        FolderSource(tmp_path, "train")


def test_empty_class_folder(tmp_path):
    write_image(tmp_path / "a" / "0.png", 1)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "list.csv").write_text("x")
    with pytest.raises(DataError) as info:
        FolderSource(tmp_path, "train")
    message = str(info.value)
    assert "/b: class folder has no images" in message and "list.csv" in message


def test_holdout_with_too_few_images_gives_an_empty_test_split(tmp_path):
    make_holdout_tree(tmp_path, per_class=5)
    assert len(FolderSource(tmp_path, "train")) == 10
    with pytest.raises(DataError, match="split 'test' is empty"):
        FolderSource(tmp_path, "test")


def test_channel_order_is_rgb(tmp_path):
    (tmp_path / "a").mkdir()
    Image.fromarray(np.full((3, 3, 3), [10, 120, 230], np.uint8)).save(tmp_path / "a" / "0.png")
    images, _ = FolderSource(tmp_path, "train").get(np.array([0]))
    np.testing.assert_array_equal(images[0, 2, 2], [10, 120, 230])


def corrupt_bytes(kind):
    """A 16x16 image file's bytes, ``"jpg_half"`` etc.: damaged as files get damaged."""
    fmt, damage = kind.split("_")
    buffer = io.BytesIO()
    image = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    Image.fromarray(image).save(buffer, format={"jpg": "JPEG", "png": "PNG"}[fmt])
    data = buffer.getvalue()
    damaged = {"half": data[: len(data) // 2], "empty": b"", "garbage": b"<html>404</html>"}
    return damaged[damage]


@pytest.mark.parametrize("kind", ["jpg_half", "jpg_garbage", "png_half", "png_empty"])
def test_a_corrupt_image_is_named_with_the_fix(tmp_path, kind):
    """Start-up decodes one image and reads one header per class; a later corrupt file fails
    when its batch is loaded. Either way the error names the file and says what to do."""
    write_image(tmp_path / "a" / "0.png", 1)
    write_image(tmp_path / "a" / "1.png", 1)
    bad = tmp_path / "a" / f"2.{kind[:3]}"
    bad.write_bytes(corrupt_bytes(kind))
    with pytest.raises(DataError) as info:
        source = FolderSource(tmp_path, "train")
        source.get(np.arange(len(source)))
    message = str(info.value)
    assert message.startswith(f"{bad}: cannot decode the image"), message
    assert "replace it with a valid image" in message and "start a new run" in message


def test_a_corrupt_first_image_of_a_class_fails_at_construction(tmp_path):
    write_image(tmp_path / "a" / "0.png", 1)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "0.jpg").write_bytes(corrupt_bytes("jpg_garbage"))
    with pytest.raises(
        DataError, match=r"b/0.jpg: cannot open the image.*replace it with a valid image"
    ):
        FolderSource(tmp_path, "train")  # image_size unset: every class's first header is read


def test_a_corrupt_image_stops_training_and_evaluation_batches_at_its_batch(tmp_path):
    """The error crosses from the worker process unchanged, after the batches before it."""
    for name in ("a", "b"):
        for i in range(8):
            write_image(tmp_path / name / f"{i}.png", i)
    bad = tmp_path / "b" / "3.png"  # index 11: the third batch of 4
    bad.write_bytes(corrupt_bytes("png_half"))
    source = FolderSource(tmp_path, "train")
    steps = []
    with pytest.raises(DataError, match=re.escape(f"{bad}: cannot decode")):
        for step, _ in BatchIterator(source, global_batch_size=4, seed=0, shuffle=False).iterate():
            steps.append(step)
    assert steps == [0, 1]
    batches = []
    with pytest.raises(DataError, match=re.escape(f"{bad}: cannot decode")):
        for batch in iterate_eval(source, batch_size=4):
            batches.append(batch)
    assert len(batches) == 2
