"""MLM: the loss from its parts by hand, one step lowers it, the tied head, errors. Unit tests
run eagerly on a one-block width-16 encoder."""

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ssl_jax.data import get_source
from ssl_jax.data.loader import make_batch
from ssl_jax.data.tokens import MASK_ID, SPECIAL_IDS
from ssl_jax.methods import get_method
from ssl_jax.pretext import mask_tokens
from tests.programs.tiny import tiny_pretrain_config

CORPUS = pathlib.Path(__file__).parent / "text_corpus"  # 60 short sentences, train and test
MLM = {
    "method.name": "mlm",
    "model.backbone": "bert_tiny",
    "model.vocab_size": 128,
    "model.max_len": 16,
    "model.embed_dim": 16,
    "model.depth": 1,
    "model.num_heads": 2,
    "data.name": "text",
    "data.path": str(CORPUS),
    "data.seq_len": 16,
    "data.vocab_size": 128,
    "data.pack": False,
    "method.rate": 0.3,
}
# tests/methods/test_devices.py runs this on 1 and 8 devices (each trains its own tokenizer).
DEVICE_CONFIGS = {"mlm": MLM}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    config = tiny_pretrain_config(**MLM)
    method = get_method(config)
    source = get_source(config.data, "train", workdir=tmp_path_factory.mktemp("run"))
    batch = jax.tree.map(jnp.asarray, make_batch(source, np.arange(16)))
    params, state = jax.jit(method.init)(jax.random.key(0))
    key = jax.random.key(3)

    def loss(p):
        value, (_, metrics) = method.loss(p, state, batch, key, 0, None)
        return value, metrics

    grad_fn = jax.jit(jax.value_and_grad(loss, has_aux=True))  # one compile for the tests
    return config, method, batch, params, state, grad_fn


def test_loss_is_the_cross_entropy_of_the_masked_tokens(setup):
    config, method, batch, params, state, grad_fn = setup
    key = jax.random.key(3)
    (value, metrics), _ = grad_fn(params)
    mask_key, _ = jax.random.split(key)
    masked = mask_tokens(
        batch["tokens"],
        mask_key,
        rate=0.3,
        vocab_size=128,
        special_ids=SPECIAL_IDS,
        mask_id=MASK_ID,
    )
    encoder = method.backbone
    out, _ = encoder.apply(
        params["backbone"],
        state["batch_stats"]["backbone"],
        masked.tokens,
        train=True,
        return_all=True,
        segments=batch["segments"],
    )
    # BERT's head by hand: dense, exact GELU, LayerNorm, tied output projection, bias.
    h = np.asarray(out["tokens"], np.float64)
    head = jax.tree.map(lambda x: np.asarray(x, np.float64), params["head"])
    x = h @ head["dense"]["kernel"] + head["dense"]["bias"]
    x = 0.5 * x * (1 + np.vectorize(__import__("math").erf)(x / np.sqrt(2)))
    x = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-6)
    x = x * head["norm"]["scale"] + head["norm"]["bias"]
    logits = x @ np.asarray(params["backbone"]["token_embed"], np.float64).T + head["bias"]
    total = count = 0.0
    for i, m in zip(*np.nonzero(np.asarray(masked.weights)), strict=True):
        z = logits[i, int(masked.positions[i, m])]
        z = z - z.max()
        total -= z[int(masked.labels[i, m])] - np.log(np.exp(z).sum())
        count += 1
    assert count > 16  # 30% of about 8 real tokens per sentence
    np.testing.assert_allclose(value, total / (count + 1e-5), rtol=1e-4)
    assert float(metrics["masked_per_sequence"]) == count / 16


def test_one_step_lowers_the_loss_and_trains_the_tied_embedding(setup):
    _, method, batch, params, state, grad_fn = setup
    (before, _), grads = grad_fn(params)
    tx = optax.adam(1e-2)
    updates, _ = tx.update(grads, tx.init(params), params)
    (after, _), _ = grad_fn(optax.apply_updates(params, updates))
    assert float(after) < float(before)
    emb_grad = np.asarray(grads["backbone"]["token_embed"])
    # Rows of ids absent from the batch get gradient through the output projection only.
    absent = np.setdiff1d(np.arange(128), np.asarray(batch["tokens"]))
    assert np.abs(emb_grad[absent]).sum() > 0
    assert method.export(params, state)["params"] is params["backbone"]


def test_mlm_needs_a_text_encoder_and_valid_rates():
    with pytest.raises(ValueError, match="mlm needs a text encoder"):
        get_method(tiny_pretrain_config(**{"method.name": "mlm"}))
    with pytest.raises(ValueError, match="sum <= 1"):
        get_method(tiny_pretrain_config(**{**MLM, "method.mask_prob": 0.95}))
