"""`zoo tune`: a hyperparameter search on Optuna in which every trial is an ordinary adapt run.

The study lives in Optuna's own storage: an SQLite file in the output folder by default, or any storage URL, so
that several workers (processes on one machine, or machines that share the output folder and point at one
database) take trials from one study; nothing here schedules them. TPE proposes each trial (seeded by the seed and
the number of trials asked so far, so two workers never draw alike), the trial trains as `zoo adapt` would in
``OUTPUT/trial-NNN`` (claimed through :mod:`zoo.engine.rundir`), reports its validation metric after each epoch,
and is pruned through :meth:`zoo.engine.trainer.Reporter.should_stop`: the pruned run stops like an early-stopped
one, keeps its best epoch and finishes soundly.

A worker killed outright leaves its trial RUNNING in the study and its run folder unclaimed (the OS drops the lock
with the process). Every worker, before each new trial, looks for such trials under the output folder's lock: one
whose run finished is told its result; one whose run failed is told FAIL; any other is told FAIL and its parameters
enqueued again with the folder to resume, and the worker that draws it resumes the run from its checkpoint. The
study is done when its complete, pruned, running and failed trials (not counting the interrupted ones enqueued
again) reach ``--trials``; asking, recovering and counting happen under that lock, so workers never overshoot.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zoo import checks, jsonio
from zoo.engine.checkpoint import saved_progress
from zoo.engine.config import AdaptConfig, auto_candidates
from zoo.engine.run import AdaptRequest, run_training
from zoo.engine.rundir import STATE_DIR, claim_existing, claim_new, is_claimed
from zoo.engine.seeds import derive_seed
from zoo.engine.trainer import Reporter
from zoo.errors import InvalidInputError, NonFiniteWeightsError, TrainingDivergedError
from zoo.runs.record import RUN_RECORD, has_record, read_record
from zoo.tasks import get_task, lower_is_better

if TYPE_CHECKING:
    import optuna

    from zoo.data.base import DataSplits
    from zoo.store import RunStore

STRATEGIES = ("auto", "full", "lora")
PRUNERS = ("median", "asha", "none")
STUDY_FILE = "study.db"               # the default storage, inside the output folder
SUMMARY_FILE = "zoo_tune.json"        # the study's table, best run and importances, rewritten by each worker
LOCK_FILE = ".tune.lock"              # held while a worker recovers, counts and asks
TRIAL_DIR = "trial-{:03d}"
# A trial's run folder is named and claimed under the lock, right after the trial is asked; one that is RUNNING
# without a folder for longer than this belongs to a worker that died in between (or on a machine whose view of
# the shared folder lags).
LAUNCH_GRACE_S = 10.0
LOCK_TIMEOUT_S = 600.0
# PED-ANOVA ranks parameters by how the best tenth of the finished trials differ from all of them; below this
# many there is no best tenth to speak of.
MIN_IMPORTANCE_TRIALS = 4
# Trials TPE draws at random before it models the results: a third of the study, between 4 and 10 (Optuna's own
# default, 10, would leave a 16-trial study little to model).
MIN_STARTUP, MAX_STARTUP = 4, 10
PRUNED = "pruned"                     # how metrics.stopped_by starts when a trial was pruned
# A run that failed with one of these failed for its parameters (as `zoo adapt --resume` judges): not resumed.
DIVERGED = ("TrainingDivergedError", "NonFiniteWeightsError")

# The search space, around the defaults `zoo adapt` would use. The learning rate spans a decade below the default
# (the family's own for full and lora where it has one) to five times above it, on a log scale; epochs scale the
# data-size rule's plan (AdaptConfig.resolved), so small data still gets its many passes.
LR_FACTORS = (0.1, 5.0)
WEIGHT_DECAY = (0.0, 0.1)
WARMUP_RATIO = (0.0, 0.2)
EPOCH_SCALE = (0.5, 2.0, 0.25)        # low, high, step
LABEL_SMOOTHING = (0.0, 0.2)          # single-label tasks only
LAYER_DECAY = (0.6, 1.0)              # full only; 1.0 is no decay
LORA_R = (4, 8, 16, 32)
LORA_ALPHA = (8, 16, 32, 64)
# Options that are not hyperparameters of the study: given to api.tune by their own arguments.
NOT_FIXED = ("strategy", "seed")


# --- the search space -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Dimension:
    """One searched hyperparameter: an AdaptConfig field (or ``epochs_scale``) and the values it may take."""

    name: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[int, ...] | None = None

    def distribution(self) -> optuna.distributions.BaseDistribution:
        from optuna.distributions import CategoricalDistribution, FloatDistribution

        if self.choices is not None:
            return CategoricalDistribution(self.choices)
        return FloatDistribution(self.low, self.high, log=self.log, step=self.step)

    def describe(self) -> str:
        if self.choices is not None:
            return "one of " + ", ".join(map(str, self.choices))
        scale = "log scale" if self.log else (f"step {self.step:g}" if self.step else "uniform")
        return f"{self.low:.3g} to {self.high:.3g} ({scale})"


def search_space(strategy: str, *, default_lr: float, multi_label: bool,
                 fixed: Sequence[str] = ()) -> list[Dimension]:
    """The hyperparameters a study of ``strategy`` searches (``default_lr``: the run's default learning rate),
    less those in ``fixed`` (the options the person set; ``epochs`` fixes the epoch scale)."""
    space = [Dimension("lr", default_lr * LR_FACTORS[0], default_lr * LR_FACTORS[1], log=True),
             Dimension("weight_decay", *WEIGHT_DECAY),
             Dimension("warmup_ratio", *WARMUP_RATIO),
             Dimension("epochs_scale", EPOCH_SCALE[0], EPOCH_SCALE[1], step=EPOCH_SCALE[2])]
    if not multi_label:   # binary cross-entropy takes no label smoothing
        space.append(Dimension("label_smoothing", *LABEL_SMOOTHING))
    if strategy == "full":
        space.append(Dimension("layer_decay", *LAYER_DECAY))
    if strategy == "lora":
        space += [Dimension("lora_r", choices=LORA_R), Dimension("lora_alpha", choices=LORA_ALPHA)]
    held = set(fixed) | ({"epochs_scale"} if "epochs" in fixed else set())
    return [dimension for dimension in space if dimension.name not in held]


def trial_config(base: AdaptConfig, params: Mapping[str, Any], *, planned_epochs: int) -> AdaptConfig:
    """The configuration of a trial: ``base`` with the trial's parameters (its epoch scale times the planned
    epochs, at least one)."""
    values = {name: value for name, value in params.items() if name != "epochs_scale"}
    if "epochs_scale" in params:
        values["epochs"] = max(1, round(params["epochs_scale"] * planned_epochs))
    for name in ("lora_r", "lora_alpha"):
        if name in values:
            values[name] = int(values[name])
    return AdaptConfig(**{**asdict(base), **values})


def tuned_strategy(strategy: str, *, num_train: int, params_m: float, device_type: str) -> tuple[str, str]:
    """The fine-tuning strategy a study searches, and why: ``auto`` is the one `zoo adapt --strategy auto` would
    fine-tune with (lora when even auto would only probe)."""
    checks.choice("--strategy", strategy, STRATEGIES)
    if strategy != "auto":
        return strategy, "set with --strategy"
    plan, _ = auto_candidates(num_train, params_m, device_type)
    tuned = next((s for s in plan if s != "linear"), "lora")
    return tuned, f"auto: the fine-tuning `zoo adapt --strategy auto` would use ({params_m:g}M parameters)"


def check_fixed(fixed: Mapping[str, Any]) -> dict[str, Any]:
    """The options held fixed, checked: AdaptConfig fields other than the strategy and the seed, with valid values."""
    known = {f.name for f in fields(AdaptConfig)}
    for name in fixed:
        if name not in known or name in NOT_FIXED:
            raise InvalidInputError(f"fixed option {name!r} is not an adapt option zoo tune can hold fixed; give "
                                    f"{'--' + name if name in NOT_FIXED else 'one of the zoo adapt options'}")
    AdaptConfig(**fixed)   # each value checked as zoo adapt checks it
    return dict(fixed)


# --- storage ----------------------------------------------------------------------------------------------------


def storage_url(study: str | None, output: Path) -> str:
    """The Optuna storage URL of ``--study``: a URL as it is, a path as an SQLite file (default: in ``output``)."""
    if study is None:
        return f"sqlite:///{(output / STUDY_FILE).resolve()}"
    if "://" in study:
        return study
    return f"sqlite:///{Path(study).expanduser().resolve()}"


def shown_storage(url: str) -> str:
    """The storage as records, messages and the summary show it: an SQLite file as its path (which `zoo push` cuts
    to the file's name, as it does every local path), a URL without user, password or query (where credentials
    hide)."""
    if url.startswith("sqlite:///"):
        return url.removeprefix("sqlite:///")
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).set(username=None, password=None, query={}).render_as_string(hide_password=True)
    except Exception:   # not a URL sqlalchemy reads: its scheme alone says enough
        return url.split("://", 1)[0] + "://..."


def open_storage(url: str) -> optuna.storages.BaseStorage:
    """Optuna's storage at ``url`` (SQLite waits for a busy file instead of failing at once).

    Raises:
        InvalidInputError: naming --study, when the storage cannot be opened.
    """
    import optuna

    engine = {"connect_args": {"timeout": 60}} if url.startswith("sqlite:") else None
    try:
        with _quiet_optuna():
            return optuna.storages.RDBStorage(url, engine_kwargs=engine)
    except Exception as exc:   # whatever the driver raises: a bad scheme, a missing driver, a refused connection
        detail = (str(exc).splitlines() or [type(exc).__name__])[0]
        for secret in _credentials(url):
            detail = detail.replace(secret, "***")
        raise InvalidInputError(f"--study {shown_storage(url)}: cannot open this Optuna storage ({type(exc).__name__}: "
                                f"{detail[:200]}); give a file path, or a URL such as sqlite:///study.db or "
                                "postgresql://host/db") from None


def _credentials(url: str) -> list[str]:
    try:
        from sqlalchemy.engine import make_url

        parsed = make_url(url)
        return [s for s in (parsed.password, parsed.username, *map(str, parsed.query.values())) if s]
    except Exception:
        return []


@contextmanager
def _quiet_optuna() -> Iterator[None]:
    """Optuna's own log lines and warnings off meanwhile: `zoo tune` reports each trial itself."""
    import optuna

    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        optuna.logging.set_verbosity(level)


