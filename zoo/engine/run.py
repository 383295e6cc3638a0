"""One adapt run from start to finish: the run directory's life, the strategy, the loop, and what is written.

The caller claims the run directory first (:mod:`zoo.engine.rundir`: one run per folder). Its ``zoo_run.json``
appears only after the data has been read and the backbone loaded, and says ``"status": "running"`` until the
native model (checked to hold finite weights), plots and model card are in place; only then is it rewritten,
atomically, as ``"finished"``. A killed run therefore never looks finished, and ``--resume`` picks it up from
its last checkpoint; a run that fails (a non-finite loss, a full disk) says ``"failed"`` with the reason.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from zoo.data import load_data
from zoo.data.base import DataSplits
from zoo.engine.checkpoint import (
    Progress,
    discard_candidates,
    discard_checkpoints,
    discard_partial_checkpoint,
    load_candidate,
    load_checkpoint,
    save_candidate,
)
from zoo.engine.config import (
    AdaptConfig,
    auto_candidates,
    choose_by_validation,
    distill_strategy,
    plan_reason,
    with_verdict,
)
from zoo.engine.soup import make_soup
from zoo.engine.teacher import TeacherOutputs, discard_teacher_outputs, teacher_metrics, teacher_outputs
from zoo.engine.trainer import (
    Reporter,
    Trainer,
    adamw,
    cosine_with_warmup,
    distillation_loss,
    make_loss,
    parameter_groups,
)
from zoo.errors import DiskFullError, InvalidInputError, NonFiniteWeightsError, PluginError, disk_error
from zoo.explain.decides import HOW_IT_DECIDES, discard_how_it_decides, how_it_decides
from zoo.hardware import check_device, fingerprint, launch_section
from zoo.loading import LoadedClassifier, load_classifier
from zoo.precision import accelerate_mixed_precision, resolve_precision
from zoo.runs.card import write_model_card, write_plots
from zoo.runs.outputs import RECORD_KEY as VALIDATION_OUTPUTS
from zoo.runs.outputs import write_validation_outputs
from zoo.runs.record import (
    RECORD_VERSION,
    VERSION_KEY,
    check_finite_weights,
    has_record,
    read_record,
    record_failure,
    write_record,
)
from zoo.tasks import get_task

SPLIT_SEED = 0
# The record's list of the sections a caller added (run_training's ``sections``), kept when the run is resumed.
EXTRA_SECTIONS = "extra_sections"


@dataclass
class AdaptRequest:
    """How the person asked for the run: enough to read the same data again on --resume."""

    backbone: str
    task: str
    data: str
    val: str | None = None
    test: str | None = None
    input_col: str | None = None
    label_col: str | None = None
    label_sep: str = "|"
    multi_label: bool | None = None
    val_fraction: float = 0.1
    skip_bad: bool = False
    device: str = "auto"
    registry_files: list[str] = field(default_factory=list)
    # distillation (zoo distill): the teacher's run folder, and the student alone the run is compared with
    # (train: one trained beside it; none; or a run's folder)
    teacher: str | None = None
    baseline: str | None = None
    # The seed the validation split is drawn with: SPLIT_SEED for every run since it was recorded, whatever the
    # training seed, so that runs differing only in --seed are scored on the same examples (and never train on
    # each other's validation examples): soups and ensembles choose among them there. None, in a record from
    # before: that run's training seed drew its split.
    split_seed: int | None = None

    def read_data(self, *, seed: int) -> DataSplits:
        """The data as this request reads it: when the run starts, and again on --resume, where its fingerprint
        must not have changed. ``seed`` is the run's training seed, which draws the split only for a request
        recorded without :attr:`split_seed`."""
        return load_data(self.data, task=self.task, val=self.val, test=self.test, input_col=self.input_col,
                         label_col=self.label_col, label_sep=self.label_sep, multi_label=self.multi_label,
                         val_fraction=self.val_fraction, seed=seed if self.split_seed is None else self.split_seed,
                         skip_bad=self.skip_bad)

    def command(self, config: AdaptConfig, *, tasks: tuple[str, ...] = ()) -> list[str]:
        """The `zoo adapt` command line (`zoo distill` for a run with a teacher), as arguments, that starts this
        run again with the resolved ``config`` spelled out (``tasks``: the backbone's, so --task is given only where
        it has a choice). A list, so that a published record can cut each path to its name."""
        if self.teacher is not None:
            args = ["zoo", "distill", "--teacher", self.teacher, "--student", self.backbone, "--data", self.data]
        else:
            args = ["zoo", "adapt", self.backbone, "--data", self.data]
        for option, value in (("--task", self.task if len(tasks) > 1 else None), ("--val", self.val),
                              ("--test", self.test), ("--text-col", self.input_col), ("--label-col", self.label_col),
                              ("--label-sep", self.label_sep if self.label_sep != "|" else None),
                              ("--val-fraction", repr(self.val_fraction) if self.val_fraction != 0.1 else None),
                              ("--device", self.device if self.device != "auto" else None)):
            if value is not None:
                args += [option, value]
        if self.multi_label is not None:
            args.append("--multi-label" if self.multi_label else "--single-label")
        if self.skip_bad:
            args.append("--skip-bad")
        args += config.command_options()[0]
        if self.teacher is not None:
            args += ["--temperature", repr(config.distill_temperature), "--alpha", repr(config.distill_alpha)]
            if self.baseline not in (None, "train"):
                args += ["--baseline", self.baseline]
        for file in self.registry_files:
            args += ["--registry", file]
        return args


def _versions(family) -> dict[str, str]:
    names = ["zoo-hub", "torch", "accelerate", "peft", "numpy", "huggingface-hub"]
    if getattr(family, "library", ""):
        names.append(family.library)
    versions = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def run_training(spec, family, splits: DataSplits, config: AdaptConfig, run_dir: Path, request: AdaptRequest, *,
                 resume: bool = False, reporter: Reporter | None = None,
                 on_record: Callable[[dict[str, Any]], None] | None = None,
                 sections: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Adapt ``spec`` on ``splits`` into ``run_dir``; returns the finished run record.

    ``on_record`` is called with the record when the run starts ("running") and when it fails ("failed"), so the
    run history shows it while it trains; the caller records the finished run. ``sections`` are top-level
    sections the caller adds to the record as they are (a `zoo tune` trial's ``tune``), named in its
    ``extra_sections``; a resumed run keeps those it had, unless they are given again.
    """
    import torch
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    reporter = reporter or Reporter()
    run_dir = Path(run_dir)
    started_wall = time.perf_counter()
    cpu = request.device == "cpu" or (request.device == "auto" and not torch.cuda.is_available())
    check_device("--device", request.device, allow_index=False)   # a resumed run may be on another machine
    device_type = "cpu" if cpu else "cuda"
    precision = resolve_precision(config.precision, device_type)
    accelerator = Accelerator(cpu=cpu, mixed_precision=accelerate_mixed_precision(precision))
    set_seed(config.seed)

    checkpoint = load_checkpoint(run_dir) if resume else None
    previous = read_record(run_dir).to_dict() if resume else {}
    loaded = _load_classifier(family, spec, request, splits, config)
    classifier = loaded.classifier

    # The strategies to train: one, or (auto on small data) linear and a fine-tuning, the better kept. A resumed
    # run keeps its plan and the scores of the candidates that finished (None for the others).
    if resume and previous.get("strategy"):
        scores = (previous.get("choices") or {}).get("strategy", {}).get("candidates")
        plan = tuple(scores) if scores else (previous["strategy"],)
        reason = previous.get("strategy_reason", "")
        if scores:   # the last candidate is scored again from its checkpoint, and the verdict drawn again
            scores[plan[-1]] = None
            reason = plan_reason(reason)
    elif config.strategy == "auto" and request.teacher is not None:   # soft targets need a fine-tuning
        strategy, reason = distill_strategy(len(splits.train), spec.params_m, device_type)
        plan, scores = (strategy,), None
    elif config.strategy == "auto":
        plan, reason = auto_candidates(len(splits.train), spec.params_m, device_type)
        scores = None
    else:
        plan, reason, scores = (config.strategy,), "chosen with --strategy", None
    if len(plan) > 1:
        scores = {strategy: (scores or {}).get(strategy) for strategy in plan}
    strategy = next(s for s in plan if scores is None or scores[s] is None)
    # The processes training on this machine share its cores among their data-loading workers.
    local_processes = int(os.environ.get("LOCAL_WORLD_SIZE", accelerator.num_processes))
    facts = {"num_train": len(splits.train), "image_size": classifier.image_size, "family": spec.family,
             "family_lr": _family_lr(family, spec), "device": device_type,
             "input_kind": get_task(request.task).input_kind, "processes": local_processes}
    resolved = config.resolved(strategy, **facts)
    reporter.message(f"strategy {' then '.join(plan) if len(plan) > 1 else strategy}: {reason}")
    if "lora" in plan:   # a plugin's bad target list is refused before the run record exists
        from zoo.engine.setup import check_lora_targets

        check_lora_targets(classifier, spec)

    record: dict[str, Any] = {
        VERSION_KEY: RECORD_VERSION, "status": "running", "run_dir": str(run_dir.resolve()),
        "backbone": {**spec.to_dict(), "commit": loaded.commit},   # the commit read, when unpinned too
        "family_library": family.library, "task": request.task,
        "strategy": strategy, "strategy_reason": reason, "labels": splits.label_names,
        "multi_label": splits.multi_label, "data": splits.summary(), "request": asdict(request),
        "config": None, "config_requested": config.to_dict(), "seed": resolved.seed,
        "precision_used": precision,   # config.precision resolved for this device (zoo.precision)
        # each explained hyperparameter's value, the rule that chose it and whether the person set it
        "choices": None, "image_size": resolved.image_size,   # the square side trained, evaluated, saved at
        "command": None,                                      # zoo adapt ..., as arguments
        "versions": _versions(family), "hardware": fingerprint(accelerator.device, processes=accelerator.num_processes),
        "started_at": previous.get("started_at") or datetime.now(UTC).isoformat(),
        "finished_at": None, "wall_s": None, "metrics": None, "best_epoch": None,
        "resumed": previous.get("resumed", 0) + (1 if resume else 0),
    }
    if launch_section() is not None:   # the ranks it trains in, so that --resume starts as many again
        record["launch"] = launch_section()
    if previous.get("head_fit"):   # an auto run's linear candidate, solved before the interruption
        record["head_fit"] = previous["head_fit"]
    added = {name: previous[name] for name in previous.get(EXTRA_SECTIONS, ()) if name in previous}
    added.update(sections or {})
    if added:
        record.update(added)
        record[EXTRA_SECTIONS] = sorted(added)
    _explain(record, config, request, spec, strategy, reason, facts, scores)
    # Only now, with data read and the backbone loaded, does the run record appear.
    if accelerator.is_main_process:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_record(run_dir, record)
        if on_record is not None:
            on_record(record)
    accelerator.wait_for_everyone()
    try:
        teacher = None
        if request.teacher is not None:
            teacher = _teacher(request, splits, resolved, precision, run_dir, record, accelerator, reporter)
        return _train_plan(spec, family, request, classifier, splits, config, plan, scores, reason, facts, run_dir,
                           record, accelerator, checkpoint, reporter, started_wall, teacher=teacher)
    except BaseException as exc:
        if isinstance(exc, Exception):   # whatever the writer raised, a full disk is reported as one
            exc = disk_error(exc, run_dir, needed=_model_bytes(classifier))
        if accelerator.is_main_process and has_record(run_dir):
            _record_failure(run_dir, record, exc, on_record)
        if isinstance(exc, DiskFullError):
            raise exc from None
        raise


