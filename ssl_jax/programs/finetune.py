"""Fine-tuning of a pretrained encoder with a fresh head, end to end: ``run(config, workdir)``.

SimCLR's semi-supervised protocol (Chen et al., 2020, appendix B.5): a class-balanced fraction
``data.label_fraction`` (0.01, 0.1, 1.0) of the training labels, drawn with ``config.seed``
(:func:`ssl_jax.data.subset.class_balanced_subset`), so every encoder fine-tuned with one seed
sees the same images; their indices are written to ``WORKDIR/label_subset.json``. A
class-balanced ``data.val_fraction`` of that subset is held out (``val_split.json``) and
evaluated every ``finetune.eval_every_steps`` steps and at the last; the state with the best
validation top-1 (the first one on ties) is kept in ``WORKDIR/best`` and is the one evaluated
on the test split: the epoch is chosen without looking at test. With ``val_fraction=0`` the
last step is reported.

Only the encoder export of ``config.pretrained`` is read (:func:`ssl_jax.export.load_export`),
never its config or optimizer state. The labelled data is the dataset the export's spec records
(that it was trained on) unless ``data.name`` names another; other ``data.*`` fields set change
the export's dataset field by field (:func:`ssl_jax.programs.common.data_config`).
``random_init=True`` starts from a fresh initialisation of the same architecture (seed
``config.seed``), the from-scratch baseline. The network is the export's backbone plus a head
(:mod:`ssl_jax.programs.finetune_step`) trained in the shared loop (:mod:`~ssl_jax.programs.loop`)
after the setup every training program shares (:mod:`ssl_jax.programs.setup`). Rerunning the
same command resumes from the workdir's newest checkpoint and continues the same trajectory;
the source export is read again at the step recorded in the saved config.

The workdir holds ``metrics.jsonl`` (``loss``, ``train_top1``, ``learning_rate``, ... and
``val_top1``/``val_top5`` at evaluations), ``results.json``, ``checkpoints/<step>`` (the train
state, and the fine-tuned backbone with its head as an encoder export, spec ``head``
``{"kind": finetune.head, "num_classes": K}`` and ``data`` the fine-tuning dataset, that
``load_export`` and the probe programs read and distillation's ``kd`` takes as a teacher),
``best/checkpoints/<step>`` (the best validation state's params and batch statistics, and its
export) and the two index files.
"""

import logging
from collections.abc import Callable

import jax
import ml_collections
from etils import epath

from ssl_jax.checkpoint import BestCheckpoint, CheckpointError, read_config
from ssl_jax.data import get_source
from ssl_jax.data.identity import identify
from ssl_jax.data.subset import SubsetSource, label_splits
from ssl_jax.evaluators import extract_features, make_sharded_encode
from ssl_jax.export import Export, load_export, make_head_spec, make_spec
from ssl_jax.metrics import MetricsWriter, topk_accuracy, truncate_after, write_results
from ssl_jax.models import VITS, ModuleDef, make_backbone
from ssl_jax.paths import resolve
from ssl_jax.programs.common import data_config, log_data
from ssl_jax.programs.finetune_step import get_head, make_classifier, make_logits_fn
from ssl_jax.programs.loop import Loop, NonFiniteLossError, on_devices, train
from ssl_jax.programs.setup import (
    make_batch_iterator,
    make_checkpointer,
    make_optimization,
    make_train_fns,
    make_training_mesh,
    restore_or_start,
)
from ssl_jax.sharding import replicate

log = logging.getLogger(__name__)

__all__ = ["NonFiniteLossError", "run"]


