"""The public Python API. Every CLI command is a thin wrapper over one function here.

>>> from zoo import api
>>> rec = api.recommend("text-cls", device="cpu", max_latency_ms=20)
>>> [c.name for c in rec.candidates]
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zoo import checks, loading
from zoo.bench import evaluate_on_data, load_target, measure
from zoo.better.ensembled import EXPLAIN_REFUSAL, is_ensemble_dir
from zoo.compare import flatten_config as flatten_config
from zoo.compare import main_metric as main_metric
from zoo.engine.config import AdaptConfig
from zoo.engine.launch import LaunchPlan, launch, recorded_plan
from zoo.engine.predict import predict_inputs
from zoo.engine.rundir import CLAIMED_ENV, claim_existing, claim_new, default_run_dir
from zoo.errors import InvalidInputError, NoCandidateError
from zoo.explain.attribute import check_method, check_steps, explain_inputs
from zoo.explain.render import shade as shade
from zoo.explain.render import text_pieces as text_pieces
from zoo.export.runtime import OnnxClassifier, is_export_dir, read_export_record
from zoo.hardware import check_device, launch_section
from zoo.hub.fetch import FetchReport, fetch_one, is_offline
from zoo.hub.fetch import download_bars as _download_bars  # `download_bars` is fetch's option
from zoo.hub.push import push_run
from zoo.plugins import PluginInfo, PluginManager, get_plugin_manager
from zoo.precision import PRECISIONS, resolve_precision
from zoo.recommend import Constraints, Recommendation, ScenarioParse, parse_scenario, recommend_data_free
from zoo.recommend.constraints import parse_size as parse_size
from zoo.recommend.prior import PRIOR_METRICS as PRIOR_METRICS
from zoo.recommend.prior import rank_candidates
from zoo.registry import CORE_REGISTRY, BackboneSpec, Registry, read_registry_file, user_registry_files
from zoo.runs.card import write_model_card
from zoo.runs.record import RUN_RECORD, has_record, read_finished_record, read_record, write_record
from zoo.secrets import resolve_token
from zoo.serve.kserve import CONFIGS, ServingConfig, kserve_manifest
from zoo.serve.model import BACKENDS, load_served, resolve_target
from zoo.serve.options import ServeOptions, encode_for_workers
from zoo.serve.server import run as run_server
from zoo.store import RunStore
from zoo.tasks import get_task

if TYPE_CHECKING:
    from zoo.better.tune import TuneResult
    from zoo.compare import Comparison, RunDetail
    from zoo.engine.predict import Prediction
    from zoo.explain.attribute import Explanation
    from zoo.export.export import ExportResult
    from zoo.hub.fetch import FetchReport
    from zoo.hub.push import PushResult
    from zoo.recommend.transfer import DataRecommendation
    from zoo.runs.record import RunRecord
    from zoo.store import RunListing, RunStore

# Imported as `name as name`: parse_size, PRIOR_METRICS, flatten_config and main_metric are part of this API as
# they are, for the CLI's option parsing and rendering (zoo.cli imports only zoo.api).

PathLike = str | os.PathLike[str]


def load_registry(registry_files: Iterable[PathLike] = (), *,
                  plugins: PluginManager | None = None) -> Registry:
    """The merged registry: core ``registry.toml``, plugin contributions, then user files.

    User files are ``ZOO_REGISTRY`` (``os.pathsep``-separated), ``~/.config/zoo/registry.toml`` and
    ``registry_files``; a later entry with the same name replaces an earlier one, with a notice (a UserWarning).
    A plugin only adds names: one it contributes that is already taken is refused and reported by ``zoo plugins``.

    Raises:
        zoo.errors.RegistryError: naming the file, entry and field of the first problem in a user file.
    """
    plugins = plugins or get_plugin_manager()
    registry = Registry(read_registry_file(CORE_REGISTRY))
    registry.add(plugins.read_contributions(known=registry))
    for path in user_registry_files(registry_files):
        registry.add(read_registry_file(path, schemes=plugins.source_schemes))
    return registry


def list_backbones(*, task: str | None = None, family: str | None = None, pattern: str | None = None,
                   registry_files: Iterable[PathLike] = ()) -> list[BackboneSpec]:
    """Registry entries matching every filter (``pattern`` is a shell wildcard over names; without wildcard
    characters, a part of the name)."""
    if task is not None:
        get_task(task)
    return load_registry(registry_files).query(task=task, family=family, pattern=pattern)


@dataclass
class BackboneInfo:
    spec: BackboneSpec
    family_available: bool
    family_library: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {**self.spec.to_dict(), "family_available": self.family_available,
                "family_library": self.family_library}


def backbone_info(name: str, *, registry_files: Iterable[PathLike] = ()) -> BackboneInfo:
    """Everything the registry knows about one backbone, and whether its family is loaded.

    Raises:
        zoo.errors.UnknownBackboneError: suggesting the closest names.
    """
    plugins = get_plugin_manager()
    spec = load_registry(registry_files, plugins=plugins).get(name)
    family = plugins.families.get(spec.family)
    return BackboneInfo(spec, family is not None, getattr(family, "library", "") if family else "")


def plugin_report(*, registry_files: Iterable[PathLike] = ()) -> list[PluginInfo]:
    """Every discovered plugin with its version, families, backbones and errors.

    A plugin's backbones are the registry entries whose family it provides, plus those it contributes.
    """
    plugins = get_plugin_manager()
    registry = load_registry(registry_files, plugins=plugins)
    for info in plugins.infos.values():
        served = [spec.name for spec in registry if spec.family in info.families]
        info.backbones = sorted(set(info.backbones) | set(served))
    return list(plugins.infos.values())


def recommend(task: str | None = None, *, device: str | None = None, max_latency_ms: float | None = None,
              max_params_m: float | None = None, max_memory_gb: float | None = None,
              language: str | None = None, licenses: Sequence[str] = (), num_examples: int | None = None,
              scenario: str | None = None, top: int = 5,
              registry_files: Iterable[PathLike] = ()) -> Recommendation:
    """Recommend backbones for a task under hard constraints, ranked by what is known without data.

    A free-text ``scenario`` is parsed into the same constraints; explicit arguments win over the parse, and the
    parse is returned so it can be shown and corrected. :func:`recommend_with_data` also ranks on your data.

    Raises:
        zoo.errors.InvalidInputError: if no task is given or found in the scenario, or an argument is invalid.
        zoo.errors.NoCandidateError: if the registry has no backbone for the task. When backbones exist but none
            meets every constraint, the result has no candidates, a ``message`` and the ``nearest`` misses.
    """
    constraints, parsed = _constraints(task, device=device, max_latency_ms=max_latency_ms,
                                       max_params_m=max_params_m, max_memory_gb=max_memory_gb, language=language,
                                       licenses=licenses, num_examples=num_examples, scenario=scenario)
    checks.whole("--top", top, low=1, allow_none=False)
    plugins = get_plugin_manager()
    registry_files = list(registry_files)
    registry = load_registry(registry_files, plugins=plugins)
    return recommend_data_free(registry, constraints, top=top, scenario=parsed, available_families=plugins.families,
                               registry_files=registry_files)


def recommend_with_data(task: str | None = None, *, data: str, device: str | None = None,
                        max_latency_ms: float | None = None, max_params_m: float | None = None,
                        max_memory_gb: float | None = None, language: str | None = None,
                        licenses: Sequence[str] = (), num_examples: int | None = None, scenario: str | None = None,
                        registry_files: Iterable[PathLike] = (), sample: int = 1000, shortlist: int = 5,
                        candidates: Sequence[str] = (), budget_s: float = 600.0, layers: str = "mean",
                        bootstrap: int = 30, seed: int = 0, halving: bool = True, progress=None,
                        message=None) -> DataRecommendation:
    """Recommend backbones as :func:`recommend` does, then score the ``shortlist`` best data-free candidates (or
    the named ``candidates``) on a stratified ``sample`` of ``data`` by transferability estimators and re-rank them
    (:mod:`zoo.recommend.transfer`); with ``halving``, more than five candidates are narrowed by successive halving
    over the sample size. The result holds the data-free recommendation it started from.

    Raises:
        zoo.errors.InvalidInputError: as :func:`recommend`, or a data option is invalid.
        zoo.errors.NoCandidateError: no backbone for the task, or none meets every constraint (nothing to score;
            the message names the closest miss).
    """
    from zoo.recommend import transfer

    constraints, parsed = _constraints(task, device=device, max_latency_ms=max_latency_ms,
                                       max_params_m=max_params_m, max_memory_gb=max_memory_gb, language=language,
                                       licenses=licenses, num_examples=num_examples, scenario=scenario)
    checks.text("--data", data, allow_none=False)
    checks.whole("--sample", sample, low=10, allow_none=False)
    checks.choice("--layers", layers, ("last", "mean"))
    checks.whole("--shortlist", shortlist, low=1, allow_none=False)
    checks.number("--budget-s", budget_s, low=0, allow_none=False)   # 0: cached features only
    checks.whole("--bootstrap", bootstrap, low=0, allow_none=False)
    checks.seed("--seed", seed)
    if shortlist < 2 and not candidates:
        raise InvalidInputError(f"--shortlist must be at least 2 to rank anything, got {shortlist}")
    plugins = get_plugin_manager()
    registry_files = list(registry_files)
    registry = load_registry(registry_files, plugins=plugins)
    # Every candidate that meets the constraints: one that cannot be loaded gives its place to the next.
    data_free = recommend_data_free(registry, constraints, top=len(registry), scenario=parsed,
                                    available_families=plugins.families, registry_files=registry_files)
    if candidates:
        data_free = _only(data_free, candidates, registry)
    if not data_free.candidates:
        raise NoCandidateError(data_free.message)
    specs = {c.name: registry.get(c.name) for c in data_free.candidates}
    return transfer.recommend_with_data(data_free, specs, plugins.families, data=data, task=constraints.task,
                                        sample_size=sample, shortlist=0 if candidates else shortlist,
                                        budget_s=budget_s, layers=layers, bootstrap=bootstrap, seed=seed,
                                        halving=halving, progress=progress, message=message)


def _constraints(task: str | None, *, scenario: str | None, licenses: Sequence[str],
                 **explicit: Any) -> tuple[Constraints, ScenarioParse | None]:
    """The hard constraints: the explicit arguments, and what the free-text ``scenario`` says where they are None."""
    parsed: ScenarioParse | None = parse_scenario(scenario) if scenario else None
    explicit = {"task": task, **explicit, "licenses": tuple(licenses) or None}
    values = {key: value if value is not None else (parsed.values.get(key) if parsed else None)
              for key, value in explicit.items()}
    if values["task"] is None:
        raise InvalidInputError("no task given: pass --task image-cls|text-cls|audio-cls, or describe the data "
                                "in --scenario")
    get_task(values["task"])
    constraints = Constraints(task=values["task"], device=values["device"] or "cpu",
                              max_latency_ms=values["max_latency_ms"], max_params_m=values["max_params_m"],
                              max_memory_gb=values["max_memory_gb"], language=values["language"],
                              licenses=values["licenses"] or (), num_examples=values["num_examples"])
    return constraints, parsed


def _only(data_free: Recommendation, names: Sequence[str], registry: Registry) -> Recommendation:
    """The data-free recommendation narrowed to ``names``, ranked among themselves."""
    from dataclasses import replace

    ranked = {c.name: c for c in data_free.candidates}
    excluded = {e["name"]: e["reason"] for e in data_free.excluded}
    for name in names:
        spec = registry.get(name)          # unknown names get the did-you-mean error
        if spec.name not in ranked:
            why = excluded.get(spec.name) or f"not a {data_free.task} backbone"
            raise InvalidInputError(f"--candidates: {spec.name} does not meet the constraints ({why})")
    chosen = {registry.get(n).name for n in names}
    return replace(data_free, candidates=rank_candidates(ranked[n] for n in chosen))


def load_classifier(name: str, *, task: str, labels: Sequence[str], multi_label: bool = False,
                    pretrained: bool = True, trust_remote_code: bool = False,
                    registry_files: Iterable[PathLike] = ()):
    """Load a registry backbone with a fresh classification head for ``labels``, through its family.

    Raises:
        zoo.errors.UnknownBackboneError, zoo.errors.FamilyUnavailableError, zoo.errors.ModelLoadError.
    """
    plugins = get_plugin_manager()
    spec = load_registry(registry_files, plugins=plugins).get(name)
    family = plugins.family(spec.family, backbone=spec.name)
    return loading.load_classifier(spec, family, task=task, labels=labels, multi_label=multi_label,
                                   pretrained=pretrained, trust_remote_code=trust_remote_code).classifier


def load_saved_classifier(directory: PathLike):
    """Load a classifier saved in a family's native format, asking each loaded family whether it is theirs."""
    return loading.load_saved(directory, get_plugin_manager().families)


