"""The export's spec: every checkpoint carries one, and ``make_spec`` validates each field."""

import ml_collections
import pytest

from ssl_jax import checkpoint
from ssl_jax.augment import IMAGENET_MEAN, IMAGENET_STD
from ssl_jax.export import check_spec, make_input_spec, make_spec
from tests.programs.tiny import tiny_pretrain_config

RGB = dict(size=8, mean=IMAGENET_MEAN, std=IMAGENET_STD)
MODEL = {"backbone": "resnet18", "width": 4, "stem": "cifar", "zero_init_residual": True}


def spec_fields(**overrides):
    fields = dict(input=RGB, network="online", method="simclr", feature_dim=32, step=6)
    return {**fields, **overrides}


def test_every_checkpoint_carries_the_spec_of_its_export(pretrained):
    workdir, _ = pretrained
    config = tiny_pretrain_config()
    for step in (2, 4, 6):
        assert checkpoint.read_encoder_spec(workdir, step) == {
            "format": 1,
            "model": config.model.to_dict(),
            "input": {
                "size": 8,
                "channels": 3,
                "color_space": "rgb",
                "mean": list(IMAGENET_MEAN),
                "std": list(IMAGENET_STD),
            },
            "network": "online",
            "method": "simclr",
            "feature_dim": 32,  # 8 * width
            "step": step,
            "head": False,
            # The dataset it was trained on: the adaptation programs' default.
            "data": {
                "name": "digits",
                "image_size": 8,
                "train_split": "train",
                "test_split": "test",
            },
        }


def test_make_spec_validates_every_field():
    spec = make_spec(MODEL, **spec_fields())
    assert check_spec(spec) == spec
    assert make_spec(ml_collections.ConfigDict(MODEL), **spec_fields()) == spec
    bad = {
        "color_space": spec_fields(input={**RGB, "color_space": "hsv"}),
        "channels=1 does not fit": spec_fields(input={**RGB, "channels": 1}),
        "one value per channel": spec_fields(input={**RGB, "mean": (0.5, 0.5), "channels": 3}),
        "std must be positive": spec_fields(input={**RGB, "std": (0.2, 0.0, 0.2)}),
        "input size": spec_fields(input={**RGB, "size": 0}),
        "network='ema'": spec_fields(network="ema"),
        "method": spec_fields(method=""),
        "feature_dim": spec_fields(feature_dim=0),
        "step": spec_fields(step=-1),
        "head must be false or a head section": spec_fields(head=True),
        "exactly 'kind' and 'num_classes'": spec_fields(head={"kind": "linear"}),
        "head kind='mlp' is unknown": spec_fields(head={"kind": "mlp", "num_classes": 3}),
        "head num_classes": spec_fields(head={"kind": "linear", "num_classes": 0}),
        "dataset needs a name": spec_fields(data={"path": "/data"}),
        r"dataset fields \['batch_size'\] are unknown": spec_fields(
            data={"name": "digits", "batch_size": 8}
        ),
        "dataset image_size must be a positive int": spec_fields(
            data={"name": "digits", "image_size": "8"}
        ),
    }
    for message, fields in bad.items():
        with pytest.raises(ValueError, match=message):
            make_spec(MODEL, **fields)
    with pytest.raises(ValueError, match="backbone"):
        make_spec({"width": 4}, **spec_fields())
    with pytest.raises(ValueError, match="format 2 is not 1"):
        check_spec({**spec, "format": 2})
    with pytest.raises(ValueError, match=r"missing: \['head'\], unknown: \['extra'\]"):
        check_spec({**{k: v for k, v in spec.items() if k != "head"}, "extra": 1})
    gray = make_input_spec(size=8, mean=(0.5,), std=(0.25,), color_space="gray")
    assert gray["channels"] == 1
    head = {"kind": "bn_linear", "num_classes": 10}
    assert check_spec(make_spec(MODEL, **spec_fields(head=head)))["head"] == head
    # The dataset: its identifying fields; a spec without it reads as None.
    data = {"name": "npz", "path": "/data/cifar10", "test_split": "test", "num_classes": 10}
    assert check_spec(make_spec(MODEL, **spec_fields(data=data)))["data"] == data
    assert spec["data"] is None
    assert check_spec({k: v for k, v in spec.items() if k != "data"}) == spec