def _load_classifier(family, spec, request: AdaptRequest, splits: DataSplits,
                     config: AdaptConfig) -> LoadedClassifier:
    """The backbone with its pretrained weights and a fresh head (each candidate of auto starts from one)."""
    # image_size only when asked for: api.adapt has checked that the family takes it (Family.takes_image_size).
    loaded = load_classifier(spec, family, task=request.task, labels=splits.label_names,
                             multi_label=splits.multi_label, image_size=config.image_size)
    loaded.classifier.augment = config.augment
    if config.max_length:   # Classifier.max_length: text classifiers cut there, others ignore it
        loaded.classifier.max_length = config.max_length
    return loaded


def _teacher(request: AdaptRequest, splits: DataSplits, config: AdaptConfig, precision: str, run_dir: Path,
             record: dict[str, Any], accelerator, reporter: Reporter) -> TeacherOutputs:
    """The teacher's logits (zoo.engine.teacher: computed once, read back on resume), and the record's "distill"
    section: the teacher, scored on this run's validation and test examples, and the loss's settings."""
    if not config.distills:
        raise InvalidInputError(f"--teacher {request.teacher}: a distilled run needs --temperature and --alpha; "
                                "start it with zoo distill")
    outputs, teacher_record = teacher_outputs(request.teacher, splits, run_dir=run_dir, device=accelerator.device,
                                              precision=precision, batch_size=config.eval_batch_size,
                                              num_workers=config.workers, reporter=reporter,
                                              write=accelerator.is_main_process)
    backbone = teacher_record.get("backbone") or {}
    record["distill"] = {
        "teacher": {"run": request.teacher, "backbone": backbone.get("name"),
                    "strategy": teacher_record.get("strategy"), "metrics": teacher_metrics(outputs, splits)},
        "temperature": config.distill_temperature, "alpha": config.distill_alpha,
        "teacher_logits": {"examples": {split: len(values) for split, values in outputs.logits.items()},
                           "seconds": outputs.seconds, "read_back": outputs.from_cache},
    }
    if accelerator.is_main_process:
        write_record(run_dir, record)
    return outputs