# --- the result -------------------------------------------------------------------------------------------------


@dataclass
class TrialRow:
    """One trial of the study, as the table shows it."""

    number: int
    state: str                        # complete, pruned, running, waiting, failed, or interrupted (enqueued again)
    value: float | None               # the run's best validation metric
    params: dict[str, Any]
    epochs_run: int | None = None
    pruned_at_epoch: int | None = None
    seconds: float | None = None
    run_dir: str | None = None        # absolute
    resumes_trial: int | None = None  # the interrupted trial whose run this one finished
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TuneResult:
    """What `zoo tune` made: the study's trials, its best run and the parameters' importances."""

    study: str
    storage: str                      # without credentials
    output: str
    backbone: str
    strategy: str
    strategy_reason: str
    metric: str
    direction: str                    # maximize or minimize
    pruner: str
    trials_wanted: int
    space: dict[str, str]             # each searched parameter and its range
    fixed: dict[str, Any]             # the options held fixed
    trials: list[TrialRow]
    counts: dict[str, int]
    best: TrialRow | None
    importances: dict[str, float] | None
    importance_note: str | None
    ran: list[int] = field(default_factory=list)        # trials this worker ran (or finished)
    recovered: list[int] = field(default_factory=list)  # interrupted trials this worker found and dealt with
    stopped: str = ""                                   # why this worker stopped
    wall_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        made = asdict(self)
        made["trials"] = [row.to_dict() for row in self.trials]
        made["best"] = self.best.to_dict() if self.best else None
        return made