# --- adapt, resume, predict -------------------------------------------------------------------------------------


def adapt(backbone: str, data: str, *, task: str | None = None, output: PathLike | None = None,
          val: str | None = None, test: str | None = None, input_col: str | None = None,
          label_col: str | None = None, label_sep: str = "|", multi_label: bool | None = None,
          val_fraction: float = 0.1, skip_bad: bool = False, device: str = "auto", config=None,
          registry_files: Iterable[PathLike] = (), reporter=None, store: bool = True,
          processes: int = 1, nodes: int = 1, node_rank: int | None = None, master_addr: str | None = None,
          master_port: int | None = None) -> dict[str, Any]:
    """Fine-tune ``backbone`` on ``data`` and write a run directory; returns the run record (zoo_run.json).

    Every option is checked, and the run directory claimed (one run per folder, :mod:`zoo.engine.rundir`),
    before anything else; the data is read and checked, and the backbone loaded, before the run record is
    written, so bad input leaves nothing behind. The run history records the run when it starts and when it
    ends. ``processes > 1`` trains data-parallel in that many local processes (gloo on CPUs), through torchrun.
    ``nodes > 1`` trains on that many machines, ``processes`` on each: every machine makes the same call with
    ``output`` on a file system they share, the data at the same path, ``master_addr`` (and ``master_port``) of
    the ``node_rank`` 0 machine and its own ``node_rank``; node 0 claims the run directory and writes the history,
    and every node returns the record rank 0 wrote. Under a launcher of its own (`accelerate launch -m zoo adapt
    ...`), each rank trains in place, with ``output`` given.

    Raises:
        zoo.errors.InvalidInputError: bad data, options or output folder (one line naming the file and problem).
        zoo.errors.RunDirectoryBusyError: another run holds the output folder.
        zoo.errors.UnknownBackboneError, zoo.errors.ModelLoadError.
    """
    from zoo.engine.run import SPLIT_SEED, AdaptRequest, run_training

    checks.text("BACKBONE", backbone, allow_none=False)
    checks.text("--data", data, allow_none=False)
    for option, value in (("--val", val), ("--test", test), ("--output", None if output is None else str(output)),
                          ("--input-col", input_col), ("--label-col", label_col), ("--label-sep", label_sep)):
        checks.text(option, value)
    checks.number("--val-fraction", val_fraction, low=0, high=1, high_open=True, allow_none=False)
    plan = LaunchPlan.checked(processes=processes, nodes=nodes, node_rank=node_rank, master_addr=master_addr,
                              master_port=master_port)
    # One GPU per process: a particular one is chosen with CUDA_VISIBLE_DEVICES, as accelerate expects.
    device = check_device("--device", device, allow_index=False)
    config = config or AdaptConfig()
    if not isinstance(config, AdaptConfig):
        raise InvalidInputError(f"config must be an AdaptConfig, not {type(config).__name__}")

    registry_files = [str(p) for p in registry_files]
    spec, task, family = _trained_backbone(backbone, task, registry_files)
    _check_image_size(config, spec, task, family)
    rank = int(os.environ.get("RANK", "0"))   # set by torchrun / accelerate launch in each process
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and plan.world > 1:
        raise InvalidInputError(f"{'--nodes' if plan.nodes > 1 else '--processes'}: this command already runs "
                                "under a launcher that started its processes; leave the option out")
    if world > 1 and output is None:
        raise InvalidInputError("several processes train one run: give the run directory with --output, so "
                                "every process writes to the same one")
    if plan.nodes > 1 and output is None:
        raise InvalidInputError(f"--nodes {plan.nodes}: give the run directory with --output, on a file system "
                                "every machine shares")
    history = _open_store() if store and rank == 0 and plan.writes else None
    request = AdaptRequest(backbone=spec.name, task=task, data=data, val=val, test=test, input_col=input_col,
                           label_col=label_col, label_sep=label_sep, multi_label=multi_label,
                           val_fraction=val_fraction, skip_bad=skip_bad, device=device,
                           registry_files=registry_files, split_seed=SPLIT_SEED)
    claim = _claim(output, spec.name, data, rank=rank) if plan.writes else None   # node 0 claims for all
    run_dir = claim.run_dir if claim is not None else Path(output)
    try:
        splits = request.read_data(seed=config.seed)
        _check_trainable(splits, config, data)
        if plan.world > 1:
            record = launch(plan, spec, request, config, run_dir, history=history)
        else:
            record = run_training(spec, family, splits, config, run_dir, request, reporter=reporter,
                                  on_record=history.record_run if history else None)
        if history is not None:
            record["store_id"] = history.record_run(record)
        return record
    finally:
        if claim is not None:
            claim.release()