def _family_lr(family, spec) -> dict[str, float]:
    """The family's preferred learning rates (Family.preferred_lr), checked: a plugin's bad value names it."""
    preferred = dict(getattr(family, "preferred_lr", None) or {})
    for strategy, lr in preferred.items():
        if strategy not in ("full", "lora") or isinstance(lr, bool) or not isinstance(lr, (int, float)) \
                or not 0 < lr < float("inf"):
            raise PluginError(f"{type(family).__module__.split('.')[0]} ({spec.family} family)",
                              f"{type(family).__name__}.preferred_lr must map 'full' or 'lora' to a positive "
                              f"learning rate, not {strategy!r}: {lr!r}; pass --lr meanwhile")
    return preferred


def _explain(record: dict[str, Any], config: AdaptConfig, request: AdaptRequest, spec, strategy: str, reason: str,
             facts: dict[str, Any], scores: dict[str, float | None] | None) -> AdaptConfig:
    """Put ``strategy``'s resolved configuration, the rules behind it and the command that repeats it into the
    record; returns the resolved configuration."""
    resolved = config.resolved(strategy, **facts)
    choices = config.choices(strategy, reason, candidates=scores, **facts)
    record.update({"strategy": strategy, "strategy_reason": reason, "config": resolved.to_dict(),
                   "choices": {name: choice.to_dict() for name, choice in choices.items()},
                   "command": request.command(resolved, tasks=tuple(spec.tasks)) + _launch_options(record)})
    return resolved


