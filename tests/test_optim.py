import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ssl_jax.config import pretrain_defaults, scaled_learning_rate
from ssl_jax.optim import clipped_lars_direction, decay_mask, make_optimizer, make_schedule


def schedule_config(**schedule):
    c = pretrain_defaults()
    c.data.batch_size = 512
    c.optim.base_learning_rate = 0.3
    c.optim.lr_scaling = "linear"
    c.schedule.update(schedule)
    return c


def optim_config(name, **fields):
    c = pretrain_defaults().optim
    c.name = name
    c.update(fields)
    return c


def toy_params():
    rng = np.random.default_rng(0)
    return {
        "dense": {
            "kernel": rng.normal(size=(3, 4)).astype(np.float32),
            "bias": rng.normal(size=(4,)).astype(np.float32),
        },
        "bn": {"scale": rng.normal(size=(4,)).astype(np.float32)},
    }


def toy_grads(seed):
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda p: rng.normal(size=p.shape).astype(np.float32), toy_params())


def run_steps(tx, params, grads_seq):
    """Apply ``tx`` for each grads tree; returns the list of updates (NumPy) and final params."""
    params = jax.tree.map(jnp.asarray, params)
    state = tx.init(params)
    updates_seq = []
    for grads in grads_seq:
        updates, state = tx.update(jax.tree.map(jnp.asarray, grads), state, params)
        params = optax.apply_updates(params, updates)
        updates_seq.append(jax.tree.map(np.asarray, updates))
    return updates_seq, params


def lr_at(step):
    """A schedule whose value changes every step, to tell momentum-before-lr from after."""
    return 0.1 * (step + 1)


# ---------------------------------------------------------------------------- decay_mask


def test_decay_mask_excludes_rank_below_two():
    params = {
        "conv": {"kernel": jnp.zeros((3, 3, 2, 4))},
        "dense": {"kernel": jnp.zeros((4, 5)), "bias": jnp.zeros((5,))},
        "bn": {"scale": jnp.zeros((4,)), "bias": jnp.zeros((4,))},
        "temperature": jnp.zeros(()),
    }
    assert decay_mask(params) == {
        "conv": {"kernel": True},
        "dense": {"kernel": True, "bias": False},
        "bn": {"scale": False, "bias": False},
        "temperature": False,
    }


# ------------------------------------------------------------------------------ schedules


def test_warmup_cosine_matches_closed_form():
    c = schedule_config(name="warmup_cosine", warmup_epochs=2.0, end_lr_factor=0.1)
    sched = make_schedule(c, steps_per_epoch=10, total_steps=100)
    peak, end, warmup, total = 0.6, 0.06, 20, 100

    def cosine(t):
        # optax's decay_steps includes the warmup: the cosine runs over total - warmup steps.
        return end + (peak - end) * 0.5 * (1 + math.cos(math.pi * (t - warmup) / (total - warmup)))

    expected = {
        0: 0.0,
        5: peak * 5 / 20,
        10: peak / 2,
        20: peak,
        40: cosine(40),
        60: cosine(60),
        85: cosine(85),
        100: end,
        150: end,
    }
    for step, value in expected.items():
        np.testing.assert_allclose(float(sched(step)), value, rtol=1e-5, atol=1e-7, err_msg=step)
    np.testing.assert_allclose(float(sched(60)), (peak + end) / 2, rtol=1e-5)


def test_warmup_longer_than_run_is_clamped():
    c = schedule_config(name="warmup_cosine", warmup_epochs=100.0, end_lr_factor=0.0)
    sched = make_schedule(c, steps_per_epoch=10, total_steps=10)
    np.testing.assert_allclose(float(sched(0)), 0.0, atol=1e-8)
    np.testing.assert_allclose(float(sched(9)), 0.6, rtol=1e-6)
    np.testing.assert_allclose(float(sched(10)), 0.0, atol=1e-7)


def test_constant_schedule():
    sched = make_schedule(schedule_config(name="constant"), steps_per_epoch=10, total_steps=100)
    for step in (0, 17, 99, 1000):
        np.testing.assert_allclose(float(sched(step)), 0.6, rtol=1e-6)


def test_unknown_schedule_raises():
    with pytest.raises(ValueError, match="'warmup_cosine', 'constant'"):
        make_schedule(schedule_config(name="step"), steps_per_epoch=10, total_steps=100)