def _trained_backbone(name: str, task: str | None, registry_files: list[str], *, who: str = "backbone",
                      way_on: str = ""):
    """The registry entry ``name`` (its spec and family) and the task it is trained for: ``task``, or its only
    one; refused in one line when it serves several and none was named, or not ``task``. ``who`` names the entry
    in that line (``--student``), ``way_on`` ends it."""
    plugins = get_plugin_manager()
    spec = load_registry(registry_files, plugins=plugins).get(name)
    if task is None:
        if len(spec.tasks) != 1:
            raise InvalidInputError(f"{spec.name} serves {', '.join(spec.tasks)}: say which with --task")
        task = spec.tasks[0]
    elif task not in spec.tasks:
        get_task(task)
        named = f"backbone {spec.name!r}" if who == "backbone" else f"{who} {spec.name}"
        raise InvalidInputError(f"{named} is registered for {', '.join(spec.tasks)}, not {task}{way_on}")
    return spec, task, plugins.family(spec.family, backbone=spec.name)


def _claim(output: PathLike | None, backbone: str, data: str, *, rank: int):
    """The run directory's claim, taken by the process that writes it (rank 0 of a launch it did not start)."""
    if rank != 0 or os.environ.get(CLAIMED_ENV):
        return None
    return claim_new(output, default=default_run_dir(backbone, data))


def _open_store():
    """The run history, opened now: a history that cannot be used is an error before training, not after."""
    history = RunStore()
    history.check()
    return history


def resume(run_dir: PathLike, *, reporter=None, store: bool = True, processes: int | None = None,
           nodes: int | None = None, node_rank: int | None = None, master_addr: str | None = None,
           master_port: int | None = None) -> dict[str, Any]:
    """Continue an interrupted `adapt` from its last checkpoint and finish it.

    The backbone comes from the run record's snapshot of its registry entry, so the registry files the run was
    started with are not needed. A run trained in several processes resumes in as many, as the record's "launch"
    section says (each batch is shared out among them, so another count would not continue the same run):
    ``processes`` and ``nodes`` may repeat those counts, not change them; a run on several machines is resumed by
    the same call on each, with ``node_rank``, ``master_addr`` and ``master_port`` as for :func:`adapt`.

    A distilled run (`zoo distill`) is then compared with the student alone and timed against its teacher, as
    :func:`distill` does; a distilled run that finished training but not that comparison is resumed for it.

    Raises:
        zoo.errors.InvalidInputError: not a run directory, already finished, its data changed since, or other
            counts of processes or machines than it trained with.
        zoo.errors.RunDirectoryBusyError: another process is running it.
    """
    from zoo.better import distill as distillation
    from zoo.engine.run import AdaptRequest, run_training

    checks.text("--resume", str(run_dir), allow_none=False)
    run_dir = Path(run_dir)
    plan = _resume_plan(run_dir, processes=processes, nodes=nodes, node_rank=node_rank, master_addr=master_addr,
                        master_port=master_port)
    writes = plan.writes and int(os.environ.get("RANK", "0")) == 0
    history = _open_store() if store and writes else None
    with _claim_to_resume(run_dir, writes=writes):
        earlier = read_record(run_dir)
        previous = earlier.to_dict()
        distilled = (previous.get("request") or {}).get("teacher") is not None
        if earlier.finished and not (distilled and not distillation.compared(previous)):
            raise InvalidInputError(f"{run_dir}: this run already finished; nothing to resume")
        if str(previous.get("error", "")).startswith(("TrainingDivergedError", "NonFiniteWeightsError")):
            raise InvalidInputError(f"{run_dir}: this run diverged ({previous['error'].split(': ', 1)[-1]}); "
                                    "resuming would repeat it: start a new run with other options")
        request = AdaptRequest(**previous["request"])
        config = AdaptConfig.from_dict(previous["config_requested"])
        spec = BackboneSpec.from_dict(previous["backbone"], origin=f"{run_dir / RUN_RECORD} (backbone)")
        plugins = get_plugin_manager()
        splits = request.read_data(seed=config.seed)
        if splits.fingerprint != previous["data"]["fingerprint"]:
            raise InvalidInputError(f"{request.data}: the data changed since the run started (fingerprint "
                                    f"{previous['data']['fingerprint'][:12]} -> {splits.fingerprint[:12]}); "
                                    "start a new run")
        family = plugins.family(spec.family, backbone=spec.name)
        if earlier.finished:   # a distilled run that finished training but was not yet compared
            record = previous
        else:
            if plan.world > 1:
                record = launch(plan, spec, request, config, run_dir, history=history, resume=True)
            else:
                record = run_training(spec, family, splits, config, run_dir, request, resume=True,
                                      reporter=reporter, on_record=history.record_run if history else None)
            if history is not None:
                record["store_id"] = history.record_run(record)
        if distilled and writes:   # the student alone, the gap closed and the speed-up, as zoo distill does them
            record = distillation.complete(run_dir, record, spec=spec, family=family, splits=splits,
                                           history=history, reporter=reporter)
        return record


