"""Planted bugs the default suite must catch: plant each in a copy, run the tests that guard it.

    python tests/mutants.py                 # every mutant: killed / survived / stale
    python tests/mutants.py --only simsiam_no_stop_gradient byol_no_swap
    python tests/mutants.py --list          # names, files and guarding tests
    python tests/mutants.py --json out.json # also write the table as JSON

Each mutant is one plausible bug: an exact piece of library code (it must occur exactly once
in the named file) and what replaces it. For each one the script copies ``ssl_jax/``,
``tests/``, ``configs/``, ``launch/`` and ``pyproject.toml`` into a temporary folder, plants
the bug there (the checkout is never touched), and runs the guarding tests with pytest's
default options (slow tests excluded: the default suite must catch the bug). ``killed`` means
at least one of them failed; ``survived`` means they all passed, a hole in the suite;
``stale`` means the code to mutate is no longer there (a refactor moved it: update the
mutant, do not delete it). ``--baseline`` first runs every guarding test on an unmutated
copy, which must pass, so that a kill is the bug's doing.

Not part of the default test run (pytest collects ``test_*.py`` only). About 10-15 minutes
for all mutants on 2 CPU cores, most of it compiling the tiny models once per pytest run.
"""

import argparse
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COPIED = ("ssl_jax", "tests", "configs", "launch", "pyproject.toml")


@dataclasses.dataclass(frozen=True)
class Mutant:
    name: str
    issue_item: str  # which item of the tests issue (#12) it plants
    path: str
    old: str
    new: str
    tests: tuple[str, ...]


NAN_CHECK = "if not (np.isfinite(loss) and np.isfinite(gnorm) and finite):"
NAN_TESTS = (
    "tests/programs/test_pretrain.py::test_a_non_finite_gradient_alone_stops_the_run",
    "tests/programs/test_pretrain.py::test_non_finite_parameters_alone_stop_the_run",
)