@pytest.mark.parametrize(
    "scaling, expected",
    [("linear", 0.3 * 512 / 256), ("sqrt", 0.3 * math.sqrt(512)), ("none", 0.3)],
)
def test_scaled_learning_rate(scaling, expected):
    c = optim_config("sgd", base_learning_rate=0.3, lr_scaling=scaling)
    assert scaled_learning_rate(c, 512) == pytest.approx(expected)


def test_scaled_learning_rate_unknown_raises():
    with pytest.raises(ValueError, match="lr_scaling='cubic'.*'linear', 'sqrt', 'none'"):
        scaled_learning_rate(optim_config("sgd", lr_scaling="cubic"), 512)


# ----------------------------------------------------------------------------- optimizers


def test_sgd_two_steps_match_numpy():
    wd, mu = 0.05, 0.9
    tx = make_optimizer(optim_config("sgd", weight_decay=wd, momentum=mu), lr_at)
    params, g1, g2 = toy_params(), toy_grads(1), toy_grads(2)
    (u1, u2), _ = run_steps(tx, params, [g1, g2])

    mask = {"dense": {"kernel": True, "bias": False}, "bn": {"scale": False}}
    for path in [("dense", "kernel"), ("dense", "bias"), ("bn", "scale")]:
        decay = wd if mask[path[0]][path[1]] else 0.0
        w0 = params[path[0]][path[1]].astype(np.float64)
        d1 = g1[path[0]][path[1]] + decay * w0
        m1 = d1
        exp_u1 = -lr_at(0) * m1
        w1 = w0 + exp_u1
        m2 = g2[path[0]][path[1]] + decay * w1 + mu * m1
        exp_u2 = -lr_at(1) * m2
        np.testing.assert_allclose(u1[path[0]][path[1]], exp_u1, rtol=1e-5, err_msg=path)
        np.testing.assert_allclose(u2[path[0]][path[1]], exp_u2, rtol=1e-5, err_msg=path)


def test_sgd_decays_biases_when_not_excluded():
    tx = make_optimizer(
        optim_config("sgd", weight_decay=0.1, momentum=0.0, exclude_bias_and_norm=False),
        optax.constant_schedule(1.0),
    )
    params = toy_params()
    zeros = jax.tree.map(np.zeros_like, params)
    (u,), _ = run_steps(tx, params, [zeros])
    for leaf_u, leaf_p in zip(jax.tree.leaves(u), jax.tree.leaves(params), strict=True):
        np.testing.assert_allclose(leaf_u, -0.1 * leaf_p, rtol=1e-6)


def test_lars_two_steps_match_numpy():
    """LARS (You et al. 2017) as optax orders it: decay, trust ratio, lr, then momentum."""
    wd, mu, eta = 0.05, 0.9, 0.001
    tx = make_optimizer(
        optim_config("lars", weight_decay=wd, momentum=mu, trust_coefficient=eta), lr_at
    )
    params, g1, g2 = toy_params(), toy_grads(1), toy_grads(2)
    (u1, u2), _ = run_steps(tx, params, [g1, g2])

    # Rank-2 kernel: decay and trust ratio eta * ||w|| / ||g + wd w||.
    w0 = params["dense"]["kernel"].astype(np.float64)
    d1 = g1["dense"]["kernel"] + wd * w0
    v1 = lr_at(0) * eta * np.linalg.norm(w0) / np.linalg.norm(d1) * d1
    np.testing.assert_allclose(u1["dense"]["kernel"], -v1, rtol=1e-5)
    np.testing.assert_allclose(
        np.linalg.norm(u1["dense"]["kernel"]), lr_at(0) * eta * np.linalg.norm(w0), rtol=1e-5
    )
    w1 = w0 - v1
    d2 = g2["dense"]["kernel"] + wd * w1
    v2 = lr_at(1) * eta * np.linalg.norm(w1) / np.linalg.norm(d2) * d2 + mu * v1
    np.testing.assert_allclose(u2["dense"]["kernel"], -v2, rtol=1e-5)

    # Bias and BN scale: plain SGD with momentum applied after the learning rate.
    for path in [("dense", "bias"), ("bn", "scale")]:
        a1 = g1[path[0]][path[1]].astype(np.float64)
        a2 = g2[path[0]][path[1]].astype(np.float64)
        np.testing.assert_allclose(u1[path[0]][path[1]], -lr_at(0) * a1, rtol=1e-5)
        np.testing.assert_allclose(
            u2[path[0]][path[1]], -(lr_at(1) * a2 + mu * lr_at(0) * a1), rtol=1e-5
        )