def _launch_options(record: dict[str, Any]) -> list[str]:
    """The command's --processes, for a run on one machine in several; a run on several machines is started by a
    command per machine (docs/adapt.md), which no one line repeats."""
    launch = record.get("launch") or {}
    return ["--processes", str(launch["processes"])] if launch.get("nodes") == 1 else []


def _candidate_score(strategy: str, metrics: dict[str, Any], metric: str) -> float:
    """A tried strategy's score: its best validation ``metric`` (one place, so tests can decide the outcome)."""
    return metrics[metric]


def _train_plan(spec, family, request, classifier, splits, config, plan, scores, reason, facts, run_dir, record,
                accelerator, checkpoint, reporter, started_wall, *, teacher: TeacherOutputs | None = None
                ) -> dict[str, Any]:
    """Train each planned strategy not yet scored; with more than one, keep the better on validation and save it.

    A candidate that is not the last is scored, kept aside (checkpoint.save_candidate), its checkpoints dropped,
    and only then its score recorded: a run killed before that trains it again, one killed after goes on with the
    next, whose checkpoints are then the only ones. The last candidate is scored and compared after training;
    if an earlier one wins, a fresh backbone is given its kept parameters.
    """
    from zoo.engine.setup import build_setup

    main = accelerator.is_main_process
    for strategy in plan:
        if scores is not None and scores[strategy] is not None:
            continue
        if classifier is None:
            classifier = _load_classifier(family, spec, request, splits, config).classifier
        resolved = _explain(record, config, request, spec, strategy, reason, facts, scores)
        if scores is not None:
            reporter.message(f"trying {strategy} ({plan.index(strategy) + 1} of {len(plan)})")
            if main:
                write_record(run_dir, record)
        setup, trainer, progress = _train(spec, classifier, splits, resolved, strategy, run_dir, record,
                                          accelerator, checkpoint, reporter, teacher=teacher)
        if scores is None:
            return _evaluate_and_save(spec, classifier, splits, resolved, strategy, run_dir, record, accelerator,
                                      reporter, started_wall, setup, trainer, progress)
        scores[strategy] = _candidate_score(strategy, trainer.evaluate(setup.val_data), trainer.metric)
        reporter.message(f"{strategy}: validation {trainer.metric} {scores[strategy]:.4g}")
        if strategy == plan[-1]:
            break
        if main:
            save_candidate(run_dir, strategy, tensors=setup.state_tensors(), progress=progress)
            discard_checkpoints(run_dir)
            _explain(record, config, request, spec, strategy, reason, facts, scores)
            write_record(run_dir, record)
        accelerator.wait_for_everyone()
        classifier, checkpoint = None, None

    winner, why = choose_by_validation(scores, trainer.metric)
    reporter.message(why)
    if winner != strategy:   # an earlier candidate won: a fresh backbone with its kept parameters
        classifier = _load_classifier(family, spec, request, splits, config).classifier
        if winner == "linear" and record.get("head_fit", {}).get("pooling"):
            _select_pooling(classifier, record["head_fit"]["pooling"])
        resolved = config.resolved(winner, **facts)
        setup = build_setup(classifier, spec, splits, resolved, device=accelerator.device, reporter=reporter)
        tensors, progress = load_candidate(run_dir, winner)
        setup.load_state_tensors(tensors)
        trainer = Trainer(setup, resolved, accelerator=accelerator, optimizer=None, scheduler=None,
                          loss_fn=None, task=splits.task, label_names=splits.label_names,
                          multi_label=splits.multi_label, run_dir=run_dir, reporter=reporter)
    if winner != "linear":   # the linear candidate's solve does not describe the model kept
        record.pop("head_fit", None)
    else:                    # nor does a fine-tuned candidate's soup of epochs
        record.pop("soup", None)
    resolved = _explain(record, config, request, spec, winner, with_verdict(reason, why), facts, scores)
    return _evaluate_and_save(spec, classifier, splits, resolved, winner, run_dir, record, accelerator, reporter,
                              started_wall, setup, trainer, progress)