MUTANTS = (
    Mutant(
        "simsiam_no_stop_gradient",
        "1",
        "ssl_jax/methods/simsiam.py",
        "        z1, z2 = jax.lax.stop_gradient(z1), jax.lax.stop_gradient(z2)\n",
        "",
        ("tests/methods/test_two_view.py::test_simsiam_stops_the_gradient_of_the_target_branch",),
    ),
    Mutant(
        "mocov2_reads_queue_after_push",
        "2",
        "ssl_jax/methods/moco.py",
        "info_nce(q, k, queue[i], temperature=temperature)",
        'info_nce(q, k, push({**method_state, "queue": queue}, jnp.stack(keys))["queue"][i], '
        "temperature=temperature)",
        ("tests/methods/test_moco.py::test_loss_enqueues_this_steps_keys_of_the_whole_batch",),
    ),
    Mutant(
        "simclr_misaligned_positives",
        "3",
        "ssl_jax/methods/simclr.py",
        "return contrast(z1, z2), stats, metrics",
        "return contrast(z1, jnp.roll(z2, 1, axis=0)), stats, metrics",
        ("tests/methods/test_simclr.py::test_loss_is_nt_xent_of_matching_views_by_hand",),
    ),
    Mutant(
        "byol_no_view_swap",
        "3",
        "ssl_jax/methods/byol.py",
        "value = byol_loss(p1, z2) + byol_loss(p2, z1)",
        "value = byol_loss(p1, z1) + byol_loss(p2, z2)",
        ("tests/methods/test_byol.py::test_loss_is_the_swapped_prediction_by_hand",),
    ),
    Mutant(
        "swav_temperature_hard_coded",
        "4",
        "ssl_jax/methods/swav.py",
        "value = swav_loss(scores, jax.lax.stop_gradient(codes), temperature=temperature)",
        "value = swav_loss(scores, jax.lax.stop_gradient(codes), temperature=1.0)",
        ("tests/methods/test_swav.py::test_loss_is_the_swapped_prediction_by_hand",),
    ),
    Mutant(
        "view_drops_grayscale",
        "8",
        "ssl_jax/augment/pipeline.py",
        "    x = random_grayscale(x, k_gray, prob=spec.gray_prob)\n",
        "",
        ("tests/augment/test_pipeline.py::test_grayscale_alone_gives_luma_normalized_per_channel",),
    ),
    Mutant(
        "view_flip_prob_as_jitter_prob",
        "8",
        "ssl_jax/augment/pipeline.py",
        "        prob=spec.jitter_prob,\n",
        "        prob=spec.flip_prob,\n",
        ("tests/augment/test_pipeline.py::test_flip_alone_mirrors_without_changing_colours",),
    ),
    Mutant(
        "blur_sigma_reuses_the_apply_draw",
        "also: blur sigma",
        "ssl_jax/augment/blur.py",
        "(sigma[1] - sigma[0]) * draw_sigma",
        "(sigma[1] - sigma[0]) * draw_apply",
        ("tests/augment/test_blur.py::test_sampled_sigma_is_uniform_on_simclr_default_interval",),
    ),
    Mutant(
        "crop_ratio_uniform_not_log_uniform",
        "also: aspect ratio",
        "ssl_jax/augment/geometric.py",
        "aspect = jnp.exp(log_ratio)",
        "aspect = ratio[0] + (ratio[1] - ratio[0]) * u[n : 2 * n]",
        ("tests/augment/test_geometric.py::test_crop_box_distribution_matches_torchvision",),
    ),
    Mutant(
        "vit_pos_embed_grid_transposed",
        "also: ViT positions",
        "ssl_jax/models/vit.py",
        "patch_pos, (1, *grid, dim), method",
        "patch_pos, (1, *grid[::-1], dim), method",
        ("tests/models/test_vit.py::test_interpolate_pos_embed_matches_numpy_bicubic",),
    ),
    Mutant(
        "clipped_lars_optax_denominator",
        "also: LARS",
        "ssl_jax/optim.py",
        "denominator = g_norm + wd * w_norm",
        "denominator = jnp.linalg.norm(g + wd * w)",
        ("tests/test_optim.py::test_clipped_lars_two_steps_match_numpy",),
    ),
    Mutant(
        "config_misspelled_method_field",
        "also: 18 configs",
        "configs/swav_cifar10.py",
        "        sinkhorn_epsilon=0.05,\n",
        "        sinkhorn_epsilom=0.05,\n",
        (
            "tests/test_configs.py::test_every_config_builds_its_method_from_exactly_its_hyperparameters",
        ),
    ),
    Mutant(
        "config_string_fields_share_a_reference",
        "also: every field type",
        "configs/simclr_cifar10.py",
        '    c.augment.recipe = "simclr"\n',
        '    c.augment.recipe = "simclr"\n    c.data.test_split = c.data.get_ref("train_split")\n',
        ("tests/test_configs.py::test_overriding_one_field_changes_no_other",),
    ),
    Mutant(
        "nonfinite_policy_checks_only_the_loss",
        "6",
        "ssl_jax/programs/loop.py",
        NAN_CHECK,
        "if not np.isfinite(loss):",
        NAN_TESTS,
    ),
    Mutant(
        "nonfinite_policy_ignores_the_grad_norm",
        "6",
        "ssl_jax/programs/loop.py",
        NAN_CHECK,
        "if not (np.isfinite(loss) and finite):",
        NAN_TESTS[:1],
    ),
    Mutant(
        "nonfinite_policy_ignores_the_params",
        "6",
        "ssl_jax/programs/loop.py",
        NAN_CHECK,
        "if not (np.isfinite(loss) and np.isfinite(gnorm)):",
        NAN_TESTS[1:],
    ),
    Mutant(
        "constant_step_key",
        "7",
        "ssl_jax/train_step.py",
        "key = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)",
        "key = jax.random.wrap_key_data(state.rng)",
        ("tests/test_train_step.py::test_the_step_key_is_the_state_key_folded_with_the_step",),
    ),
    Mutant(
        "init_from_drops_the_method_state",
        "also: init_from",
        "ssl_jax/programs/pretrain.py",
        'state = state.replace(params=loaded["params"], method_state=loaded["method_state"])',
        'state = state.replace(params=loaded["params"])',
        (
            "tests/programs/test_pretrain.py::"
            "test_init_from_takes_params_and_method_state_with_a_fresh_optimizer",
        ),
    ),
    Mutant(
        "partial_save_counted_as_a_step",
        "also: killed mid-save",
        "ssl_jax/checkpoint.py",
        "return sorted(ocp.utils.checkpoint_steps(directory))",
        'return sorted(int(p.name.split(".")[0]) for p in directory.iterdir())',
        (
            "tests/programs/test_pretrain.py::"
            "test_a_run_killed_mid_save_keeps_the_last_checkpoint_and_resumes",
        ),
    ),
    Mutant(
        "knn_monitor_memory_bank_from_test",
        "5",
        "ssl_jax/evaluators/knn_monitor.py",
        'train = self.features.bank("train", batch_size=self.cfg.batch_size)',
        'train = self.features.bank("test", batch_size=self.cfg.batch_size)',
        ("tests/programs/test_leakage.py::test_knn_monitor_memory_bank_is_the_train_split",),
    ),
    Mutant(
        "linear_probe_trained_on_test",
        "5",
        "ssl_jax/programs/linear_probe.py",
        'train = extract_features(encode, arrays, train_src, desc="train features", **kw)',
        'train = extract_features(encode, arrays, test_src, desc="train features", **kw)',
        ("tests/programs/test_leakage.py::test_linear_probe_is_trained_on_the_train_split_only",),
    ),
    Mutant(
        "offline_probe_l2_chosen_on_test",
        "#8: linear probe",
        "ssl_jax/evaluators/linear.py",
        'val_top1 = topk_accuracy(_logits(params, x[val_indices]), val_y, ks=(1,))["top1"]',
        'val_top1 = topk_accuracy(_logits(params, scale(test_x)), test_y, ks=(1,))["top1"]',
        (
            "tests/evaluators/test_linear.py::"
            "test_offline_probe_never_looks_at_the_test_split_to_choose_l2",
            "tests/programs/test_leakage.py::test_linear_probe_is_trained_on_the_train_split_only",
        ),
    ),
    Mutant(
        "augmented_probe_trained_on_test",
        "#8: linear probe",
        "ssl_jax/evaluators/augmented_linear.py",
        "    batches = BatchIterator(\n        train_source,",
        "    batches = BatchIterator(\n        test_source,",
        ("tests/programs/test_leakage.py::test_linear_probe_is_trained_on_the_train_split_only",),
    ),
    Mutant(
        "label_fraction_ignored",
        "#8: linear probe",
        "ssl_jax/data/subset.py",
        "    return SubsetSource(source, indices), info",
        "    return source, info",
        (
            "tests/programs/test_linear_probe.py::"
            "test_the_label_fraction_subset_is_saved_and_the_only_training_data",
        ),
    ),
    Mutant(
        "knn_program_memory_bank_from_test",
        "5",
        "ssl_jax/programs/knn.py",
        'banks["train"],  # the memory bank',
        'banks["test"],  # the memory bank',
        ("tests/programs/test_leakage.py::test_knn_memory_bank_is_the_train_split",),
    ),
    Mutant(
        "extract_features_keeps_padding",
        "also: extract_features",
        "ssl_jax/evaluators/features.py",
        "return features[mask].astype(np.float32), labels[mask].astype(np.int32)",
        "return features.astype(np.float32), labels.astype(np.int32)",
        ("tests/evaluators/test_features.py::test_features_equal_a_direct_encode_in_source_order",),
    ),
    Mutant(
        "quickstart_probes_ssl_twice",
        "also: launch scripts",
        "launch/quickstart.py",
        '("random_init", True)',
        '("random_init", False)',
        ("tests/programs/test_launch.py::test_quickstart_pretrains_probes_and_prints_a_summary",),
    ),
    # Seams (issue #13): the protocol's step, frozen inputs, method fields, online probe.
    Mutant(
        "loss_sees_the_next_step",
        "#13: step",
        "ssl_jax/train_step.py",
        "state.params, state.method_state, batch, key, state.step, frozen",
        "state.params, state.method_state, batch, key, state.step + 1, frozen",
        (
            "tests/test_train_step.py::"
            "test_the_loss_gets_the_global_step_and_the_frozen_inputs_which_are_not_donated",
        ),
    ),
    Mutant(
        "frozen_inputs_donated",
        "#13: frozen inputs",
        "ssl_jax/train_step.py",
        "donate_argnums=0,",
        "donate_argnums=(0, 2),",
        (
            "tests/test_train_step.py::"
            "test_the_loss_gets_the_global_step_and_the_frozen_inputs_which_are_not_donated",
        ),
    ),
    Mutant(
        "unknown_method_fields_accepted",
        "#13: method fields",
        "ssl_jax/methods/registry.py",
        "    _check_fields(name, fields, hyperparameters(name))\n",
        "",
        (
            "tests/methods/test_registry.py::test_get_method_rejects_a_field_the_method_does_not_have",
        ),
    ),
    Mutant(
        "online_probe_trains_the_encoder",
        "#13: online linear probe",
        "ssl_jax/evaluators/online_linear.py",
        'features = jax.lax.stop_gradient(encode(export, batch["images"]))',
        'features = encode(export, batch["images"])',
        (
            "tests/evaluators/test_online_linear.py::"
            "test_loss_adds_the_probes_cross_entropy_and_leaves_the_encoder_gradient_alone",
        ),
    ),
    Mutant(
        "validation_split_leaks_into_train",
        "#8: validation split",
        "ssl_jax/data/subset.py",
        "    train = np.setdiff1d(np.arange(len(labels)), val)\n",
        "    train = np.arange(len(labels))\n",
        (
            "tests/data/test_subset.py::"
            "test_validation_split_is_disjoint_balanced_and_keeps_a_training_image_per_class",
        ),
    ),
    Mutant(
        "finetune_tests_the_last_state_not_the_chosen_one",
        "#8: fine-tuning",
        "ssl_jax/programs/finetune.py",
        "        arrays = best.restore(abstract)\n",
        '        arrays = {"params": state.params, "method_state": state.method_state}\n',
        (
            "tests/programs/test_finetune.py::test_the_best_validation_step_is_the_one_reported_on_test",
        ),
    ),
    Mutant(
        "few_shot_queries_include_the_support",
        "#8: few-shot",
        "ssl_jax/evaluators/episodes.py",
        "support_pos, query_pos = pos[:, :shots], pos[:, shots:]",
        "support_pos, query_pos = pos[:, :shots], pos[:, :-shots]",
        (
            "tests/evaluators/test_episodes.py::"
            "test_queries_from_the_support_pool_are_disjoint_from_the_support",
        ),
    ),
    Mutant(
        "few_shot_logreg_penalty_not_scaled_by_n",
        "#8: few-shot",
        "ssl_jax/evaluators/logreg.py",
        "    mu = 1.0 / (n * c)\n",
        "    mu = 1.0 / c\n",
        ("tests/evaluators/test_logreg.py::test_logistic_regression_matches_scikit_learn",),
    ),
    Mutant(
        "cluster_accuracy_without_hungarian_matching",
        "#8: clustering",
        "ssl_jax/evaluators/clustering.py",
        "    rows, cols = linear_sum_assignment(table, maximize=True)\n",
        "    rows = cols = np.arange(min(table.shape))\n",
        (
            "tests/evaluators/test_clustering.py::test_a_hand_computed_case",
            "tests/evaluators/test_clustering.py::test_hungarian_accuracy_is_the_best_matching",
        ),
    ),
    Mutant(
        "rotation_labels_off_by_one",
        "#9: rotation",
        "ssl_jax/pretext/rotation.py",
        "    labels = jnp.tile(jnp.arange(NUM_ROTATIONS, dtype=jnp.int32), n)\n",
        "    labels = jnp.tile(jnp.arange(1, NUM_ROTATIONS + 1, dtype=jnp.int32) % 4, n)\n",
        ("tests/pretext/test_rotation.py::test_rotate_batch_matches_np_rot90",),
    ),
    Mutant(
        "context_neighbor_at_the_mirrored_position",
        "#9: context",
        "ssl_jax/pretext/context.py",
        "stride * jnp.stack([jnp.ones(2, jnp.int32), 1 + offsets])",
        "stride * jnp.stack([jnp.ones(2, jnp.int32), 1 - offsets])",
        ("tests/pretext/test_context.py::test_neighbor_offset_and_jitter_bounds",),
    ),
    Mutant(
        "jigsaw_tiles_left_in_order",
        "#9: jigsaw",
        "ssl_jax/pretext/jigsaw.py",
        "    tiles = jax.vmap(cut)(tops, lefts)[permutations[label]]\n",
        "    tiles = jax.vmap(cut)(tops, lefts)\n",
        ("tests/pretext/test_jigsaw.py::test_tiles_come_from_the_permuted_cells",),
    ),
    Mutant(
        "mae_loss_on_the_visible_patches",
        "#9: MAE",
        "ssl_jax/methods/mae.py",
        "value = masked_mse(pred, target, masking.mask)",
        "value = masked_mse(pred, target, ~masking.mask)",
        (
            "tests/methods/test_pretext.py::"
            "test_mae_is_the_normalised_pixel_error_on_the_removed_patches",
        ),
    ),
    Mutant(
        "inpainting_encoder_sees_the_whole_image",
        "#9: inpainting",
        "ssl_jax/methods/inpainting.py",
        'params["backbone"], stats["backbone"], apply_mask(x, removed, fill=0.0), train=train,',
        'params["backbone"], stats["backbone"], x, train=train,',
        ("tests/methods/test_pretext.py::test_inpainting_reconstructs_the_central_block_only",),
    ),
    Mutant(
        "colorization_prior_not_accumulated",
        "#9: colorization",
        "ssl_jax/methods/colorization.py",
        "prior = prior + (frequencies - prior) / (step + 1)",
        "prior = frequencies + 0 * prior",
        (
            "tests/methods/test_pretext.py::"
            "test_colorization_is_the_rebalanced_cross_entropy_at_a_quarter_resolution",
        ),
    ),
    Mutant(
        "seed_queue_filled_with_student_features",
        "#10: SEED",
        "ssl_jax/methods/distill.py",
        "push(method_state, l2_normalize(t)[None])",
        "push(method_state, l2_normalize(s)[None])",
        (
            "tests/methods/test_distill.py::"
            "test_loss_compares_the_student_projection_with_the_teachers_features[seed]",
        ),
    ),
    Mutant(
        "teacher_in_train_mode",
        "#10: teacher",
        "ssl_jax/methods/teacher.py",
        "convert_input(x, spec), train=False",
        "convert_input(x, spec), train=True",
        (
            "tests/methods/test_distill.py::"
            "test_loss_compares_the_student_projection_with_the_teachers_features[seed]",
        ),
    ),
    Mutant(
        "teacher_receives_gradients",
        "#10: teacher",
        "ssl_jax/methods/teacher.py",
        "    return jax.lax.stop_gradient(features.astype(jnp.float32))\n",
        "    return features.astype(jnp.float32)\n",
        (
            "tests/methods/test_distill.py::"
            "test_loss_compares_the_student_projection_with_the_teachers_features[seed]",
        ),
    ),
    Mutant(
        "initial_state_keeps_weak_types",
        "#11: no recompilation",
        "ssl_jax/train_step.py",
        '    return x.astype(x.dtype) if getattr(x, "weak_type", False) else x\n',
        "    return x\n",
        (
            "tests/test_train_step.py::"
            "test_a_weakly_typed_initial_state_does_not_compile_the_step_twice",
        ),
    ),
    Mutant(
        "clusterfit_clusters_unnormalised_features",
        "#10: ClusterFit",
        "ssl_jax/methods/clusterfit.py",
        "    features = l2_normalize(jnp.asarray(features, jnp.float32))\n",
        "    features = jnp.asarray(features, jnp.float32)\n",
        (
            "tests/methods/test_clusterfit.py::"
            "test_centroids_are_the_kmeans_of_the_teachers_normalised_features",
        ),
    ),
    Mutant(
        "resnet_ignores_remat",
        "#11: rematerialisation",
        "ssl_jax/models/resnet.py",
        "x = _call_remat(block, x) if self.remat else block(x)",
        "x = block(x)",
        ("tests/models/test_remat.py::test_remat_recomputes_the_blocks_and_changes_no_result",),
    ),
    Mutant(
        "loop_saves_an_unchecked_step",
        "#11: no per-step host sync",
        "ssl_jax/programs/loop.py",
        "if not (step == start + 1 or logging_now or stopping or ckpt.due(step)):",
        "if not (step == start + 1 or logging_now or stopping):",
        ("tests/programs/test_loop.py::test_the_host_waits_only_for_steps_something_reads",),
    ),
    Mutant(
        "loop_waits_for_every_step",
        "#11: no per-step host sync",
        "ssl_jax/programs/loop.py",
        "                    continue  # nothing reads this step yet: the host runs ahead\n",
        "                    pass\n",
        ("tests/programs/test_loop.py::test_the_host_waits_only_for_steps_something_reads",),
    ),
    Mutant(
        "loop_evaluates_only_at_logged_steps",
        "#14: the kNN monitor skipped when its interval is not a multiple of the log's",
        "ssl_jax/programs/loop.py",
        "logging_now = step % loop.log_every == 0 or step == total or evaluating",
        "logging_now = step % loop.log_every == 0 or step == total",
        (
            "tests/programs/test_loop.py::"
            "test_evaluations_run_on_their_own_steps_whatever_the_logging_interval",
        ),
    ),
    Mutant(
        "dcl_positive_in_denominator",
        "3",
        "ssl_jax/losses/contrastive.py",
        "negative_lse = jax.nn.logsumexp(jnp.where(is_positive, -jnp.inf, logits), axis=-1)",
        "negative_lse = jax.nn.logsumexp(logits, axis=-1)",
        (
            "tests/losses/test_contrastive.py::test_dcl_and_dclw_match_the_paper_and_the_authors_form",
        ),
    ),
    Mutant(
        "tico_gradient_into_stored_covariance",
        "4",
        "ssl_jax/losses/redundancy.py",
        "current = beta * jax.lax.stop_gradient(covariance.astype(z1.dtype))",
        "current = beta * covariance.astype(z1.dtype)",
        ("tests/methods/test_tico.py::test_loss_covariance_update_and_gradients_are_the_papers",),
    ),
    Mutant(
        "data2vec_copies_paired_with_other_images",
        "3",
        "ssl_jax/methods/data2vec.py",
        "shared = jnp.repeat(targets, num_masks, axis=0)",
        "shared = jnp.tile(targets, (num_masks, 1, 1))",
        (
            "tests/methods/test_data2vec.py::"
            "test_loss_is_the_multi_mask_regression_of_the_teachers_averaged_top_blocks",
        ),
    ),
    Mutant(
        "simmim_loss_on_every_patch",
        "3",
        "ssl_jax/methods/simmim.py",
        "value = masked_l1(pred, patchify(x, patch), mask)",
        "value = masked_l1(pred, patchify(x, patch), jnp.ones_like(mask))",
        ("tests/methods/test_simmim.py::test_loss_is_the_l1_error_on_the_masked_patches_by_hand",),
    ),
)