def test_adamw_two_steps_match_numpy():
    wd, b1, b2, eps = 0.05, 0.5, 0.9, 1e-8
    tx = make_optimizer(optim_config("adamw", weight_decay=wd, b1=b1, b2=b2), lr_at)
    params, g1, g2 = toy_params(), toy_grads(1), toy_grads(2)
    (u1, u2), _ = run_steps(tx, params, [g1, g2])

    for path, decay in [
        (("dense", "kernel"), wd),
        (("dense", "bias"), 0.0),
        (("bn", "scale"), 0.0),
    ]:
        w = params[path[0]][path[1]].astype(np.float64)
        m = v = 0.0
        for t, (g, u) in enumerate([(g1, u1), (g2, u2)], start=1):
            gt = g[path[0]][path[1]].astype(np.float64)
            m = b1 * m + (1 - b1) * gt
            v = b2 * v + (1 - b2) * gt**2
            mhat, vhat = m / (1 - b1**t), v / (1 - b2**t)
            expected = -lr_at(t - 1) * (mhat / (np.sqrt(vhat) + eps) + decay * w)
            np.testing.assert_allclose(u[path[0]][path[1]], expected, rtol=1e-4, err_msg=path)
            w = w + expected


def test_grad_clip_norm_clips_global_norm():
    grads = {"w": np.full((2, 2), 5.0, np.float32), "b": np.zeros((2,), np.float32)}  # norm 10
    params = {"w": np.ones((2, 2), np.float32), "b": np.ones((2,), np.float32)}
    sched = optax.constant_schedule(1.0)
    base = dict(weight_decay=0.0, momentum=0.0)
    (clipped,), _ = run_steps(
        make_optimizer(optim_config("sgd", grad_clip_norm=1.0, **base), sched), params, [grads]
    )
    (unclipped,), _ = run_steps(make_optimizer(optim_config("sgd", **base), sched), params, [grads])
    np.testing.assert_allclose(clipped["w"], -grads["w"] / 10, rtol=1e-6)
    np.testing.assert_allclose(unclipped["w"], -grads["w"], rtol=1e-6)


def test_unknown_optimizer_raises():
    with pytest.raises(ValueError, match="'lars', 'sgd', 'adamw'"):
        make_optimizer(optim_config("rmsprop"), optax.constant_schedule(0.1))


def solo_learn_lars_direction(g, w, *, wd, eta, lr):
    """One tensor's LARS direction as solo-learn's ``LARS.step`` computes it (clip_lr=True):
    the local lr of You et al. 2017 (eq. 6), eta ||w|| / (||g|| + wd ||w||), clipped at lr."""
    w_norm, g_norm = np.linalg.norm(w), np.linalg.norm(g)
    if w_norm == 0 or g_norm == 0:
        return g
    local_lr = eta * w_norm / (g_norm + w_norm * wd)
    return (g + wd * w) * min(local_lr / lr, 1.0)


@pytest.mark.parametrize("eta", [0.02, 5.0])
def test_clipped_lars_two_steps_match_numpy(eta):
    """solo-learn's LARS (clip_lr) for the kernel, then optax's lr-before-momentum order."""
    wd, mu = 0.05, 0.9
    tx = make_optimizer(
        optim_config("lars", weight_decay=wd, momentum=mu, trust_coefficient=eta, trust_clip=True),
        lr_at,
    )
    params, g1, g2 = toy_params(), toy_grads(1), toy_grads(2)
    (u1, u2), _ = run_steps(tx, params, [g1, g2])

    w0 = params["dense"]["kernel"].astype(np.float64)
    a1 = g1["dense"]["kernel"].astype(np.float64)
    v1 = lr_at(0) * solo_learn_lars_direction(a1, w0, wd=wd, eta=eta, lr=lr_at(0))
    np.testing.assert_allclose(u1["dense"]["kernel"], -v1, rtol=1e-5)
    w1 = w0 - v1
    a2 = g2["dense"]["kernel"].astype(np.float64)
    v2 = lr_at(1) * solo_learn_lars_direction(a2, w1, wd=wd, eta=eta, lr=lr_at(1)) + mu * v1
    np.testing.assert_allclose(u2["dense"]["kernel"], -v2, rtol=1e-5)
    # eta 0.02: the trust ratio is below the lr (LARS step); eta 5: it is clipped (SGD step).
    local = eta * np.linalg.norm(w0) / (np.linalg.norm(a1) + wd * np.linalg.norm(w0))
    assert (local < lr_at(0)) == (eta < 1)
    if eta < 1:  # the paper's denominator, not optax's ||g + wd w||, is what the test pins
        optax_form = eta * np.linalg.norm(w0) / np.linalg.norm(a1 + wd * w0)
        assert abs(optax_form / local - 1) > 1e-3
    for path in [("dense", "bias"), ("bn", "scale")]:
        a1 = g1[path[0]][path[1]].astype(np.float64)
        np.testing.assert_allclose(u1[path[0]][path[1]], -lr_at(0) * a1, rtol=1e-5)