def _select_pooling(classifier, pooling: str) -> None:
    """Make a fresh classifier read ``pooling`` (a solved linear head's), before its kept head is loaded: writing
    a zero head through that pooling's LinearHead sets up whatever the pooling needs in the model."""
    import torch

    head = next((head for head in classifier.linear_heads() if head.pooling == pooling), None)
    if head is None:
        return
    head.write(torch.zeros(classifier.num_labels, head.in_features), torch.zeros(classifier.num_labels))


def _train(spec, classifier, splits, resolved, strategy, run_dir, record, accelerator, checkpoint,
           reporter, *, teacher: TeacherOutputs | None = None) -> tuple[Any, Trainer, Progress]:
    """Train one strategy (from ``checkpoint`` when resuming) and leave its best parameters in place: the linear
    head solved on cached features when the family's head is one linear layer, else epoch by epoch. With a
    ``teacher``, each training batch carries its logits and the loss is distillation's."""
    from zoo.engine.setup import build_setup

    setup = build_setup(classifier, spec, splits, resolved, device=accelerator.device, reporter=reporter,
                        teacher_logits=teacher.logits["train"] if teacher is not None else None)
    loss_fn = make_loss(resolved, multi_label=splits.multi_label,
                        class_counts=list(splits.class_counts("train").values()), num_examples=len(splits.train),
                        device=accelerator.device)
    if teacher is not None:
        loss_fn = distillation_loss(loss_fn, temperature=resolved.distill_temperature, alpha=resolved.distill_alpha,
                                    multi_label=splits.multi_label)
    heads = classifier.linear_heads() if strategy == "linear" else []
    if heads:   # a convex problem on cached features: solved, not trained for epochs
        trainer, progress = _solve_linear_head(spec, classifier, splits, resolved, setup, heads, loss_fn, record,
                                               accelerator, run_dir, reporter)
    else:
        if strategy == "linear":
            record["head_fit"] = {"solver": "sgd", "reason": f"the {spec.family} head of {spec.name} is not one "
                                                             "linear layer, so it is trained epoch by epoch"}
            reporter.message(record["head_fit"]["reason"])
        trainer, progress = _train_epochs(classifier, splits, resolved, strategy, setup, loss_fn, record,
                                          accelerator, checkpoint, run_dir, reporter)
    return setup, trainer, progress