def make_copy(root: str) -> str:
    """A fresh copy of the package and its tests under ``root``; returns its path."""
    dest = tempfile.mkdtemp(prefix="mutant_", dir=root)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in COPIED:
        src = os.path.join(REPO, name)
        if os.path.isdir(src):
            shutil.copytree(src, os.path.join(dest, name), ignore=ignore)
        else:
            shutil.copy2(src, dest)
    return dest


def plant(copy: str, mutant: Mutant) -> bool:
    """Apply the mutant in ``copy``; False when its code is not found exactly once (stale)."""
    path = os.path.join(copy, mutant.path)
    with open(path) as f:
        text = f.read()
    if text.count(mutant.old) != 1:
        return False
    with open(path, "w") as f:
        f.write(text.replace(mutant.old, mutant.new))
    return True


def run_tests(copy: str, tests) -> tuple[int, str]:
    """pytest on ``tests`` inside ``copy`` (its ``ssl_jax`` shadows an installed one)."""
    env = {**os.environ, "PYTHONPATH": copy, "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("XLA_FLAGS", None)  # tests/conftest.py sets the 8 fake devices
    where = subprocess.run(
        [sys.executable, "-c", "import ssl_jax; print(ssl_jax.__file__)"],
        cwd=copy, env=env, capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    if not where.startswith(copy):
        raise RuntimeError(f"the copy's ssl_jax is not the one imported ({where}); cannot test")
    proc = subprocess.run(  # -n 0: one process, none of pyproject's parallel workers
        [sys.executable, "-m", "pytest", "-q", "-x", "-n", "0", "-p", "no:cacheprovider", *tests],
        cwd=copy, env=env, capture_output=True, text=True,
    )  # fmt: skip
    return proc.returncode, proc.stdout + proc.stderr


def first_failure(output: str) -> str:
    """The first ``E ...`` lines of pytest's report: why the bug was caught."""
    lines = [line[1:].strip() for line in output.splitlines() if line.startswith("E ")]
    return " | ".join(line for line in lines[:3] if line)[:200]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these mutants")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--baseline", action="store_true", help="check unmutated tests pass")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = parser.parse_args(argv)
    mutants = MUTANTS
    if args.only:
        unknown = sorted(set(args.only) - {m.name for m in MUTANTS})
        if unknown:
            parser.error(f"unknown mutant(s) {unknown}; valid: {[m.name for m in MUTANTS]}")
        mutants = tuple(m for m in MUTANTS if m.name in args.only)
    if args.list:
        for m in mutants:
            print(f"{m.name} (item {m.issue_item}) in {m.path}\n  guarded by: {', '.join(m.tests)}")
        return 0
    rows = []
    with tempfile.TemporaryDirectory(prefix="ssl_jax_mutants_") as root:
        if args.baseline:
            tests = sorted({t for m in mutants for t in m.tests})
            code, output = run_tests(make_copy(root), tests)
            print(f"baseline (unmutated): {'pass' if code == 0 else 'FAIL'}", flush=True)
            if code != 0:
                print(output[-3000:])
                return 1
        for m in mutants:
            t0 = time.perf_counter()
            copy = make_copy(root)
            if not plant(copy, m):
                status, why = "stale", f"code to mutate not found exactly once in {m.path}"
            else:
                code, output = run_tests(copy, m.tests)
                status = {0: "survived", 1: "killed"}.get(code, f"error (pytest exit {code})")
                why = first_failure(output) if code == 1 else output[-300:].strip()
            shutil.rmtree(copy, ignore_errors=True)
            rows.append(dict(mutant=m.name, item=m.issue_item, status=status, reason=why,
                             seconds=round(time.perf_counter() - t0, 1)))  # fmt: skip
            print(f"{status:9s} {m.name:40s} {rows[-1]['seconds']:6.1f}s  {why}", flush=True)
    killed = sum(r["status"] == "killed" for r in rows)
    print(f"\n{killed} of {len(rows)} mutants killed")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
    return 0 if killed == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