def _resume_plan(run_dir: Path, *, processes: int | None, nodes: int | None, node_rank: int | None,
                 master_addr: str | None, master_port: int | None) -> LaunchPlan:
    """The processes and machines a resumed run starts: those its record says it trained in (checked against
    ``processes`` and ``nodes`` when given), placed by the other options; in place under a launcher."""
    checks.whole("--processes", processes)
    checks.whole("--nodes", nodes)
    if not has_record(run_dir):
        raise InvalidInputError(f"{run_dir}: not a zoo run directory (no {RUN_RECORD})" + (
            "; the run directory must be on a file system every machine shares" if node_rank else ""))
    trained = recorded_plan(read_record(run_dir).to_dict())
    outer = launch_section()   # ranks another launcher started: this one trains in place
    if outer is not None:
        if processes is not None or nodes is not None:
            raise InvalidInputError(f"{'--nodes' if nodes is not None else '--processes'}: this command already "
                                    "runs under a launcher that started its processes; leave the option out")
        if outer["processes"] * outer["nodes"] != trained.world:
            raise InvalidInputError(f"{run_dir}: this run trained in {trained.world} processes, not "
                                    f"{outer['processes'] * outer['nodes']}: start as many to resume it")
        return LaunchPlan()
    per_node = " on each machine" if trained.nodes > 1 else ""
    for option, given, counted in (
            ("--processes", processes, f"{trained.processes} process{'es' if trained.processes > 1 else ''}{per_node}"),
            ("--nodes", nodes, f"{trained.nodes} machine{'s' if trained.nodes > 1 else ''}")):
        recorded = trained.processes if option == "--processes" else trained.nodes
        if given is not None and given != recorded:
            raise InvalidInputError(f"{option} {given}: this run trained in {counted}; it resumes with the same "
                                    f"count (leave {option} out), so that it continues exactly")
    return LaunchPlan.checked(processes=trained.processes, nodes=trained.nodes, node_rank=node_rank,
                              master_addr=master_addr, master_port=master_port)


def _claim_to_resume(run_dir: Path, *, writes: bool):
    """The run directory's claim for a resume, taken by the process that writes it (node 0's command, or rank 0
    of a launcher's ranks); the others hold nothing."""
    if writes and not os.environ.get(CLAIMED_ENV):
        return claim_existing(run_dir)
    return contextlib.nullcontext()


def _check_image_size(config, spec, task: str, family) -> None:
    """`--image-size` only for image tasks, and only with a family that can build its backbone for it."""
    if config.image_size is None:
        return
    if get_task(task).input_kind != "image":
        raise InvalidInputError(f"--image-size applies to image tasks; {spec.name} is a {task} backbone: leave the "
                                "option out")
    if not family.takes_image_size:
        raise InvalidInputError(f"--image-size: the {spec.family} family cannot build {spec.name} for another "
                                "input size; leave the option out")


def _check_trainable(splits, config, data: str) -> None:
    """What the data read cannot tell, checked before the run directory exists."""
    if not splits.val:
        raise InvalidInputError(f"{data}: no validation examples; give --val, or a --val-fraction above 0")
    if config.metric is not None:
        allowed = get_task(splits.task).reported_metrics(splits.multi_label)
        if config.metric not in allowed:
            raise InvalidInputError(f"--metric {config.metric!r} is not reported for this data; choose one of "
                                    f"{', '.join(allowed)}")


def predict(run_dir: PathLike, inputs: Sequence[Any], *, top_k: int = 5, batch_size: int = 32,
            explain: bool = False, explain_method: str | None = None,
            progress: Callable[[int, int], None] | None = None) -> list[Prediction]:
    """Classify ``inputs`` (image or audio paths, or texts) with a finished run's saved model, or with an export
    folder's ONNX model (run by onnxruntime).

    Each input gets the scores it gets alone, whatever ``batch_size`` and whatever else is in its batch. For a
    text run, an input naming an existing ``.txt`` file stands for its non-empty lines
    (:meth:`zoo.tasks.Task.expand_inputs`).

    With ``explain``, each prediction also says why its top label (:attr:`Prediction.explanation`, and
    :meth:`Prediction.because`, the words, regions or seconds that pushed most towards it), by ``explain_method``
    (``ig``, the default, with its steps chosen as :func:`explain`'s ``auto``; ``occlusion``; ``shap``).
    ``progress(done, total)`` is called after each input explained.

    Raises:
        zoo.errors.InvalidInputError: an unfinished run, an unreadable input (named), ``explain_method`` without
            ``explain``, ``explain`` with an export folder.
    """
    checks.whole("--top-k", top_k, low=1, allow_none=False)
    checks.whole("--batch-size", batch_size, low=1, allow_none=False)
    if explain_method is not None and not explain:
        raise InvalidInputError("--explain-method is for --explain: add --explain, or leave the method out")
    method = check_method(explain_method or "ig", option="--explain-method")
    if not inputs:
        raise InvalidInputError("give at least one INPUT to classify")
    exported = is_export_dir(run_dir)
    if exported and explain:
        raise InvalidInputError(f"{run_dir}: --explain needs the run's PyTorch model, and an export folder (ONNX) "
                                "has no gradients; give the run it was exported from")
    record = read_export_record(run_dir) if exported else read_finished_record(Path(run_dir)).to_dict()
    if explain and is_ensemble_dir(run_dir):
        raise InvalidInputError(f"{run_dir}: --explain: {EXPLAIN_REFUSAL}")
    inputs = get_task(record["task"]).expand_inputs(inputs)
    if not inputs:   # only empty .txt files
        raise InvalidInputError("give at least one INPUT to classify")
    if exported:
        classifier = OnnxClassifier(run_dir, families=get_plugin_manager().families)
        return predict_inputs(classifier, inputs, top_k=top_k, batch_size=batch_size,
                              max_seconds=record.get("max_seconds", 10.0))
    classifier = load_saved_classifier(run_dir)
    config = record.get("config", {})
    max_seconds = config.get("max_seconds", 10.0)
    predictions = predict_inputs(classifier, inputs, top_k=top_k, batch_size=batch_size, max_seconds=max_seconds,
                                 precision=record.get("precision_used") or config.get("precision", "fp32"))
    if explain:
        for done, (prediction, value) in enumerate(zip(predictions, inputs, strict=True), start=1):
            # The label shown first is the one explained, whatever a multi-label model predicts besides.
            prediction.explanation = explain_inputs(classifier, [value], method=method,
                                                    target=prediction.labels[0]["label"],
                                                    max_seconds=max_seconds)[0]
            if progress is not None:
                progress(done, len(predictions))
    return predictions


def explain(run_dir: PathLike, inputs: Sequence[Any], *, method: str = "ig", target: str | None = "pred",
            steps: int | str = "auto", batch_size: int = 16, max_evals: int = 256, output: PathLike | None = None,
            write: bool = True, device: str = "cpu", progress=None) -> list[Explanation]:
    """Explain a finished run's predictions on ``inputs`` (image or audio paths, texts; a text run's ``.txt``
    files stand for their lines): which words, image regions or seconds pushed the model to each label it predicts
    (``target="pred"``), or to the label named.

    ``method`` is ``ig`` (integrated gradients; ``steps`` a number, or ``auto``: 4, 8, 16, 32, 64 in turn,
    a rung skipped when the sum is off by more than the change, until the completeness error is under 5%),
    ``occlusion`` or ``shap`` (the partition explainer, ``max_evals`` forward passes at most). ``batch_size``
    examples go through the model at once (halved when memory runs out).
    With ``write``, each explanation is drawn into ``output`` (default ``RUN/explanations``): an HTML page for
    text, a PNG for images and audio.

    Raises:
        zoo.errors.InvalidInputError: an unfinished run, an export folder, a bad option, an unreadable input.
    """
    check_method(method)
    steps = check_steps(steps)
    checks.whole("--batch", batch_size, low=1, allow_none=False)
    checks.whole("--max-evals", max_evals, low=2, allow_none=False)
    device = check_device("--device", device, allow_auto=False)
    if not inputs:
        raise InvalidInputError("give at least one INPUT to explain")
    if is_export_dir(run_dir):
        raise InvalidInputError(f"{run_dir}: an export folder holds no gradients; explain the run it was exported "
                                "from")
    record = read_finished_record(Path(run_dir)).to_dict()
    if is_ensemble_dir(run_dir):
        raise InvalidInputError(f"{run_dir}: {EXPLAIN_REFUSAL}")
    inputs = get_task(record["task"]).expand_inputs(inputs)
    if not inputs:
        raise InvalidInputError("give at least one INPUT to explain")
    classifier = load_saved_classifier(run_dir)
    classifier.model.to(device)
    folder = Path(output) if output is not None else Path(run_dir) / "explanations"
    return explain_inputs(classifier, inputs, method=method, target=target, steps=steps, batch_size=batch_size,
                          max_evals=max_evals, max_seconds=record.get("config", {}).get("max_seconds", 10.0),
                          output=folder if write else None, progress=progress)