# --- the worker -------------------------------------------------------------------------------------------------


@dataclass
class TuneSetup:
    """Everything a worker needs, made and checked by the caller (:func:`zoo.api.tune`)."""

    spec: Any
    family: Any
    request: AdaptRequest
    splits: DataSplits
    output: Path
    storage: str                      # the URL
    trials: int
    strategy: str
    pruner: str
    seed: int
    fixed: dict[str, Any]
    timeout_s: float | None = None
    device_type: str = "cpu"


class Tuner:
    """One worker of a study: recovers interrupted trials, asks for new ones and runs them until the study has its
    trials or the time is up."""

    def __init__(self, setup: TuneSetup, *, history: RunStore | None = None, reporter: Reporter | None = None,
                 say: Callable[[str], None] | None = None) -> None:
        import optuna

        self.setup, self.history = setup, history
        self.reporter = reporter or Reporter()
        self.say = say or (lambda text: None)
        spec, splits = setup.spec, setup.splits
        self.strategy, self.strategy_reason = tuned_strategy(setup.strategy, num_train=len(splits.train),
                                                             params_m=spec.params_m, device_type=setup.device_type)
        self.base = AdaptConfig(**{"explain_card": 0, **setup.fixed, "strategy": self.strategy, "seed": setup.seed})
        facts = {"num_train": len(splits.train), "family": spec.family,
                 "family_lr": dict(getattr(setup.family, "preferred_lr", None) or {})}
        planned = self.base.resolved(self.strategy, **facts)
        self.planned_epochs = planned.epochs
        self.space = search_space(self.strategy, default_lr=planned.lr, multi_label=splits.multi_label,
                                  fixed=list(setup.fixed))
        self.metric = self.base.metric or _main_metric(splits)
        self.direction = "minimize" if lower_is_better(self.metric) else "maximize"
        self.name = f"{spec.name}-{self.strategy}-{splits.fingerprint[:12]}"
        self.shown_storage = shown_storage(setup.storage)
        # Under the lock: workers starting together would otherwise race to create the tables and the study.
        with self._lock(), _quiet_optuna():
            self.study = optuna.create_study(storage=open_storage(setup.storage), study_name=self.name,
                                             direction=self.direction, pruner=_pruner(setup.pruner),
                                             load_if_exists=True)
            found = self.study.user_attrs.get("zoo")
            if found is None:
                self.study.set_user_attr("zoo", self.settings())
        self._check_settings(found)
        self.ran: list[int] = []
        self.recovered: list[int] = []

    # --- the study's settings: every worker of one study must search the same space ---

    def settings(self) -> dict[str, Any]:
        return jsonio.strict({"backbone": self.setup.spec.name, "strategy": self.strategy, "metric": self.metric,
                              "seed": self.setup.seed, "fixed": self.setup.fixed,
                              "space": {d.name: d.describe() for d in self.space}})

    def _check_settings(self, found: dict[str, Any] | None) -> None:
        if found is None:
            return
        wanted = self.settings()
        differ = sorted(key for key in wanted if found.get(key) != wanted[key])
        if differ:
            said = "; ".join(f"{key} {found.get(key)!r}, not {wanted[key]!r}" for key in differ)
            raise InvalidInputError(f"{self.shown_storage}: the study {self.name} there was started with other "
                                    f"options ({said}); give the same options to continue it, or another --output "
                                    "or --study")

    # --- the loop ---

    def run(self) -> TuneResult:
        started = time.monotonic()
        deadline = None if self.setup.timeout_s is None else started + self.setup.timeout_s
        stopped = ""
        while not stopped:
            with self._lock():
                self._recover()
                active = _tally(self.study.get_trials(deepcopy=False))["active"]
                if active >= self.setup.trials:
                    stopped = f"the study has its {self.setup.trials} trials"
                    break
                if deadline is not None and time.monotonic() >= deadline:
                    stopped = f"--timeout-s {self.setup.timeout_s:g} reached"
                    break
                trial, folder, claim, resume = self._ask()
                self.say(f"trial {trial.number} ({active + 1} of {self.setup.trials}) in {folder.name}"
                         f"{' (resuming trial ' + str(trial.user_attrs['resumes_trial']) + ')' if resume else ''}: "
                         f"{_params_text(trial.params)}")
            try:
                self._run_trial(trial, folder, resume)
            finally:
                claim.release()
        result = self.result(stopped=stopped, wall_s=time.monotonic() - started)
        with self._lock():
            _write_summary(self.setup.output / SUMMARY_FILE, result)
        return result

    def _ask(self):
        """A new trial (an interrupted one's parameters first), its run folder named and claimed."""
        import optuna

        asked = len(self.study.get_trials(deepcopy=False))
        startup = min(MAX_STARTUP, max(MIN_STARTUP, self.setup.trials // 3))
        # Seeded by the number of trials asked so far: reproducible for one worker, different for each ask.
        self.study.sampler = optuna.samplers.TPESampler(seed=derive_seed(self.setup.seed, asked) % 2**32,
                                                        n_startup_trials=startup, constant_liar=True)
        with _quiet_optuna():
            trial = self.study.ask({d.name: d.distribution() for d in self.space})
        name = trial.user_attrs.get("resume_run") or TRIAL_DIR.format(trial.number)
        folder = self.setup.output / name
        trial.set_user_attr("run_dir", name)
        try:
            if has_record(folder):
                claim, resume = claim_existing(folder), True
            else:   # new, or interrupted before its record was written: nothing to resume
                claim, resume = claim_new(folder, default=folder), False
        except Exception as exc:
            self._tell_failed(trial, exc)
            raise
        return trial, folder, claim, resume

    def _run_trial(self, trial, folder: Path, resume: bool) -> None:
        import optuna

        started = time.monotonic()
        params = dict(trial.params)
        tune = {"study": self.name, "storage": self.shown_storage, "trial": trial.number, "params": params}
        if "resumes_trial" in trial.user_attrs:
            tune["resumes_trial"] = trial.user_attrs["resumes_trial"]
        reporter = TrialReporter(trial, self.metric, self.setup.pruner, inner=self.reporter)
        request, config = self.setup.request, trial_config(self.base, params, planned_epochs=self.planned_epochs)
        if resume:   # as `zoo adapt --resume` does: the run's own request and configuration
            previous = read_record(folder).to_dict()
            request, config = AdaptRequest(**previous["request"]), AdaptConfig.from_dict(previous["config_requested"])
            progress = saved_progress(folder)
            reporter.replay(progress.history if progress else [])
        try:
            record = run_training(self.setup.spec, self.setup.family, self.setup.splits, config, folder, request,
                                  resume=resume, reporter=reporter, sections={"tune": tune},
                                  on_record=self.history.record_run if self.history else None)
        except (TrainingDivergedError, NonFiniteWeightsError) as exc:   # these parameters, not the setup
            self._tell_failed(trial, exc)
            self.say(f"trial {trial.number}: failed ({_one_line(exc)})")
            self.ran.append(trial.number)
            return
        except Exception as exc:
            self._tell_failed(trial, exc)
            raise
        if self.history is not None:
            record["store_id"] = self.history.record_run(record)
        pruned_at = _pruned_at(record)
        value = record["metrics"]["best"][self.metric]
        self._set_attrs(trial, epochs_run=len(record["metrics"]["epochs"]), pruned_at_epoch=pruned_at,
                        seconds=round(time.monotonic() - started, 2), run_value=value)
        with _quiet_optuna():
            if pruned_at is not None:
                self.study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            else:
                self.study.tell(trial, value)
        self.ran.append(trial.number)
        how = f"pruned at epoch {pruned_at}" if pruned_at is not None else "complete"
        self.say(f"trial {trial.number}: {how}, validation {self.metric} {value:.4f}, "
                 f"{len(record['metrics']['epochs'])} epoch(s), {time.monotonic() - started:.1f} s")

    def _tell_failed(self, trial, exc: BaseException) -> None:
        import optuna

        self._set_attrs(trial, error=_one_line(exc))
        with _quiet_optuna():
            self.study.tell(trial, state=optuna.trial.TrialState.FAIL)

    # --- recovery of interrupted trials ---

    def _recover(self) -> None:
        """Deal with every RUNNING trial whose run no live process holds (see the module's docstring)."""
        import optuna

        trials = self.study.get_trials(deepcopy=False)
        for trial in trials:
            if trial.state != optuna.trial.TrialState.RUNNING:
                continue
            name = trial.user_attrs.get("run_dir")
            folder = self.setup.output / name if name else None
            if folder is not None and is_claimed(folder):
                continue
            # Optuna keeps times as the local clock reads them
            age = (datetime.now(trial.datetime_start.tzinfo) - trial.datetime_start).total_seconds()
            young = age < LAUNCH_GRACE_S
            if folder is None or not folder.is_dir():
                if not young:
                    self._requeue(trial, None, trials)
                continue
            if has_record(folder):
                record = read_record(folder)
                if record.finished:
                    self._tell_from_record(trial, record.to_dict())
                    continue
                error = str(record.to_dict().get("error") or "")
                if record.status == "failed" and error.startswith(DIVERGED):   # these parameters: resuming repeats it
                    self._set_attrs(trial, error=error)
                    with _quiet_optuna():
                        self.study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
                    self.recovered.append(trial.number)
                    continue
            # Killed, or stopped by Ctrl-C (a run records that as failed): resumed from its checkpoint.
            self._requeue(trial, name, trials)

    def _requeue(self, trial, folder: str | None, trials) -> None:
        """Enqueue an interrupted trial's parameters again (naming the run folder to resume), then mark it FAIL.
        In that order: a kill in between leaves it RUNNING, and the next worker finds it enqueued already."""
        import optuna

        if not any(other.user_attrs.get("resumes_trial") == trial.number for other in trials):
            attrs = {"resumes_trial": trial.number, **({"resume_run": folder} if folder else {})}
            with _quiet_optuna():
                self.study.enqueue_trial(dict(trial.params), user_attrs=attrs)
        self._set_attrs(trial, error="interrupted: its worker stopped without finishing it")
        with _quiet_optuna():
            self.study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
        self.recovered.append(trial.number)
        self.say(f"trial {trial.number} was interrupted: enqueued again"
                 + (f" to resume {folder}" if folder else ""))

    def _tell_from_record(self, trial, record: dict[str, Any]) -> None:
        """A trial whose run finished before its worker could say so: told the run's result."""
        import optuna

        pruned_at = _pruned_at(record)
        self._set_attrs(trial, epochs_run=len(record["metrics"]["epochs"]), pruned_at_epoch=pruned_at,
                        run_value=record["metrics"]["best"][self.metric])
        with _quiet_optuna():
            if pruned_at is not None:
                self.study.tell(trial.number, state=optuna.trial.TrialState.PRUNED)
            else:
                self.study.tell(trial.number, record["metrics"]["best"][self.metric])
        if self.history is not None:
            self.history.record_run(record)
        self.recovered.append(trial.number)
        self.say(f"trial {trial.number}: its run had finished; told the study")

    # --- the result ---

    def result(self, *, stopped: str = "", wall_s: float = 0.0) -> TuneResult:
        trials = self.study.get_trials(deepcopy=False)
        requeued = {t.user_attrs["resumes_trial"] for t in trials if "resumes_trial" in t.user_attrs}
        rows = [self._row(t, interrupted=t.number in requeued) for t in trials]
        counts = _tally(trials)
        done = [r for r in rows if r.state == "complete" and r.value is not None] \
            or [r for r in rows if r.state == "pruned" and r.value is not None]
        sign = -1.0 if self.direction == "minimize" else 1.0
        best = max(done, key=lambda r: (sign * r.value, -r.number)) if done else None
        importances, note = param_importances(self.study, self.metric)
        return TuneResult(study=self.name, storage=self.shown_storage, output=str(self.setup.output.resolve()),
                          backbone=self.setup.spec.name, strategy=self.strategy,
                          strategy_reason=self.strategy_reason, metric=self.metric, direction=self.direction,
                          pruner=self.setup.pruner, trials_wanted=self.setup.trials,
                          space={d.name: d.describe() for d in self.space}, fixed=dict(self.setup.fixed),
                          trials=rows, counts={k: v for k, v in counts.items() if k != "active"}, best=best,
                          importances=importances, importance_note=note, ran=list(self.ran),
                          recovered=list(self.recovered), stopped=stopped, wall_s=round(wall_s, 2))

    def _row(self, trial, *, interrupted: bool) -> TrialRow:
        attrs = trial.user_attrs
        state = trial.state.name.lower()
        if state == "fail":
            state = "interrupted" if interrupted else "failed"
        seconds = attrs.get("seconds")
        if seconds is None and trial.datetime_complete is not None and trial.datetime_start is not None:
            seconds = round((trial.datetime_complete - trial.datetime_start).total_seconds(), 2)
        # The run's best validation value (a pruned trial's study value is its last epoch's, Optuna's rule).
        value = attrs.get("run_value", trial.value) if state in ("complete", "pruned") else None
        folder = attrs.get("run_dir")
        return TrialRow(number=trial.number, state=state, value=value, params=dict(trial.params),
                        epochs_run=attrs.get("epochs_run"), pruned_at_epoch=attrs.get("pruned_at_epoch"),
                        seconds=seconds, run_dir=str((self.setup.output / folder).resolve()) if folder else None,
                        resumes_trial=attrs.get("resumes_trial"), error=attrs.get("error"))

    def _set_attrs(self, trial, **attrs: Any) -> None:
        """User attributes on a RUNNING trial: this worker's own, or one found in the study (a frozen copy)."""
        import optuna

        target = trial if isinstance(trial, optuna.trial.Trial) else optuna.trial.Trial(self.study, trial._trial_id)
        for name, value in attrs.items():
            if value is not None:
                target.set_user_attr(name, value)

    @contextmanager
    def _lock(self) -> Iterator[None]:
        from filelock import FileLock, Timeout

        lock = FileLock(str(self.setup.output / LOCK_FILE), timeout=LOCK_TIMEOUT_S)
        try:
            lock.acquire()
        except Timeout:
            raise InvalidInputError(f"{self.setup.output}: another zoo tune worker has held {LOCK_FILE} for "
                                    f"{LOCK_TIMEOUT_S:g} s; check the workers of this study") from None
        try:
            yield
        finally:
            lock.release()


class TrialReporter(Reporter):
    """The engine's progress for one trial: passed on to ``inner`` (the command's bars), each epoch's validation
    metric reported to the trial, and the pruner asked whether to stop."""

    def __init__(self, trial, metric: str, pruner: str, *, inner: Reporter) -> None:
        self.trial, self.metric, self.pruner, self.inner = trial, metric, pruner, inner

    def replay(self, history: list[dict[str, Any]]) -> None:
        """A resumed trial's epochs before the interruption, reported so the pruner sees the whole curve."""
        for record in history:
            self._report(record)

    def _report(self, record: dict[str, Any]) -> None:
        value = (record.get("val") or {}).get(self.metric)
        if value is not None and math.isfinite(value):
            self.trial.report(float(value), step=int(record["epoch"]))

    def start(self, **kwargs: Any) -> None:
        self.inner.start(**kwargs)

    def step(self, **kwargs: Any) -> None:
        self.inner.step(**kwargs)

    def epoch_end(self, record: dict[str, Any]) -> None:
        self._report(record)
        self.inner.epoch_end(record)

    def message(self, text: str) -> None:
        self.inner.message(text)

    def stop(self) -> None:
        self.inner.stop()

    def should_stop(self, record: dict[str, Any]) -> str | None:
        if self.pruner == "none" or not self.trial.should_prune():
            return None
        value = (record.get("val") or {}).get(self.metric)
        return (f"{PRUNED} by the {self.pruner} pruner after epoch {record['epoch']} (validation {self.metric} "
                f"{value:.4g})" if value is not None else f"{PRUNED} by the {self.pruner} pruner")


# --- helpers ----------------------------------------------------------------------------------------------------


def param_importances(study: optuna.Study, metric: str) -> tuple[dict[str, float] | None, str]:
    """Optuna's parameter importances over the study's complete trials (PED-ANOVA, which needs no scikit-learn),
    and a note on how they were judged; None, with the reason, where there is nothing to rank."""
    import optuna

    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if len(complete) < MIN_IMPORTANCE_TRIALS:
        return None, (f"too few complete trials ({len(complete)}) to rank the parameters; PED-ANOVA needs at least "
                      f"{MIN_IMPORTANCE_TRIALS}")
    if not any(trial.distributions for trial in complete):
        return None, "nothing was searched: every option was held fixed"
    if len({trial.value for trial in complete}) == 1:
        return None, f"every complete trial scored the same {metric}: no parameter mattered more than another"
    with _quiet_optuna():
        ranked = optuna.importance.get_param_importances(study,
                                                         evaluator=optuna.importance.PedAnovaImportanceEvaluator())
    return ({name: float(value) for name, value in ranked.items()},
            f"PED-ANOVA over {len(complete)} complete trials: how the parameters of the best tenth differ from those "
            "of all")


def _pruner(name: str):
    import optuna

    checks.choice("--pruner", name, PRUNERS)
    if name == "median":
        return optuna.pruners.MedianPruner()
    if name == "asha":
        return optuna.pruners.SuccessiveHalvingPruner()
    return optuna.pruners.NopPruner()


def _main_metric(splits: DataSplits) -> str:
    return get_task(splits.task).main_metric(splits.multi_label)


def _tally(trials) -> dict[str, int]:
    """Trials by state; ``active``: those that count towards --trials (all but the interrupted, enqueued again,
    and the enqueued waiting to run)."""
    requeued = {t.user_attrs["resumes_trial"] for t in trials if "resumes_trial" in t.user_attrs}
    counts = {"complete": 0, "pruned": 0, "running": 0, "waiting": 0, "failed": 0, "interrupted": 0}
    for trial in trials:
        state = trial.state.name.lower()
        if state == "fail":
            state = "interrupted" if trial.number in requeued else "failed"
        counts[state] = counts.get(state, 0) + 1
    counts["active"] = counts["complete"] + counts["pruned"] + counts["running"] + counts["failed"]
    return counts


def _pruned_at(record: Mapping[str, Any]) -> int | None:
    metrics = record.get("metrics") or {}
    if str(metrics.get("stopped_by") or "").startswith(PRUNED):
        return len(metrics.get("epochs") or [])
    return None


def _params_text(params: Mapping[str, Any]) -> str:
    return ", ".join(f"{name} {value:.3g}" if isinstance(value, float) else f"{name} {value}"
                     for name, value in params.items()) or "no parameters searched"


def _one_line(exc: BaseException) -> str:
    return (f"{type(exc).__name__}: {exc}".splitlines() or [""])[0]


def _write_summary(path: Path, result: TuneResult) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(jsonio.dumps(result.to_dict(), indent=2))
    os.replace(tmp, path)


def prepare_output(output: Path) -> list[Path]:
    """Make the output folder (or check an existing one is a tune's); the folders created, outermost first.

    Raises:
        InvalidInputError: the path is a file, a run's folder, or holds other files.
    """
    if output.exists() and not output.is_dir():
        raise InvalidInputError(f"--output {output}: is a file, not a folder; choose a folder for the study")
    if output.is_dir():
        entries = {p.name for p in output.iterdir()}
        if RUN_RECORD in entries or STATE_DIR in entries:
            raise InvalidInputError(f"--output {output}: is a run's folder, not a study's; choose another --output")
        ours = {STUDY_FILE, SUMMARY_FILE, LOCK_FILE, SUMMARY_FILE + ".tmp"}
        others = sorted(name for name in entries if name not in ours and not name.startswith("trial-")
                        and not name.startswith(STUDY_FILE))
        if others:
            raise InvalidInputError(f"--output {output}: holds other files ({', '.join(others[:3])}"
                                    f"{', ...' if len(others) > 3 else ''}); choose a new folder, or an earlier "
                                    "zoo tune's to continue its study")
        return []
    missing = []
    probe = output
    while not probe.exists():
        missing.append(probe)
        probe = probe.parent
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InvalidInputError(f"--output {output}: cannot create this folder ({exc.strerror or exc})") from None
    return list(reversed(missing))


def remove_made(created: list[Path]) -> None:
    """Undo :func:`prepare_output` after a failed start: the folders it made, with what the start left in them (the
    lock, a study file), and nothing else."""
    for folder in reversed(created):
        for name in (LOCK_FILE, STUDY_FILE, STUDY_FILE + "-journal", STUDY_FILE + "-wal", STUDY_FILE + "-shm"):
            (folder / name).unlink(missing_ok=True)
        try:
            folder.rmdir()
        except OSError:
            pass


def device_type(device: str) -> str:
    """cpu or cuda: where the trials train, for the strategy `--strategy auto` resolves to."""
    if device == "cpu":
        return "cpu"
    import torch

    return "cuda" if device.startswith("cuda") or torch.cuda.is_available() else "cpu"