def check_config(config: ml_collections.ConfigDict) -> None:
    """Raises ``ValueError`` for fields a user can get wrong before anything is loaded."""
    if not config.pretrained:
        raise ValueError(
            "config.pretrained is empty: pass the workdir of a pretraining run, e.g. "
            "--config.pretrained=runs/simclr_cifar10 (with --config.random_init=True for the "
            "from-scratch baseline of its architecture)."
        )
    fraction = config.data.label_fraction
    if not 0.0 < fraction <= 1.0:
        raise ValueError(
            f"data.label_fraction={fraction} must be in (0, 1]: the fraction of the training "
            "labels used, e.g. 0.01 or 0.1 (SimCLR's semi-supervised settings) or 1.0."
        )
    if not 0.0 <= config.data.val_fraction < 1.0:
        raise ValueError(
            f"data.val_fraction={config.data.val_fraction} must be in [0, 1): the part of the "
            "labelled subset held out to choose the step (0: report the last step)."
        )
    if not 0.0 <= config.finetune.drop_path_rate < 1.0:
        raise ValueError(
            f"finetune.drop_path_rate={config.finetune.drop_path_rate} must be in [0, 1) "
            "(MAE fine-tunes ViT-B with 0.1)."
        )
    if config.finetune.eval_every_steps < 0:
        raise ValueError(
            f"finetune.eval_every_steps={config.finetune.eval_every_steps} must be 0 (the last "
            "step only) or positive."
        )


def load_source(config: ml_collections.ConfigDict, mesh, saved: dict | None) -> tuple[Export, dict]:
    """The export fine-tuning starts from, and its description for ``results.json``.

    ``saved`` (the config of the checkpoint being resumed, or None) pins the source step: a
    resumed run reads the checkpoint it started from, even if the pretraining run has written
    newer ones since.
    """
    step = config.step
    if saved is not None:
        for field in ("pretrained", "random_init"):
            if saved.get(field) != config[field]:
                raise CheckpointError(
                    f"The workdir holds a fine-tuning with {field}={saved.get(field)!r}, but "
                    f"this config has {field}={config[field]!r}. Resume with the same encoder, "
                    "or use a new workdir."
                )
        if step is None:
            step = saved["step"]
        elif step != saved["step"]:
            raise CheckpointError(
                f"The workdir holds a fine-tuning of step {saved['step']} of {config.pretrained}"
                f", but this config asks for step={step}. Resume with the same step, or use a "
                "new workdir."
            )
    if config.random_init:
        export = load_export(config.pretrained, step, mesh=mesh, random_init_seed=config.seed)
    else:
        export = load_export(config.pretrained, step, mesh=mesh)
    info = {
        "encoder": "random_init" if config.random_init else "pretrained",
        "pretrained": config.pretrained,
        "step": export.step,
        "encoder_method": export.spec["method"],
        "encoder_network": export.spec["network"],
        "backbone": export.spec["model"]["backbone"],
        "feature_dim": export.feature_dim,
    }
    return export, info


def finetune_backbone(export: Export, drop_path_rate: float) -> ModuleDef:
    """The export's backbone, with ViT stochastic depth at ``drop_path_rate`` (0: as is).

    Drop path has no parameters, so the export's arrays fit the returned backbone unchanged.
    """
    if not drop_path_rate:
        return export.backbone
    model = export.spec["model"]
    if model["backbone"] not in VITS:
        raise ValueError(
            f"finetune.drop_path_rate={drop_path_rate} needs a ViT backbone (stochastic depth "
            f"of its blocks), but the export's is {model['backbone']}; set it to 0."
        )
    return make_backbone(ml_collections.ConfigDict({**model, "drop_path_rate": drop_path_rate}))


def make_classifier_from_config(config, export: Export, num_classes: int) -> tuple:
    """``(classifier, logits)``: the :class:`~ssl_jax.method.Method` that fine-tunes the
    export's backbone with a fresh ``finetune.head``, and its evaluation forward pass."""
    ft = config.finetune
    backbone = finetune_backbone(export, ft.drop_path_rate)
    head = get_head(ft.head, export.feature_dim, num_classes)
    classifier = make_classifier(
        backbone,
        export.spec["input"],
        num_classes=num_classes,
        head=head,
        label_smoothing=ft.label_smoothing,
        mixup_alpha=ft.mixup_alpha,
        cutmix_alpha=ft.cutmix_alpha,
        switch_prob=ft.mix_switch_prob,
        crop_scale=ft.crop_scale,
        crop_ratio=ft.crop_ratio,
        flip_prob=ft.flip_prob,
        backbone_rngs=ft.drop_path_rate > 0,
    )
    return classifier, make_logits_fn(backbone, head, export.spec["input"])