def _train_epochs(classifier, splits, resolved, strategy, setup, loss_fn, record, accelerator, checkpoint, run_dir,
                  reporter) -> tuple[Trainer, Progress]:
    """The epoch-by-epoch loop (AdamW, cosine schedule, early stopping), from a checkpoint when resuming."""
    import dataclasses

    import torch

    if strategy == "linear" and resolved.soup_top_k:   # a head on frozen features: only fine-tuning is souped
        reporter.message("--soup-top-k applies to the full and lora strategies: the linear head is kept as trained")
        resolved = dataclasses.replace(resolved, soup_top_k=None)
    device_type = accelerator.device.type
    groups = parameter_groups(
        setup.trainable.items(), lr=resolved.lr, weight_decay=resolved.weight_decay,
        layer_groups=classifier.parameter_groups() if strategy == "full" else None,
        layer_decay=resolved.layer_decay if strategy == "full" else None)
    optimizer = adamw(groups, lr=resolved.lr, device_type=device_type)
    steps_per_epoch = -(-len(setup.train_data) // (resolved.batch_size * resolved.grad_accum))
    total_steps = max(1, steps_per_epoch * resolved.epochs)
    # round: a warm-up share chosen for a whole number of steps (config.choices) gives exactly that number
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, cosine_with_warmup(round(resolved.warmup_ratio * total_steps), total_steps))
    optimizer = accelerator.prepare(optimizer)

    progress, best = Progress(), None
    if checkpoint is not None:
        setup.load_state_tensors(checkpoint.trainable)
        optimizer.load_state_dict(checkpoint.optimizer_state)
        scheduler.load_state_dict(checkpoint.scheduler_state)
        progress, best = checkpoint.progress, checkpoint.best
        if progress.stopped_early or progress.epoch >= resolved.epochs:
            reporter.message("resuming after the last epoch: final evaluation and save")
        else:
            reporter.message(f"resuming at epoch {progress.epoch + 1}, batch {progress.batches_done}")
    elif record["resumed"]:
        reporter.message("no complete checkpoint was written before the interruption: training starts over")

    trainer = Trainer(setup, resolved, accelerator=accelerator, optimizer=optimizer, scheduler=scheduler,
                      loss_fn=loss_fn, task=splits.task, label_names=splits.label_names,
                      multi_label=splits.multi_label, run_dir=run_dir, reporter=reporter)
    if checkpoint is not None:
        trainer.snapshots = checkpoint.snapshots
    progress, best = trainer.fit(progress, best)

    # The best epoch's parameters (and its batch-norm statistics) become the model; with --soup-top-k, the greedy
    # soup of the best epochs, which starts from it.
    if best is not None:
        setup.load_state_tensors(best)
    record.pop("soup", None)
    if resolved.soup_top_k:
        record["soup"] = _soup_of_epochs(trainer, setup, progress, reporter)
    return trainer, progress


def _soup_of_epochs(trainer: Trainer, setup, progress: Progress, reporter: Reporter) -> dict[str, Any]:
    """The greedy soup (zoo.engine.soup) of the epochs --soup-top-k kept, on the validation split, left in the
    model; returns the record's "soup" section. It starts from the best epoch, so it never scores below it."""
    epochs = {f"epoch {kept['epoch'] + 1}": kept["epoch"] for kept in progress.snapshots}
    scores = {name: kept["score"] for name, kept in zip(epochs, progress.snapshots, strict=True)}
    section = {"kind": "epochs", "top_k": trainer.config.soup_top_k}
    if len(epochs) < 2:   # one epoch evaluated: nothing to average
        reporter.message(f"--soup-top-k: only {len(epochs)} epoch evaluated; the model is the best epoch")
        return {**section, "method": "greedy", "metric": trainer.metric, "kept": list(epochs),
                "ingredients": [], "score": progress.best_metric, "best_ingredient": progress.best_metric,
                "gain": 0.0}

    def evaluate(tensors: dict[str, Any]) -> tuple[float, None]:
        setup.load_state_tensors(tensors)
        return trainer.evaluate(setup.val_data)[trainer.metric], None

    soup = make_soup(scores, load=lambda name: trainer.snapshots[epochs[name]], evaluate=evaluate,
                     method="greedy", metric=trainer.metric, say=reporter.message)
    setup.load_state_tensors(soup.tensors)
    reporter.message(f"soup of {', '.join(soup.kept)}: validation {trainer.metric} {soup.score:.4g} (best epoch "
                     f"{soup.best_ingredient:.4g})")
    return {**section, **soup.to_record()}