def test_clipped_lars_leaves_zero_lr_and_zero_norms_finite():
    tx = make_optimizer(
        optim_config("lars", trust_coefficient=0.02, trust_clip=True),
        optax.constant_schedule(0.0),
    )
    params = jax.tree.map(np.zeros_like, toy_params())
    (u,), _ = run_steps(tx, params, [toy_grads(1)])
    assert all(np.all(np.isfinite(leaf)) and not np.any(leaf) for leaf in jax.tree.leaves(u))


# ------------------------------------------------------------------ parameter groups


# The four optimizers, with weight decay and momentum, as (name, extra optim fields).
OPTIMIZERS = [
    ("sgd", {}),
    ("adamw", {"b1": 0.5, "b2": 0.9}),
    ("lars", {}),
    ("lars", {"trust_clip": True, "trust_coefficient": 0.02}),
]
OPTIMIZER_IDS = ["sgd", "adamw", "lars", "lars_clip"]


def grouped_config(name, fields, groups=(), **optim):
    """``optim_config`` with ``param_groups`` entries ``(pattern, field, value)`` set."""
    c = optim_config(name, **{"weight_decay": 0.05, "momentum": 0.9, **fields, **optim})
    for pattern, field, value in groups:
        if pattern not in c.param_groups:
            c.param_groups[pattern] = {}
        c.param_groups[pattern][field] = value
    return c


def two_part_params():
    rng = np.random.default_rng(3)
    return {
        "backbone": toy_params(),
        "head": {
            "kernel": rng.normal(size=(4, 2)).astype(np.float32),
            "bias": rng.normal(size=(2,)).astype(np.float32),
        },
    }


def two_part_grads(seed):
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda p: rng.normal(size=p.shape).astype(np.float32), two_part_params())


def reference_optimizer(optim, schedule):
    """``make_optimizer`` as it was before parameter groups existed, verbatim."""
    mask = decay_mask if optim.exclude_bias_and_norm else True
    if optim.name == "lars" and optim.get("trust_clip", False):
        direction = clipped_lars_direction(optim.trust_coefficient, optim.weight_decay, schedule)
        return optax.chain(
            optax.masked(direction, mask),
            optax.scale_by_learning_rate(schedule),
            optax.trace(decay=optim.momentum),
        )
    if optim.name == "lars":
        return optax.lars(
            schedule,
            weight_decay=optim.weight_decay,
            weight_decay_mask=mask,
            trust_coefficient=optim.trust_coefficient,
            trust_ratio_mask=mask,
            momentum=optim.momentum,
        )
    if optim.name == "sgd":
        return optax.chain(
            optax.add_decayed_weights(optim.weight_decay, mask=mask),
            optax.sgd(schedule, momentum=optim.momentum),
        )
    return optax.adamw(
        schedule, b1=optim.b1, b2=optim.b2, weight_decay=optim.weight_decay, mask=mask
    )