def make_start_fn(init_fn, tx, sharding):
    """``start(seed, encoder_arrays) -> TrainState``: ``init_fn(seed)``'s state with the
    export's backbone (params and batch statistics) and the optimizer state initialised on
    these params, laid out as ``sharding``. One program: the backbone initialisation it
    replaces is compiled away."""
    start = lambda seed, arrays: _with_backbone(init_fn(seed), arrays, tx)
    return jax.jit(start, static_argnums=0, out_shardings=sharding)


def _with_backbone(state, arrays, tx):
    params = {**state.params, "backbone": arrays["params"]}
    stats = {**state.method_state, "backbone": arrays["batch_stats"]}
    return state.replace(params=params, method_state=stats, opt_state=tx.init(params))


def accuracy(predict, arrays: dict, source, *, batch_size: int, mesh, desc: str) -> dict:
    """Top-1/top-5 (%) of the classifier ``arrays`` on every image of ``source`` (arrays that
    ``mesh.fsdp`` split are gathered whole first: the encoder takes replicated arrays)."""
    if not all(x.sharding.is_fully_replicated for x in jax.tree.leaves(arrays)):
        arrays = replicate(arrays, mesh)
    logits, labels = extract_features(
        predict, arrays, source, batch_size=batch_size, mesh=mesh, desc=desc, progress=False
    )
    return topk_accuracy(logits, labels)


def chosen_test_accuracy(
    best, state, abstract_state, predict, test_src, *, batch_size, mesh
) -> dict:
    """Test top-1/top-5 of the chosen state: the best validation one (``best``), else the
    last (``state``)."""
    if best is not None:
        abstract = {"params": abstract_state.params, "method_state": abstract_state.method_state}
        arrays = best.restore(abstract)
        chosen = {"chosen_step": best.step, "selected_by": "val_top1", "val_top1": best.top1}
    else:
        arrays = {"params": state.params, "method_state": state.method_state}
        chosen = {"chosen_step": int(jax.device_get(state.step)), "selected_by": "last_step"}
    acc = accuracy(predict, arrays, test_src, batch_size=batch_size, mesh=mesh, desc="test")
    return {**acc, **chosen}