def _solve_linear_head(spec, classifier, splits, resolved, setup, heads, loss_fn, record, accelerator, run_dir,
                       reporter) -> tuple[Trainer, Progress]:
    """The linear strategy's head fitted to convergence (zoo.engine.probe), as one entry of the epoch history.

    Nothing is checkpointed: the fit takes seconds on cached features, so a resumed run simply fits again.
    """
    from zoo.engine.metrics import headline
    from zoo.engine.probe import SOLVER, options_ignored, solve_head

    ignored = options_ignored(AdaptConfig.from_dict(record["config_requested"]))
    if ignored:
        reporter.message(f"ignored, as the linear head is fitted to convergence rather than trained for epochs: "
                         f"{', '.join(ignored)}")
    if record["resumed"]:
        reporter.message("resuming: the linear head is fitted again on the cached features")
    trainer = Trainer(setup, resolved, accelerator=accelerator, optimizer=None, scheduler=None, loss_fn=loss_fn,
                      task=splits.task, label_names=splits.label_names, multi_label=splits.multi_label,
                      run_dir=run_dir, reporter=reporter)
    fit = solve_head(classifier, spec, heads, setup, loss_fn=loss_fn, label_names=splits.label_names,
                     multi_label=splits.multi_label, metric=trainer.metric, accelerator=accelerator,
                     reporter=reporter)
    record["head_fit"] = {**fit.to_record(), "ignored_options": ignored}
    pooled = f", {fit.pooling} pooling of {len(fit.poolings)}" if len(fit.poolings) > 1 else ""
    reporter.message(f"linear head: L2 {fit.l2:g}{pooled} chosen on validation {trainer.metric} "
                     f"({fit.iterations} L-BFGS iterations over {len(fit.grid)} strengths, {fit.seconds:.1f} s)")
    if not fit.native:
        reporter.message(f"the saved model pools by {fit.pooling}, which {spec.family}'s own head does not: it "
                         f"loads with zoo; {fit.load_note}")
    # One entry of history, so curves, cards and summaries read a solved head like a trained one.
    progress = Progress(epoch=1, best_epoch=0)
    progress.best_metric = fit.chosen.val
    progress.history.append({"epoch": 1, "train_loss": fit.chosen.train_loss, "lr": None,
                             "seconds": round(fit.seconds, 3), "samples_per_s": None,
                             "val": headline(trainer.evaluate(setup.val_data)), "best": True, "skipped_steps": 0,
                             "solver": SOLVER})
    return trainer, progress