# --- bench ------------------------------------------------------------------------------------------------------


def bench(target: str, *, device: str = "cpu", precision: str = "fp32", batch_sizes: Sequence[int] = (1, 8, 32),
          image_size: int | None = None, seq_len: int = 128, seconds: float = 1.0, warmup: int = 10,
          iters: int = 50, min_seconds: float = 1.0, rounds: int = 5, data: str | None = None,
          weights: str = "pretrained", task: str | None = None, family: str | None = None,
          registry_files: Iterable[PathLike] = (), store: bool = True):
    """Measure latency, throughput, memory, FLOPs (and with ``data``, accuracy) of one model on this machine.

    ``target`` is a run directory, a registry name, a folder holding a saved model, or a Hub id / ``local-dir:``
    path with ``family`` (and ``task``) given. A folder must be written as a path (``./NAME``, ``/abs/NAME`` or
    with a separator inside), so that a folder in the working directory never stands in for the registry entry of
    the same name. ``weights="random"`` times a registry backbone without downloading its weights. Results of a run
    directory are added to its zoo_run.json and model card.

    The timed calls are shared out over ``rounds`` rounds that take turns at every batch size: the result's
    ``spread`` gives each figure's median, lowest and highest over them, and its ``warnings`` say when the machine
    was busy (load average, other processes' CPU use, CPU steal) or the rounds disagree.

    Raises:
        zoo.errors.InvalidInputError, zoo.errors.UnknownBackboneError, zoo.errors.ModelLoadError.
    """
    checks.text("TARGET", target, allow_none=False)
    checks.choice("--weights", weights, ("pretrained", "random"))
    checks.choice("--precision", precision, PRECISIONS)
    device = check_device("--device", device, allow_auto=False)
    precision = resolve_precision(precision, device)   # what the result reports: never auto
    if not batch_sizes:
        raise InvalidInputError("--batch-sizes: give at least one batch size")
    for size in batch_sizes:
        checks.whole("--batch-sizes", size, low=1, allow_none=False)
    checks.whole("--image-size", image_size, low=1)
    checks.whole("--seq-len", seq_len, low=1, allow_none=False)
    checks.number("--seconds", seconds, low=0, low_open=True, allow_none=False)
    checks.whole("--warmup", warmup, low=0, allow_none=False)
    checks.whole("--iters", iters, low=1, allow_none=False)
    checks.number("--min-seconds", min_seconds, low=0, allow_none=False)
    checks.whole("--rounds", rounds, low=1, allow_none=False)
    checks.text("--data", data)
    plugins = get_plugin_manager()
    loaded = load_target(target, plugins=plugins, registry=lambda: load_registry(registry_files, plugins=plugins),
                         task=task, family=family, weights=weights, data=data, device=device)
    classifier, run_record = loaded.classifier, loaded.run_record
    if loaded.weights == "exported" and precision != "fp32":
        raise InvalidInputError(f"--precision {precision}: an ONNX export runs in the precision it was exported in "
                                f"({classifier.record.get('precision')}); leave --precision out")
    # Accuracy first: timing changes the text length the classifier cuts to (--seq-len).
    accuracy = None
    if data is not None:
        max_seconds = (run_record or {}).get("config", {}).get("max_seconds", 10.0)
        accuracy = evaluate_on_data(classifier, data, device=device, precision=precision, max_seconds=max_seconds)
    result = measure(classifier, target=target, backbone=loaded.backbone, family=loaded.family,
                     weights=loaded.weights, device=device,
                     precision=precision, batch_sizes=tuple(batch_sizes), image_size=image_size, seq_len=seq_len,
                     seconds=seconds, warmup=warmup, iters=iters, min_seconds=min_seconds, rounds=rounds)
    result.accuracy = accuracy
    result.size_mb = loaded.size_mb
    if loaded.weights == "exported":
        result.precision = classifier.record.get("precision", "fp32")
    if run_record is not None:
        result.run_dir = str(Path(target).resolve())
        run_record.setdefault("bench", []).append(result.to_dict())
        write_record(Path(target), run_record)
        write_model_card(Path(target), run_record)
    if store:
        RunStore().record_bench(result.to_dict())
    return result


# --- better models: tune, soup, ensemble, distill ---------------------------------------------------------------


def tune(backbone: str, data: str, *, task: str | None = None, output: PathLike | None = None,
         val: str | None = None, test: str | None = None, input_col: str | None = None,
         label_col: str | None = None, label_sep: str = "|", multi_label: bool | None = None,
         val_fraction: float = 0.1, skip_bad: bool = False, device: str = "auto", trials: int = 16,
         strategy: str = "auto", pruner: str = "median", study: str | None = None, timeout_s: float | None = None,
         seed: int = 0, fixed: Mapping[str, Any] | None = None, registry_files: Iterable[PathLike] = (),
         reporter=None, progress: Callable[[str], None] | None = None, store: bool = True) -> TuneResult:
    """Search ``backbone``'s fine-tuning hyperparameters on ``data`` with Optuna (TPE, pruning per epoch), every
    trial an ordinary adapt run in ``OUTPUT/trial-NNN`` (:mod:`zoo.better.tune`).

    ``strategy`` is full or lora (auto: the fine-tuning `zoo adapt --strategy auto` would use); ``fixed`` holds
    AdaptConfig fields the person set (``{"epochs": 3}``), which are left out of the search. The study lives in
    ``study`` (an Optuna storage URL, or an SQLite file path; default ``OUTPUT/study.db``): several workers with the
    same options and output share it, and running the same call again continues it (an interrupted trial is
    resumed from its checkpoint) until it has ``trials`` trials. ``timeout_s`` stops starting new trials after that
    many seconds. ``output`` defaults to ``runs/<data>-<backbone>-tune``.

    Raises:
        zoo.errors.InvalidInputError: bad options, data, output folder or storage (one line naming which), or a
            study of that name started with other options.
        zoo.errors.UnknownBackboneError, zoo.errors.ModelLoadError.
    """
    from zoo.better import tune as tuning
    from zoo.engine.run import SPLIT_SEED, AdaptRequest

    checks.text("BACKBONE", backbone, allow_none=False)
    checks.text("--data", data, allow_none=False)
    for option, value in (("--val", val), ("--test", test), ("--output", None if output is None else str(output)),
                          ("--input-col", input_col), ("--label-col", label_col), ("--label-sep", label_sep),
                          ("--study", study)):
        checks.text(option, value)
    checks.number("--val-fraction", val_fraction, low=0, high=1, high_open=True, allow_none=False)
    checks.whole("--trials", trials, low=1, high=10_000, allow_none=False)
    checks.number("--timeout-s", timeout_s, low=0, low_open=True)
    checks.seed("--seed", seed)
    checks.choice("--pruner", pruner, tuning.PRUNERS)
    if strategy == "linear":
        raise InvalidInputError("--strategy linear has nothing to tune: its head is solved to convergence, with its "
                                "L2 strength chosen on validation already; tune full or lora")
    checks.choice("--strategy", strategy, tuning.STRATEGIES)
    fixed = tuning.check_fixed(fixed or {})
    device = check_device("--device", device, allow_index=False)
    if study is not None and "://" in study:   # a bad URL is refused before anything is read or made
        tuning.open_storage(study)

    registry_files = [str(p) for p in registry_files]
    spec, task, family = _trained_backbone(backbone, task, registry_files)
    config = AdaptConfig(**fixed, seed=seed)
    _check_image_size(config, spec, task, family)
    request = AdaptRequest(backbone=spec.name, task=task, data=data, val=val, test=test, input_col=input_col,
                           label_col=label_col, label_sep=label_sep, multi_label=multi_label,
                           val_fraction=val_fraction, skip_bad=skip_bad, device=device,
                           registry_files=registry_files, split_seed=SPLIT_SEED)
    splits = request.read_data(seed=seed)
    _check_trainable(splits, config, data)
    history = _open_store() if store else None
    output = Path(output) if output is not None else default_run_dir(spec.name, data).with_name(
        default_run_dir(spec.name, data).name + "-tune")
    created = tuning.prepare_output(output)
    setup = tuning.TuneSetup(spec=spec, family=family, request=request, splits=splits, output=output,
                             storage=tuning.storage_url(study, output), trials=trials, strategy=strategy,
                             pruner=pruner, seed=seed, fixed=fixed, timeout_s=timeout_s,
                             device_type=tuning.device_type(device))
    try:
        tuner = tuning.Tuner(setup, history=history, reporter=reporter, say=progress)
    except BaseException:
        tuning.remove_made(created)
        raise
    return tuner.run()