def run(
    config: ml_collections.ConfigDict,
    workdir: epath.PathLike,
    *,
    should_stop: Callable[[int], bool] | None = None,
) -> dict:
    """Fine-tune, choose the step on validation, report test top-1/top-5; returns (and writes)
    ``results.json``'s numbers. ``workdir`` is a local path or a URI (``gs://bucket/run``).
    ``should_stop(step)`` interrupts the run as SIGTERM would (the state after ``step`` steps
    is saved, and no test numbers are reported)."""
    check_config(config)
    workdir = resolve(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    ft = config.finetune
    mesh = make_training_mesh(config, config.data.batch_size, ft.eval_batch_size)

    ckpt = make_checkpointer(config, workdir)
    best = None
    try:
        latest = ckpt.latest_step()
        saved = read_config(workdir, latest) if latest is not None else None
        export, info = load_source(config, mesh, saved)
        data, origin = data_config(config, export.spec)

        train_src, test_src = get_source(data, "train"), get_source(data, "test")
        log_data(data, origin, {"train": train_src, "test": test_src})
        num_classes = max(train_src.num_classes, test_src.num_classes)
        train_idx, val_idx = label_splits(
            train_src,
            label_fraction=data.label_fraction,
            val_fraction=data.val_fraction,
            seed=config.seed,
            workdir=workdir,
            data_name=data.name,
        )
        name = f"{train_src.name} train (label_fraction {data.label_fraction:g})"
        train_set = SubsetSource(train_src, train_idx, name=name)
        val_set = SubsetSource(train_src, val_idx, name="validation") if len(val_idx) else None
        iterator = make_batch_iterator(train_set, batch_size=data.batch_size, seed=config.seed)
        steps_per_epoch = iterator.steps_per_epoch

        classifier, logits = make_classifier_from_config(config, export, num_classes)
        abstract_params = jax.eval_shape(classifier.init, jax.random.key(0))[0]
        opt = make_optimization(config, steps_per_epoch, params=abstract_params)
        total = opt.total
        fns = make_train_fns(config, classifier, opt, mesh)
        abstract_state = jax.eval_shape(fns.init_fn, config.seed)
        predict = make_sharded_encode(logits, mesh)
        spec = make_spec(
            export.spec["model"],
            input=export.spec["input"],
            network="online",
            method="finetune",
            feature_dim=export.feature_dim,
            step=0,
            head=make_head_spec(ft.head, num_classes),
            data=identify(data),
        )

        def start_from_export(arrays=export.arrays):
            state = make_start_fn(fns.init_fn, opt.tx, fns.sharding)(config.seed, arrays)
            origin = f"started from the {info['encoder']} encoder of {config.pretrained}"
            return state, {"step": 0}, origin

        state, start, origin = restore_or_start(
            ckpt, workdir, abstract_state, iterator, start_from_export
        )
        del export, start_from_export  # its arrays now live in the state
        log.info(
            "%s; %d steps of %d images (%d per epoch); %d train, %d validation images",
            origin,
            total,
            data.batch_size,
            steps_per_epoch,
            len(train_idx),
            len(val_idx),
        )
        truncate_after(workdir / "metrics.jsonl", start)
        if val_set is not None:
            best = BestCheckpoint(workdir, start, async_save=config.ckpt.async_save)
        config_json = {**config.to_dict(), "step": info["step"]}

        def items(step, state):
            return dict(
                encoder=classifier.export(state.params, state.method_state),
                encoder_spec={**spec, "step": step},
                config=config_json,
            )

        def save(step, state, force):
            data_state = iterator.get_state(step)
            return ckpt.save(step, state=state, data=data_state, force=force, **items(step, state))

        def evaluates(step):
            every = ft.eval_every_steps
            return val_set is not None and (step == total or bool(every and step % every == 0))

        def evaluate(step, state):
            arrays = {"params": state.params, "method_state": state.method_state}
            kw = dict(batch_size=ft.eval_batch_size, mesh=mesh, desc="validation")
            acc = accuracy(predict, arrays, val_set, **kw)

            def save_best(best_ckpt):
                best_data = {"step": step, "val_top1": acc["top1"]}
                best_ckpt.save(step, state=arrays, data=best_data, force=True, **items(step, state))

            best.update(step, acc["top1"], save_best)
            return {"val_top1": acc["top1"], "val_top5": acc["top5"]}

        loop = Loop(
            train_step=fns.train_step,
            batches=on_devices(iterator.iterate(start, workers=config.data.workers), mesh),
            save=save,
            total_steps=total,
            batch_size=data.batch_size,
            steps_per_epoch=steps_per_epoch,
            log_every=config.log.every_steps,
            evaluates=evaluates,
            evaluate=evaluate,
            progress=config.log.progress,
            desc="finetune",
        )
        writer = MetricsWriter(workdir, tensorboard=config.log.tensorboard)
        try:
            state, loop_results = train(
                loop,
                state,
                start,
                ckpt=ckpt,
                writer=writer,
                workdir=workdir,
                should_stop=should_stop,
            )
        finally:
            writer.close()

        results = {
            "program": "finetune",
            "split": "test",
            "label_fraction": data.label_fraction,
            "val_fraction": data.val_fraction,
            "num_labelled": len(train_idx) + len(val_idx),
            "num_train": len(train_idx),
            "num_val": len(val_idx),
            "num_test": len(test_src),
            "num_classes": num_classes,
            "data": data.name,
            "dataset": spec["data"],
            "seed": config.seed,
            **info,
            "start_step": start,
            "total_steps": total,
            "steps_per_epoch": steps_per_epoch,
            "final_step": loop_results["final_step"],
            "wall_time_s": loop_results["wall_time_s"],
        }
        if "loss" in loop_results:
            results["final_train_loss"] = loop_results["loss"]
        if "interrupted_at" in loop_results:
            results["interrupted_at"] = loop_results["interrupted_at"]
        else:
            kw = dict(batch_size=ft.eval_batch_size, mesh=mesh)
            results.update(
                chosen_test_accuracy(best, state, abstract_state, predict, test_src, **kw)
            )
            results["chosen_epoch"] = results["chosen_step"] / steps_per_epoch
    finally:
        ckpt.close()
        if best is not None:
            best.close()
    write_results(workdir, results)
    return results
