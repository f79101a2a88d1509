"""The tfds source: on tfds's mock data, and on a dataset prepared here (workers, conversion)."""

import numpy as np
import pytest

from ssl_jax.data import DataError, TfdsSource

tfds = pytest.importorskip("tensorflow_datasets")
if not hasattr(getattr(tfds, "testing", None), "mock_data"):
    pytest.skip("tfds.testing.mock_data is unavailable", allow_module_level=True)


@pytest.fixture
def mock_cifar10():
    with tfds.testing.mock_data(num_examples=12, policy=tfds.testing.MockPolicy.USE_CODE):
        yield


def test_cifar10_shapes_dtypes_and_labels(mock_cifar10):
    source = TfdsSource("cifar10", "train")
    assert len(source) == 12 and source.num_classes == 10
    assert source.image_shape == (32, 32, 3) and source.name == "tfds:cifar10/train"
    images, labels = source.get(np.arange(12))
    assert images.shape == (12, 32, 32, 3) and images.dtype == np.uint8
    assert labels.shape == (12,) and labels.dtype == np.int32
    assert labels.min() >= 0 and labels.max() < 10
    raw = tfds.data_source("cifar10", split="train")
    for i in (0, 7):
        np.testing.assert_array_equal(images[i], raw[i]["image"])
        assert labels[i] == raw[i]["label"]
    again, _ = source.get(np.array([7, 0]))
    np.testing.assert_array_equal(again, images[[7, 0]])


def test_image_size_resizes(mock_cifar10):
    source = TfdsSource("cifar10", "test", image_size=16)
    images, _ = source.get(np.array([0, 1]))
    assert source.image_shape == (16, 16, 3) and images.shape == (2, 16, 16, 3)


def test_split_mapping(mock_cifar10):
    assert TfdsSource("cifar10", "test").name == "tfds:cifar10/test"
    assert TfdsSource("cifar10", "test", test_split="train[:50%]").name.endswith("train[:50%]")
    assert TfdsSource("cifar10", "train", train_split="test").name == "tfds:cifar10/test"


def test_missing_feature_lists_the_features(mock_cifar10):
    with pytest.raises(DataError, match=r"no feature\(s\) \['fine_label'\].*'image', 'label'"):
        TfdsSource("cifar10", "train", label_key="fine_label")


def test_unprepared_dataset_explains_how_to_prepare_it(tmp_path):
    with pytest.raises(DataError) as info:
        TfdsSource("cifar10", "train", data_dir=str(tmp_path))
    message = str(info.value)
    assert "tfds build cifar10" in message and str(tmp_path) in message
    assert "tfds_data_dir" in message


def test_unknown_dataset_name(tmp_path):
    with pytest.raises(DataError, match="no dataset 'no_such_dataset_xyz'"):
        TfdsSource("no_such_dataset_xyz", "train", data_dir=str(tmp_path))


class TinyShapes(tfds.core.GeneratorBasedBuilder):
    """A real tfds dataset, prepared here in ArrayRecord format (PNG bytes, so no TensorFlow)."""

    VERSION = tfds.core.Version("1.0.0")
    code_path = None  # No checksums file next to the code (tfds looks it up by package path).

    def _info(self):
        features = {
            "image": tfds.features.Image(shape=(16, 16, 3)),
            "label": tfds.features.ClassLabel(num_classes=3),
        }
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict(features))

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(40, 0), "test": self._generate_examples(9, 1)}

    def _generate_examples(self, count, seed):
        import io

        from PIL import Image

        rng = np.random.default_rng(seed)
        for i in range(count):
            encoded = io.BytesIO()
            Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(encoded, "PNG")
            encoded.seek(0)
            yield i, {"image": encoded, "label": i % 3}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("tfds")
    TinyShapes(data_dir=str(data_dir), file_format="array_record").download_and_prepare()
    return str(data_dir)


def test_a_prepared_dataset_reads_its_records(prepared):
    source = TfdsSource("tiny_shapes", "train", data_dir=prepared)
    assert len(source) == 40 and source.num_classes == 3 and source.image_shape == (16, 16, 3)
    raw = tfds.data_source("tiny_shapes", split="train", data_dir=prepared)
    images, labels = source.get(np.array([5, 0]))
    for got_image, got_label, i in zip(images, labels, (5, 0), strict=True):
        np.testing.assert_array_equal(got_image, raw[i]["image"])
        assert got_label == raw[i]["label"]


def test_workers_read_the_same_batches_as_the_main_process(prepared):
    from ssl_jax.data import BatchIterator

    batches = BatchIterator(
        TfdsSource("tiny_shapes", "train", data_dir=prepared), global_batch_size=8, seed=3
    )
    got = [b for _, (_, b) in zip(range(6), batches.iterate(4, workers=2), strict=False)]
    for step, batch in zip(range(4, 10), got, strict=True):
        want = batches.batch_at(step)
        np.testing.assert_array_equal(batch["images"], want["images"])
        np.testing.assert_array_equal(batch["labels"], want["labels"])


def test_converted_to_array_record_shards_reads_back_exactly(prepared, tmp_path):
    from ssl_jax.config import data_defaults
    from ssl_jax.data import RecordSource
    from ssl_jax.programs import convert_data

    data = data_defaults(name="tfds", tfds_name="tiny_shapes", tfds_data_dir=prepared)
    manifest = convert_data.convert(
        data, tmp_path, splits=("train", "test"), shard_size=16, progress=False
    )
    assert manifest["splits"]["train"]["count"] == 40 and manifest["splits"]["test"]["count"] == 9
    for split in ("train", "test"):
        got, want = (
            RecordSource(tmp_path, split),
            TfdsSource("tiny_shapes", split, data_dir=prepared),
        )
        assert len(got) == len(want) and got.num_classes == 3
        for a, b in zip(got.get(np.arange(len(want))), want.get(np.arange(len(want))), strict=True):
            np.testing.assert_array_equal(a, b)