def distill(teacher: PathLike, student: str, data: str, *, temperature: float = 5.0, alpha: float = 0.9,
            baseline: PathLike = "train", config: AdaptConfig | None = None, output: PathLike | None = None,
            store: bool = True, task: str | None = None, val: str | None = None, test: str | None = None,
            input_col: str | None = None, label_col: str | None = None, label_sep: str = "|",
            multi_label: bool | None = None, val_fraction: float = 0.1, skip_bad: bool = False,
            device: str = "auto", registry_files: Iterable[PathLike] = (), reporter=None,
            bench_min_seconds: float = 1.0) -> dict[str, Any]:
    """Distil the finished run (or ensemble) ``teacher`` into the backbone ``student`` on ``data``; returns the
    student's run record (:mod:`zoo.better.distill`).

    The student is an adapt run (``config``: adapt's options; auto fine-tunes, and linear is refused, since its
    closed-form head takes no soft targets) whose loss is ``alpha * T^2 * KL(teacher/T || student/T) + (1 - alpha)
    * the hard-label loss`` at temperature ``temperature``, with the teacher's logits computed once. ``baseline``
    is the student alone it is compared with: ``train`` (the same recipe without the teacher, trained in the folder
    beside it, ``RUN-alone``), ``none``, or a finished run of the same backbone and data. The record's ``distill``
    section holds the teacher, the gap closed and the speed-up measured as `zoo bench` does (each timing at least
    ``bench_min_seconds``); the model card states them.

    Raises:
        zoo.errors.InvalidInputError: bad options or data; a teacher that is unfinished or of another task, labels
            or multi-label setting; a baseline of another backbone or data (one line naming the option).
        zoo.errors.RunDirectoryBusyError: another run holds the output folder.
        zoo.errors.UnknownBackboneError, zoo.errors.ModelLoadError.
    """
    from zoo.better import distill as distillation
    from zoo.engine.run import SPLIT_SEED, AdaptRequest
    from zoo.engine.teacher import finished_teacher, read_teacher

    checks.text("--teacher", None if teacher is None else str(teacher), allow_none=False)
    checks.text("--student", student, allow_none=False)
    checks.text("--data", data, allow_none=False)
    checks.text("--baseline", None if baseline is None else str(baseline), allow_none=False)
    for option, value in (("--val", val), ("--test", test), ("--output", None if output is None else str(output)),
                          ("--input-col", input_col), ("--label-col", label_col), ("--label-sep", label_sep)):
        checks.text(option, value)
    checks.number("--val-fraction", val_fraction, low=0, high=1, high_open=True, allow_none=False)
    checks.number("--bench-min-seconds", bench_min_seconds, low=0, allow_none=False)
    device = check_device("--device", device, allow_index=False)
    config = config or AdaptConfig()
    if not isinstance(config, AdaptConfig):
        raise InvalidInputError(f"config must be an AdaptConfig, not {type(config).__name__}")
    checks.number("--temperature", temperature, low=0, low_open=True, allow_none=False)
    checks.number("--alpha", alpha, low=0, high=1, allow_none=False)
    config = dataclasses.replace(config, distill_temperature=float(temperature), distill_alpha=float(alpha))
    teacher_dir = Path(teacher)
    teacher_task = finished_teacher(teacher_dir).get("task")   # the rest is checked against the data, once read
    baseline = distillation.check_baseline(str(baseline))

    registry_files = [str(p) for p in registry_files]
    spec, task, family = _trained_backbone(student, task or teacher_task, registry_files, who="--student",
                                           way_on="; give a student backbone of that task")
    _check_image_size(config, spec, task, family)
    history = _open_store() if store else None
    request = AdaptRequest(backbone=spec.name, task=task, data=data, val=val, test=test, input_col=input_col,
                           label_col=label_col, label_sep=label_sep, multi_label=multi_label,
                           val_fraction=val_fraction, skip_bad=skip_bad, device=device,
                           registry_files=registry_files, teacher=str(teacher_dir.resolve()), baseline=baseline,
                           split_seed=SPLIT_SEED)
    default = default_run_dir(spec.name, data)
    claim = claim_new(output, default=default.with_name(default.name + distillation.DEFAULT_SUFFIX))
    try:
        if baseline == "train":
            distillation.check_alone_free(claim.run_dir)
        splits = request.read_data(seed=config.seed)
        _check_trainable(splits, config, data)
        read_teacher(teacher_dir, splits)
        if baseline not in distillation.BASELINES:
            distillation.check_baseline_run(baseline, backbone=spec.name, splits=splits)
        return distillation.distill(spec, family, splits, config, claim.run_dir, request, history=history,
                                    reporter=reporter, bench_min_seconds=bench_min_seconds)
    finally:
        claim.release()