def _evaluate_and_save(spec, classifier, splits, resolved, strategy, run_dir, record, accelerator, reporter,
                       started_wall, setup, trainer, progress) -> dict[str, Any]:
    from zoo.engine.metrics import compute_metrics
    from zoo.engine.setup import evaluation_data, finalize_model

    if accelerator.num_processes > 1:
        record["hardware"]["replicas_in_sync"] = _replicas_in_sync(setup.trainable, accelerator.device)
    val_targets, val_logits = trainer.predict(setup.val_data)   # kept for the card's "How it decides"
    best_metrics = compute_metrics(val_targets, val_logits, splits.label_names, multi_label=splits.multi_label)
    test_metrics = None
    if splits.test:
        test_data = evaluation_data(classifier, spec, splits, "test", resolved, device=accelerator.device,
                                    reporter=reporter)
        test_metrics = trainer.evaluate(test_data)
    finalize_model(classifier, strategy)

    if accelerator.is_main_process:
        classifier.model.to("cpu").eval()
        saved = classifier.save(run_dir)
        try:   # a model with NaN or infinite weights is never "finished"
            check_finite_weights(run_dir)
        except NonFiniteWeightsError:
            for path in saved:
                Path(path).unlink(missing_ok=True)
            raise
        files = [str(p.relative_to(run_dir)) for p in saved]
        # The saved model's validation logits, for what combines runs later (zoo ensemble); not published.
        record[VALIDATION_OUTPUTS] = write_validation_outputs(run_dir, logits=val_logits, targets=val_targets,
                                                               examples=splits.val, label_names=splits.label_names)
        record.update({
            "metrics": {"epochs": progress.history, "best": best_metrics, "test": test_metrics,
                        "selection_metric": trainer.metric, "stopped_early": progress.stopped_early,
                        "stopped_by": progress.stopped_by,
                        "skipped_steps": sum(epoch.get("skipped_steps", 0) for epoch in progress.history),
                        # out-of-memory back-off: examples per forward pass (None: whole batches) and halvings
                        "micro_batch": progress.micro_batch, "memory_back_offs": progress.memory_back_offs},
            "best_epoch": (progress.best_epoch + 1) if progress.best_epoch is not None else None,
            "wall_s": round(time.perf_counter() - started_wall, 2),   # this session's (a resumed run's last leg)
        })
        files += _how_it_decides(classifier, splits, resolved, record, run_dir, val_targets, val_logits,
                                 device=accelerator.device, reporter=reporter)
        files += write_plots(run_dir, record)
        files.append(write_model_card(run_dir, record))
        record["files"] = sorted(set(files))
        record["finished_at"] = datetime.now(UTC).isoformat()
        record["status"] = "finished"
        write_record(run_dir, record)
        # only once the run says finished: a kill before leaves a resumable run
        discard_checkpoints(run_dir)
        discard_candidates(run_dir)
        discard_teacher_outputs(run_dir)
    accelerator.wait_for_everyone()
    return record


def _how_it_decides(classifier, splits, config, record, run_dir, targets, logits, *, device,
                    reporter) -> list[str]:
    """The card's "How it decides" (:mod:`zoo.explain.decides`) into the record, as config.explain_card_plan
    says; returns the pictures written. A run is sound without it: a failure here leaves a note in the record and
    no pictures, and the run finishes."""
    import torch

    count, budget, rule = config.explain_card_plan(record["wall_s"])
    if not count:
        return []
    probabilities = torch.from_numpy(logits).float()
    probabilities = probabilities.sigmoid() if splits.multi_label else probabilities.softmax(-1)
    try:
        classifier.model.to(device)   # saved already: explaining on the run's device changes nothing on disk
        section, files = how_it_decides(classifier, splits.val, probabilities.numpy(), targets, count=count,
                                        budget_s=budget, rule=rule, run_dir=run_dir,
                                        confusion=record["metrics"]["best"].get("confusion"),
                                        max_seconds=config.max_seconds, say=reporter.message)
    except Exception as exc:   # whatever explaining raised, the model and its metrics stand
        discard_how_it_decides(run_dir)
        why = (f"{type(exc).__name__}: {exc}".splitlines() or [""])[0]
        record.setdefault("notes", []).append(f"how it decides: not written ({why})")
        reporter.message(record["notes"][-1])
        return []
    finally:
        classifier.model.to("cpu")
    record[HOW_IT_DECIDES] = section
    return files


def _record_failure(run_dir: Path, record: dict[str, Any], exc: BaseException,
                    on_record: Callable[[dict[str, Any]], None] | None) -> None:
    """Mark the run failed with its one-line reason, and drop half-written checkpoints and temporary files."""
    discard_partial_checkpoint(run_dir)
    record_failure(run_dir, record, exc, on_record)


def _model_bytes(classifier) -> int:
    return sum(p.numel() * p.element_size() for p in classifier.model.parameters())


def _replicas_in_sync(trainable: dict[str, Any], device) -> bool:
    """Whether every process ended with the same trained parameters (data parallel done right)."""
    import torch
    import torch.distributed as dist

    # On the accelerator's device: NCCL process groups refuse CPU tensors.
    checksum = torch.tensor([sum(float(p.detach().double().sum()) for p in trainable.values())],
                            dtype=torch.float64, device=device)
    gathered = [torch.zeros_like(checksum) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, checksum)
    return all(abs(float(g) - float(checksum)) <= 1e-6 * max(1.0, abs(float(checksum))) for g in gathered)