def assert_trees_equal(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize(("name", "fields"), OPTIMIZERS, ids=OPTIMIZER_IDS)
def test_default_config_builds_the_optimizer_as_before(name, fields):
    """No groups (every ``param_groups`` entry unset, no ``layer_decay``): the same updates
    bit for bit and the same state structure as the optimizer built before groups existed."""
    optim = optim_config(name, weight_decay=0.05, **fields)
    params, grads = two_part_params(), [two_part_grads(1), two_part_grads(2)]
    expected, _ = run_steps(reference_optimizer(optim, lr_at), params, grads)
    for tx in (make_optimizer(optim, lr_at), make_optimizer(optim, lr_at, params=params)):
        got, _ = run_steps(tx, params, grads)
        assert_trees_equal(got, expected)
        assert jax.tree.structure(tx.init(params)) == jax.tree.structure(
            reference_optimizer(optim, lr_at).init(params)
        )


@pytest.mark.parametrize(("name", "fields"), OPTIMIZERS, ids=OPTIMIZER_IDS)
def test_neutral_groups_change_no_update(name, fields):
    """Groups that restate the defaults take the grouped path and still give the same bits."""
    groups = [("backbone", "lr_mult", 1.0), ("weight", "weight_decay", 0.05)]
    params, grads = two_part_params(), [two_part_grads(1), two_part_grads(2)]
    got, _ = run_steps(make_optimizer(grouped_config(name, fields, groups), lr_at), params, grads)
    expected, _ = run_steps(make_optimizer(grouped_config(name, fields), lr_at), params, grads)
    assert_trees_equal(got, expected)


@pytest.mark.parametrize(("name", "fields"), OPTIMIZERS, ids=OPTIMIZER_IDS)
def test_lr_mult_scales_that_group_only(name, fields):
    """``head.lr_mult=3``: the head trains as with a 3x schedule, the backbone bit for bit
    as without groups (LARS with ``trust_clip`` clips at the group's 3x learning rate)."""
    params, grads = two_part_params(), [two_part_grads(1), two_part_grads(2)]
    tx = make_optimizer(grouped_config(name, fields, [("head", "lr_mult", 3.0)]), lr_at)
    got, _ = run_steps(tx, params, grads)
    base, _ = run_steps(make_optimizer(grouped_config(name, fields), lr_at), params, grads)
    scaled, _ = run_steps(
        make_optimizer(grouped_config(name, fields), lambda s: 3.0 * lr_at(s)), params, grads
    )
    for step in range(2):
        assert_trees_equal(got[step]["backbone"], base[step]["backbone"])
        for key in ("kernel", "bias"):
            np.testing.assert_allclose(
                got[step]["head"][key], scaled[step]["head"][key], rtol=1e-6, atol=1e-7
            )
    np.testing.assert_allclose(got[0]["head"]["bias"], 3.0 * base[0]["head"]["bias"], rtol=1e-6)


@pytest.mark.parametrize(("name", "fields"), OPTIMIZERS, ids=OPTIMIZER_IDS)
def test_group_weight_decay_changes_that_group_only(name, fields):
    """``head.weight_decay=0``: the head trains as with no decay, the backbone as before."""
    params, grads = two_part_params(), [two_part_grads(1), two_part_grads(2)]
    tx = make_optimizer(grouped_config(name, fields, [("head", "weight_decay", 0.0)]), lr_at)
    got, _ = run_steps(tx, params, grads)
    decayed, _ = run_steps(make_optimizer(grouped_config(name, fields), lr_at), params, grads)
    undecayed, _ = run_steps(
        make_optimizer(grouped_config(name, fields, weight_decay=0.0), lr_at), params, grads
    )
    for step in range(2):
        assert_trees_equal(got[step]["backbone"], decayed[step]["backbone"])
        assert_trees_equal(got[step]["head"], undecayed[step]["head"])
    kernel = [u["head"]["kernel"] for u in (decayed[1], undecayed[1])]
    assert not np.allclose(*kernel, rtol=1e-3)  # the decay does move the head


@pytest.mark.parametrize(("name", "fields"), OPTIMIZERS[:2], ids=OPTIMIZER_IDS[:2])
def test_norm_bias_group_decay_overrides_the_exclusion(name, fields):
    """``norm_bias.weight_decay`` decays biases and norms despite ``exclude_bias_and_norm``."""
    params, grads = two_part_params(), [two_part_grads(1), two_part_grads(2)]
    tx = make_optimizer(grouped_config(name, fields, [("norm_bias", "weight_decay", 0.05)]), lr_at)
    got, _ = run_steps(tx, params, grads)
    everywhere = grouped_config(name, fields, exclude_bias_and_norm=False)
    expected, _ = run_steps(make_optimizer(everywhere, lr_at), params, grads)
    for g, e in zip(got, expected, strict=True):
        assert_trees_equal(g, e)


def test_clipped_lars_decays_excluded_leaves_by_their_group():
    """With ``trust_clip``, an excluded leaf has no trust ratio: its step is ``lr (g + wd w)``."""
    c = grouped_config("lars", OPTIMIZERS[3][1], [("head/norm_bias", "weight_decay", 0.5)])
    params, grads = two_part_params(), two_part_grads(1)
    (got,), _ = run_steps(make_optimizer(c, lr_at), params, [grads])
    (base,), _ = run_steps(
        make_optimizer(grouped_config("lars", OPTIMIZERS[3][1]), lr_at), params, [grads]
    )
    bias, g = params["head"]["bias"].astype(np.float64), grads["head"]["bias"]
    np.testing.assert_allclose(got["head"]["bias"], -lr_at(0) * (g + 0.5 * bias), rtol=1e-6)
    np.testing.assert_allclose(base["head"]["bias"], -lr_at(0) * g, rtol=1e-6)
    assert_trees_equal(got["backbone"], base["backbone"])
    assert_trees_equal(got["head"]["kernel"], base["head"]["kernel"])


def vit_like_params():
    """A depth-2 ViT's parameter paths and ranks (int block keys, as ``nnx.State``) and a head."""
    rng = np.random.default_rng(4)

    def normal(*shape):
        return rng.normal(size=shape).astype(np.float32)

    def block():
        return {"norm1": {"scale": normal(4)}, "attn": {"qkv": {"kernel": normal(4, 12)}}}

    backbone = {
        "patch_embed": {"kernel": normal(2, 2, 3, 4), "bias": normal(4)},
        "cls_token": normal(1, 1, 4),
        "pos_embed": normal(1, 5, 4),
        "blocks": {0: block(), 1: block()},
        "norm": {"scale": normal(4), "bias": normal(4)},
    }
    return {"backbone": backbone, "head": {"kernel": normal(4, 3), "bias": normal(3)}}


def test_layer_decay_scales_each_backbone_leaf_as_mae():
    """SGD, lr 1, no momentum or decay: each update is ``-scale * g`` with MAE's scale
    ``decay ** (depth + 1 - layer_id)``, from a hand-written table; the head keeps its
    ``lr_mult``. Run under ``jax.jit``."""
    c = grouped_config("sgd", {}, [("head", "lr_mult", 10.0)], weight_decay=0.0, momentum=0.0)
    c.layer_decay = 0.5
    params = vit_like_params()
    grads = jax.tree.map(lambda p: np.full(p.shape, 1.0, np.float32), params)
    tx = make_optimizer(c, optax.constant_schedule(1.0), params=params)
    updates, _ = jax.jit(tx.update)(grads, tx.init(params), params)
    scale = {  # layer ids 0 (embeddings), 1 and 2 (blocks), 3 (final norm); depth + 1 = 3
        ("backbone", "patch_embed", "kernel"): 0.125,
        ("backbone", "patch_embed", "bias"): 0.125,
        ("backbone", "cls_token"): 0.125,
        ("backbone", "pos_embed"): 0.125,
        ("backbone", "blocks", 0, "norm1", "scale"): 0.25,
        ("backbone", "blocks", 0, "attn", "qkv", "kernel"): 0.25,
        ("backbone", "blocks", 1, "norm1", "scale"): 0.5,
        ("backbone", "blocks", 1, "attn", "qkv", "kernel"): 0.5,
        ("backbone", "norm", "scale"): 1.0,
        ("backbone", "norm", "bias"): 1.0,
        ("head", "kernel"): 10.0,
        ("head", "bias"): 10.0,
    }
    flat = jax.tree_util.tree_flatten_with_path(updates)[0]
    assert len(flat) == len(scale)
    for path, u in flat:
        keys = tuple(getattr(k, "key", None) for k in path)
        np.testing.assert_array_equal(u, np.full(u.shape, -scale[keys], np.float32), err_msg=keys)


def test_layer_decay_without_a_vit_raises():
    c = grouped_config("sgd", {}, layer_decay=0.75)
    with pytest.raises(ValueError, match="ViT"):
        make_optimizer(c, lr_at, params=two_part_params())
    with pytest.raises(ValueError, match="ViT"):
        make_optimizer(c, lr_at).init(two_part_params())


def test_unknown_group_raises_listing_the_valid_ones():
    c = grouped_config("sgd", {}, [("predictor", "lr_mult", 2.0)])
    params = two_part_params()
    valid = r"'backbone', 'backbone/norm_bias', 'backbone/weight', 'head', .*'weight'\]"
    with pytest.raises(ValueError, match=r"\['predictor'\].*" + valid):
        make_optimizer(c, lr_at, params=params)
    with pytest.raises(ValueError, match=r"\['predictor'\]"):
        make_optimizer(c, lr_at).init(params)
    c = grouped_config("sgd", {}, [("head", "lr_mult", -1.0)])
    with pytest.raises(ValueError, match=r"lr_mult=-1.0; expected >= 0"):
        make_optimizer(c, lr_at)