def ensemble(runs: Sequence[PathLike], *, method: str = "caruana", size: int = 25, val: str | None = None,
             output: PathLike | None = None, store: bool = True, device: str = "auto",
             progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Combine finished runs of one task (backbones and families may differ; task, labels and multi-label must
    not) into an ensemble, a run of its own that predict, bench, serve and push accept; returns its record.

    ``method`` is ``caruana`` (Caruana's ensemble selection with replacement over ``size`` steps, at most
    :data:`~zoo.better.ensemble.MAX_SIZE`, on the validation outputs the runs stored; the best prefix kept, so it
    never scores below its best member on validation) or ``mean`` (equal weights). With ``val``, every member is
    scored once on that labelled data and the weights are chosen on it (:mod:`zoo.better.ensemble`). The folder
    (default ``runs/<data>-ensemble``) holds each chosen member's saved model; the ensemble is scored on the test
    split its members share, if any. The record's ``ensemble.warnings`` says when validation is too small to
    choose among so many members.

    Raises:
        zoo.errors.InvalidInputError: fewer than two runs, an unfinished one, runs that differ in task, labels or
            multi-label, stored outputs of different examples without ``val``, a bad option or output folder.
    """
    from zoo.better.ensemble import MAX_SIZE, METHODS, build_ensemble

    runs = [str(run) for run in runs]
    for run in runs:
        checks.text("RUN", run, allow_none=False)
    checks.choice("--method", method, METHODS)
    checks.whole("--size", size, low=1, high=MAX_SIZE, allow_none=False)
    checks.text("--val", val)
    checks.text("--output", None if output is None else str(output))
    device = check_device("--device", device, allow_index=False)
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    history = _open_store() if store else None
    record = build_ensemble(runs, families=get_plugin_manager().families, method=method, size=size, val=val,
                            output=output, device=device, say=progress)
    if history is not None:
        record["store_id"] = history.record_run(record)
    return record


def soup(runs: Sequence[PathLike], *, method: str = "greedy", val: str | None = None,
         output: PathLike | None = None, device: str = "auto", precision: str = "auto", store: bool = True,
         progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Average the weights of finished runs of one backbone into a new run (a model soup), chosen on held-out data;
    returns the soup's run record (zoo_run.json).

    ``method``: ``greedy`` ranks the runs by their held-out main metric, starts from the best and adds the next
    only if the soup's held-out score does not drop (so it never scores below its best ingredient); ``uniform``
    averages them all. Held-out data is ``val`` (labelled data: its validation split, else all of it) or, without it,
    the runs' own validation split, allowed only when every run was validated on the same examples. The soup is
    written to ``output`` (default ``runs/<data>-<backbone>-soup``) as an ordinary run that predict, bench, serve,
    export and push take, and recorded in the run history unless ``store=False`` (:mod:`zoo.better.soup`).

    Raises:
        zoo.errors.InvalidInputError: fewer than two runs, an unfinished run, an ensemble, runs of different
            backbones, commits, tasks, labels or architectures, validation splits that differ without ``val``, a
            bad option or output folder (one line naming the run or option).
    """
    from zoo.better.soup import soup_runs

    runs = [runs] if isinstance(runs, (str, os.PathLike)) else list(runs)   # one path is one run, not its letters
    history = _open_store() if store else None
    record = soup_runs(runs, families=get_plugin_manager().families, method=method, val=val, output=output,
                       device=device, precision=precision, progress=progress,
                       on_record=history.record_run if history else None)
    if history is not None:
        record["store_id"] = history.record_run(record)
    return record


# --- export -----------------------------------------------------------------------------------------------------


def export(run_dir: PathLike, *, output: PathLike | None = None, format: str = "onnx", opset: int = 18,
           quantize: str = "none", calib: int = 100, check: str | None = None,
           progress: Callable[[str], None] | None = None) -> ExportResult:
    """Export the finished run in ``run_dir`` to an ONNX model that onnxruntime runs without zoo or torch, with the
    preprocessing files and labels beside it (:func:`zoo.export.export.export_run`).

    ``quantize``: none (fp32), dynamic or static int8 (ONNX Runtime's quantizers; static calibrates on ``calib``
    training examples), or auto (the family's choice). Parity with the run's model is checked on ``check`` data
    (default: the run's validation split): fp32 logits within 1e-4 of the logit scale, int8 by agreement >= 99% and
    macro-F1 within one point. The folder (default ``RUN/onnx``, or ``RUN/onnx-int8``) is written only when the
    gate passes; the run record lists it.

    Raises:
        zoo.errors.InvalidInputError: bad options, an unfinished run, an output that is not an export folder.
        zoo.errors.ExportError: the export failed, or failed its parity gate (with the figures).
    """
    from zoo.export.export import FORMATS, QUANTIZE_CHOICES, export_run

    checks.text("RUN", str(run_dir), allow_none=False)
    checks.choice("--format", format, FORMATS)
    checks.choice("--quantize", quantize, QUANTIZE_CHOICES)
    checks.whole("--opset", opset, low=14, high=_max_opset(), allow_none=False)
    checks.whole("--calib", calib, low=1, allow_none=False)
    checks.text("--check", check)
    checks.text("-o", None if output is None else str(output))
    run_dir = Path(run_dir)
    result = export_run(run_dir, families=get_plugin_manager().families, output=None if output is None else
                        Path(output), opset=opset, quantization=quantize, calib=calib, check=check, progress=progress)
    record = read_record(run_dir).to_dict()
    entry = {"dir": _relative_to(result.directory, run_dir), "precision": result.record["precision"],
             "quantization": result.record["quantization"].get("method"),
             "parity": result.record["parity"], "created_at": result.record["created_at"]}
    # The run lists its exports (those still on disk), and its card shows how to run them.
    kept = [e for e in record.get("exports", []) if e.get("dir") != entry["dir"] and is_export_dir(run_dir / e["dir"])]
    record["exports"] = [*kept, entry]
    write_record(run_dir, record)
    write_model_card(run_dir, record)
    return result


def _max_opset() -> int:
    import onnx.defs

    return onnx.defs.onnx_opset_version()


# --- serve ------------------------------------------------------------------------------------------------------


def serving_app(target: PathLike, *, backend: str = "auto", max_batch: int = 32, max_wait_ms: float = 5.0,
                top_k: int = 5, max_body_mb: float = 32.0, name: str | None = None):
    """The ASGI app (FastAPI) that `zoo serve` runs, for embedding in another server or testing in-process: the
    model of ``target`` (a finished run, or an export folder) loaded, with ``POST /predict``, ``POST /explain``
    (a run only), the Open Inference Protocol v2 routes and ``GET /metrics``, requests batched dynamically
    (:mod:`zoo.serve`). Its lifespan starts and drains the batcher.

    Raises:
        zoo.errors.InvalidInputError: bad options, a target that is not a finished run or an export folder, or
            ``backend="onnx"`` for a run with no ONNX export.
    """
    resolved, options = _serve_target(target, backend=backend, max_batch=max_batch, max_wait_ms=max_wait_ms,
                                      top_k=top_k, max_body_mb=max_body_mb, name=name)
    from zoo.serve.app import create_app

    return create_app(load_served(resolved, families=get_plugin_manager().families), options)


def serve(target: PathLike, *, host: str = "127.0.0.1", port: int = 8000, backend: str = "auto",
          max_batch: int = 32, max_wait_ms: float = 5.0, top_k: int = 5, workers: int = 1,
          max_body_mb: float = 32.0, name: str | None = None,
          on_ready: Callable[[str], None] | None = None) -> None:
    """Serve ``target`` over HTTP with uvicorn until SIGTERM or Ctrl-C (see :func:`serving_app`); blocks.

    ``on_ready`` is called with the URL bound (``port=0`` picks a free port). ``workers`` > 1 runs that many
    processes on one socket, each loading the model. On SIGTERM, in-flight requests finish and queued items are
    scored before the process returns.

    Raises:
        zoo.errors.InvalidInputError: as :func:`serving_app`, and a bad host, port or number of workers.
    """
    checks.text("--host", host, allow_none=False)
    checks.whole("--port", port, low=0, high=65535, allow_none=False)
    checks.whole("--workers", workers, low=1, high=64, allow_none=False)
    resolved, options = _serve_target(target, backend=backend, max_batch=max_batch, max_wait_ms=max_wait_ms,
                                      top_k=top_k, max_body_mb=max_body_mb, name=name)
    from zoo.serve.app import create_app

    app = None if workers > 1 else create_app(load_served(resolved, families=get_plugin_manager().families),
                                              options)
    run_server(app, host=host, port=port, workers=workers, worker_options=encode_for_workers(resolved, options),
        on_ready=on_ready)


def serving_config(target: PathLike, *, kind: str = "kserve", backend: str = "auto", max_batch: int = 32,
                   max_wait_ms: float = 5.0, top_k: int = 5, workers: int = 1,
                   name: str | None = None) -> ServingConfig:
    """The deployment manifest of ``kind`` (kserve: a ServingRuntime running `zoo serve` with the Open Inference
    Protocol v2, and the InferenceService using it) for ``target``: the objects, and their YAML text. Loads no
    model.

    Raises:
        zoo.errors.InvalidInputError: as :func:`serving_app`, and an unknown ``kind``.
    """
    checks.choice("--print-config", kind, CONFIGS)
    checks.whole("--workers", workers, low=1, high=64, allow_none=False)
    resolved, options = _serve_target(target, backend=backend, max_batch=max_batch, max_wait_ms=max_wait_ms,
                                      top_k=top_k, max_body_mb=32.0, name=name)
    return kserve_manifest(resolved.name, backend=resolved.backend, max_batch=options.max_batch,
                           max_wait_ms=options.max_wait_ms, top_k=options.top_k, workers=workers)


def _serve_target(target: PathLike, *, backend: str, max_batch: int, max_wait_ms: float, top_k: int,
                  max_body_mb: float, name: str | None):
    """The options checked, then the target resolved (records read, no model loaded)."""
    checks.text("TARGET", None if target is None else str(target), allow_none=False)
    checks.choice("--backend", backend, BACKENDS)
    checks.whole("--max-batch", max_batch, low=1, high=1024, allow_none=False)
    checks.number("--max-wait-ms", max_wait_ms, low=0, high=10_000, allow_none=False)
    checks.whole("--top-k", top_k, low=1, allow_none=False)
    checks.number("--max-body-mb", max_body_mb, low=0, low_open=True, high=4096, allow_none=False)
    checks.text("--name", name)
    if name is not None and ("/" in name or name.strip() != name):
        raise InvalidInputError(f"--name must be one path segment without spaces around it, got {name!r}")
    resolved = resolve_target(target, backend)
    if name is not None:
        resolved = dataclasses.replace(resolved, name=name)
    return resolved, ServeOptions(max_batch=max_batch, max_wait_ms=float(max_wait_ms), top_k=top_k,
                                  max_body_mb=float(max_body_mb))


def _relative_to(path: Path, base: Path) -> str:
    """``path`` relative to ``base`` when inside it (how the run record names its exports), else absolute."""
    try:
        return str(path.resolve().relative_to(base.resolve()))
    except ValueError:
        return str(path.resolve())


# --- hub, run history -------------------------------------------------------------------------------------------


# --- push, fetch, run records and history -----------------------------------------------------------------------


def push(run_dir: PathLike, repo_id: str, *, private: bool | None = None, branch: str = "main",
         commit_message: str | None = None, token: str | None = None, store: bool = True,
         progress: Callable[[str], None] | None = None) -> PushResult:
    """Publish the finished run in ``run_dir`` to the model repo ``repo_id`` and check what arrived
    (:func:`zoo.hub.push.push_run`).

    Raises:
        zoo.errors.InvalidInputError: not a run directory, an unfinished run, a malformed repo id or token.
        zoo.errors.HubError: no token, a refusal by the Hub, a broken connection, or files that did not arrive
            intact.
    """
    return push_run(run_dir, repo_id, private=private, branch=branch, commit_message=commit_message, token=token,
                    store=store, progress=progress)


def fetch(names: Sequence[str] = (), *, task: str | None = None, top: int = 3,
          registry_files: Iterable[PathLike] = (), token: str | None = None, store: bool = True,
          progress: Callable[[str], None] | None = None, download_bars: bool = True) -> FetchReport:
    """Download backbones by name, or the ``top`` data-free recommendations for ``task``, ahead of time, so later
    work runs with ``HF_HUB_OFFLINE=1`` (:func:`zoo.hub.fetch.fetch_one` each). Successful downloads are recorded
    in the run history (unless ``store=False``).

    A backbone that fails does not stop the others: the report holds every result, and
    :meth:`~zoo.hub.fetch.FetchReport.raise_for_failures` turns the failures into one error. ``token`` defaults to
    ``HF_TOKEN`` or the stored login (:func:`zoo.secrets.resolve_token`). ``download_bars=False`` hides
    huggingface_hub's per-file bars meanwhile (``progress`` still hears of each backbone).

    Raises:
        zoo.errors.InvalidInputError: neither names nor a task, offline mode is on, or a malformed token.
        zoo.errors.UnknownBackboneError: a name not in the registry.
    """
    if is_offline():
        raise InvalidInputError("zoo fetch downloads from the Hub, but HF_HUB_OFFLINE=1 is set; unset it to fetch")
    if not names and task is None:
        raise InvalidInputError("name one or more backbones, or give --task (with --top N) to fetch the top "
                                "recommendations")
    if top < 1:
        raise InvalidInputError("--top must be at least 1")
    if top != 3 and task is None:
        raise InvalidInputError("--top picks among the recommendations for --task; give --task too")
    token = resolve_token(token)   # before anything downloads: a bad token stops the whole fetch
    registry = load_registry(registry_files)
    specs = [registry.get(name) for name in names]
    if task is not None:
        recommendation = recommend(task, top=top, registry_files=registry_files)
        specs += [registry.get(c.name) for c in recommendation.candidates if c.name not in names]
    say = progress or (lambda message: None)
    results = []
    with _download_bars(download_bars):
        for index, spec in enumerate(specs, start=1):
            say(f"[{index}/{len(specs)}] {spec.name} from {spec.source}")
            results.append(fetch_one(spec, token=token))
    if store:
        history = RunStore()
        for result in results:
            if result.status == "fetched":
                history.record_fetch(result.to_dict())
    return FetchReport(results)


def list_runs(*, task: str | None = None, backbone: str | None = None, status: str | None = None,
              study: str | None = None, limit: int = 50, store: PathLike | None = None) -> RunListing:
    """Recorded adapt runs, newest first (``backbone`` a name or a wildcard; ``study`` the trials of one `zoo tune`
    study; ``limit`` 0 for all), from the run history ``store`` (default: ``ZOO_STORE``, else the user cache).

    Raises:
        zoo.errors.InvalidInputError: an unknown task or status, a negative limit.
        zoo.errors.StoreError: the history cannot be read.
    """
    return RunStore(store).listing(task=task, backbone=backbone, status=status, study=study, limit=limit)


def run_details(run_id: int, *, store: PathLike | None = None) -> RunDetail:
    """One recorded run: its facts, best and test metrics, metrics per epoch, configuration and pushes.

    Raises:
        zoo.errors.UnknownRunError: no run with that id. zoo.errors.StoreError: the history cannot be read.
    """
    return RunStore(store).detail(run_id)


def compare_runs(run_ids: Sequence[int], *, store: PathLike | None = None) -> Comparison:
    """Two or more recorded runs side by side: metrics (best of each marked), facts and configuration differences.

    Raises:
        zoo.errors.InvalidInputError: fewer than two distinct ids. zoo.errors.UnknownRunError: an id not recorded.
    """
    return RunStore(store).compare(list(run_ids))



def run_record(run_dir: PathLike) -> RunRecord:
    """The record (zoo_run.json) of the run in ``run_dir``, whatever its status.

    Raises:
        zoo.errors.InvalidInputError: not a run directory, or an unreadable record.
    """
    return read_record(Path(run_dir))


def run_history(path: PathLike | None = None) -> RunStore:
    """The run history (``zoo runs``): every adapt, bench, push and fetch recorded, in ``path`` or the default
    database (``ZOO_STORE``, else the user cache)."""
    return RunStore(path)
