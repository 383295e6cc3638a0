"""Every exception zoo raises on purpose.

Each inherits :class:`ZooError` and the built-in it resembles, carries the attributes a caller needs, and has a
message that says what to do. The CLI renders any ``ZooError`` as one line and a non-zero exit code.
"""

from __future__ import annotations

from difflib import get_close_matches
from pathlib import Path


class ZooError(Exception):
    """Base class of every error zoo raises on purpose."""

    exit_code: int = 1


# --- Registry ---------------------------------------------------------------------------------------------------


class RegistryError(ZooError, ValueError):
    """A registry file is unreadable or an entry breaks the schema."""

    def __init__(self, message: str, *, path: str | None = None, entry: str | None = None,
                 field: str | None = None) -> None:
        self.path, self.entry, self.field = path, entry, field
        where = ", ".join(part for part in (
            path,
            f"entry {entry!r}" if entry else None,
            f"field {field!r}" if field else None,
        ) if part)
        super().__init__(f"{where}: {message}" if where else message)


class UnknownBackboneError(ZooError, KeyError):
    """A backbone name is not in the registry."""

    def __init__(self, name: str, known: list[str]) -> None:
        self.name = name
        self.suggestions = suggest(name, known)
        hint = f" Did you mean {', '.join(self.suggestions)}?" if self.suggestions else ""
        super().__init__(f"unknown backbone {name!r}.{hint} Run 'zoo list' to see every backbone.")

    def __str__(self) -> str:  # KeyError would quote the message
        return self.args[0]


class UnknownTaskError(ZooError, ValueError):
    """A task name is not one of the task types zoo knows."""

    def __init__(self, task: str, known: list[str]) -> None:
        self.task = task
        hint = suggest(task, known)
        did_you_mean = f" Did you mean {hint[0]!r}?" if hint else ""
        super().__init__(f"unknown task {task!r}.{did_you_mean} Known tasks: {', '.join(known)}.")


# --- Plugins ----------------------------------------------------------------------------------------------------


class PluginError(ZooError, RuntimeError):
    """A plugin failed to load or broke the plugin contract."""

    def __init__(self, plugin: str, message: str) -> None:
        self.plugin = plugin
        super().__init__(f"plugin {plugin!r}: {message}")


class FamilyUnavailableError(ZooError, LookupError):
    """A backbone names a family that no loaded plugin provides."""

    def __init__(self, family: str, backbone: str, known: list[str]) -> None:
        self.family, self.backbone = family, backbone
        super().__init__(
            f"backbone {backbone!r} needs family {family!r}, which no loaded plugin provides "
            f"(loaded: {', '.join(known) or 'none'}). Run 'zoo plugins' to see which plugins failed and why."
        )


# --- Input and constraints --------------------------------------------------------------------------------------


class InvalidInputError(ZooError, ValueError):
    """An argument or input file is invalid."""

    exit_code = 2


class NoCandidateError(ZooError, LookupError):
    """No backbone satisfies every constraint."""


# --- Models -----------------------------------------------------------------------------------------------------


class ModelLoadError(ZooError, OSError):
    """Weights or configuration of a backbone could not be loaded."""

    @classmethod
    def for_backbone(cls, spec, family: str, exc: BaseException, *, convert: str | None = None) -> ModelLoadError:
        """The standard message for a family that failed to load ``spec``, naming where it looked.

        ``convert`` says how the family's library saves a model as safetensors, for the message about refused
        pickled weights.
        """
        scheme = getattr(spec, "source_scheme", None)
        where = (f"folder {spec.local_path}" if spec.is_local else
                 f"source {spec.source!r}" if scheme else f"Hub repo {spec.source!r}")
        if _refused_pickle(exc):
            return cls(f"could not load {family} backbone {spec.name!r} from {where}: "
                       f"{_refused_pickle_advice(exc, family, convert)} Then point the registry entry's source at "
                       "the converted folder.")
        if not spec.is_local and not scheme and _not_cached_offline(spec):
            return cls(f"could not load {family} backbone {spec.name!r} from the local Hugging Face cache with "
                       f"HF_HUB_OFFLINE=1 set: run 'zoo fetch {spec.name}' while online, then run this again.")
        detail = (str(exc).strip().splitlines() or [""])[0]
        check = (f"Check the source; 'zoo fetch {spec.name}' fetches it through the family that claims {scheme}: "
                 "sources" if scheme else
                 "Check the source and the connection to the Hub (HF_ENDPOINT); with HF_HUB_OFFLINE=1 the files "
                 "must already be in the Hugging Face cache")
        return cls(f"could not load {family} backbone {spec.name!r} from {where}: {type(exc).__name__}: {detail}. "
                   f"{check}.")

    @classmethod
    def for_saved(cls, directory, family: str, exc: BaseException, *, convert: str | None = None) -> ModelLoadError:
        """The message for a family that failed to load the saved model in ``directory``."""
        if _refused_pickle(exc):
            return cls(f"{directory}: {_refused_pickle_advice(exc, family, convert)}")
        detail = (str(exc).strip().splitlines() or [""])[0]
        return cls(f"{directory}: not a loadable {family} model ({detail})")


# --- Runs -------------------------------------------------------------------------------------------------------


class RunDirectoryBusyError(ZooError, BlockingIOError):
    """Another zoo process holds the run directory: one run owns one folder for its whole life."""

    def __init__(self, run_dir, owner: str) -> None:
        self.run_dir, self.owner = str(run_dir), owner
        super().__init__(f"{run_dir}: another run is using this folder ({owner}); wait for it to end, or choose "
                         "another --output")


class NonFiniteWeightsError(ZooError, ArithmeticError):
    """A model's weights hold NaN or infinite values, so its predictions would be meaningless."""

    def __init__(self, where, tensors: list[str]) -> None:
        self.where, self.tensors = str(where), list(tensors)
        shown = ", ".join(tensors[:3]) + (f" and {len(tensors) - 3} more" if len(tensors) > 3 else "")
        super().__init__(f"{where}: the weights hold NaN or infinite values ({shown}); the model is unusable. "
                         "Train again with a lower --lr, or with --precision fp32")


class ExportError(ZooError, RuntimeError):
    """A model could not be exported, or its export failed the parity gate (nothing is left that looks usable)."""


class DiskFullError(ZooError, OSError):
    """Writing a file failed because its filesystem has no room left."""

    exit_code = 3

    def __init__(self, path, *, needed: int | None = None, free: int | None = None) -> None:
        self.path, self.needed, self.free = str(path), needed, free
        sizes = []
        if needed:
            sizes.append(f"about {_human_bytes(needed)} needed")
        if free is not None:
            sizes.append(f"{_human_bytes(free)} free")
        detail = f" ({', '.join(sizes)})" if sizes else ""
        super().__init__(f"{path}: no space left on the device{detail}; free some space or write elsewhere "
                         "(--output), then run again")


def disk_error(exc: BaseException, path: Path, *, needed: int | None = None) -> BaseException:
    """The error to raise for a failed write: :class:`DiskFullError` when the disk is full, else ``exc``.

    Not every writer says so with ``ENOSPC``: safetensors reports "os error 28" in its own exception type, and
    torch's archive writer only that a position is off. So a failure also counts as a full disk when its message
    says so, or when the filesystem has less room left than the write needed.
    """
    import errno
    import shutil

    if isinstance(exc, ZooError):
        return exc
    if isinstance(exc, OSError) and exc.filename:
        path = Path(exc.filename)          # the file being written, when the error says
    try:
        free = shutil.disk_usage(Path(path) if Path(path).is_dir() else Path(path).parent).free
    except OSError:
        free = None
    chain, link = [], exc
    while link is not None and len(chain) < 8:
        chain.append(link)
        link = link.__cause__ or link.__context__
    said_full = any((isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT))
                    or any(words in str(e) for words in ("No space left on device", "os error 28",
                                                          "Disk quota exceeded", "StorageFull"))
                    for e in chain)
    if said_full or (needed is not None and free is not None and free < needed):
        return DiskFullError(path, needed=needed, free=free)
    return exc


def _human_bytes(count: int) -> str:
    value = float(count)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"  # pragma: no cover


# --- Run history ------------------------------------------------------------------------------------------------

# The environment variable that points at another run history (zoo.store reads it).
STORE_ENV = "ZOO_STORE"


class UnknownRunError(ZooError, LookupError):
    """No run with that id is recorded in the store."""

    def __init__(self, run_id: int, path=None) -> None:
        self.run_id, self.path = run_id, path
        where = f" in {path}" if path else ""
        super().__init__(f"no run with id {run_id}{where}. Run 'zoo runs' to list the recorded runs "
                         f"(or pass --store / set {STORE_ENV} to read another run history).")


class StoreError(ZooError, OSError):
    """The run history database cannot be opened, read or written."""

    def __init__(self, path, detail: str) -> None:
        self.path, self.detail = path, detail
        super().__init__(f"cannot use run history {path}: {detail}. Point --store or {STORE_ENV} at another "
                         "file, or move this one aside to start a new history.")


# --- Training ---------------------------------------------------------------------------------------------------


class TrainingDivergedError(ZooError, ArithmeticError):
    """The loss or the gradients stopped being finite: the run stops rather than save a broken model."""

    def __init__(self, *, epoch: int, batch: int, step: int, what: str, lr: float | None = None,
                 advice: str | None = None) -> None:
        self.epoch, self.batch, self.step, self.what = epoch, batch, step, what
        lower = f"a lower --lr (this run: {lr:g})" if lr is not None else "a lower --lr"
        advice = advice or f"Try {lower}, --precision fp32, or check the data for NaN or infinite values."
        super().__init__(f"training diverged at epoch {epoch}, batch {batch} (optimizer step {step}): {what}. "
                         f"{advice}")


class DeviceOutOfMemoryError(ZooError, MemoryError):
    """A training step does not fit in device memory even one example at a time."""

    def __init__(self, *, device: str, detail: str) -> None:
        self.device, self.detail = device, detail
        super().__init__(f"out of memory on {device} with a micro-batch of 1 example ({detail.rstrip('.')}). Try a "
                         "smaller backbone, a shorter --max-length or smaller --image-size, --strategy lora or "
                         "linear, or --precision bf16.")


# --- Hub ----------------------------------------------------------------------------------------------------------


class HubError(ZooError, OSError):
    """The Hub refused a request, or the connection to it broke."""


class BackboneNotFetchedError(ZooError, LookupError):
    """Offline mode is on and a backbone's files are not cached: in the local Hugging Face cache for a Hub repo, in
    the cache of the family that claims the source's scheme (``archive:``, ``torchvision:``...) otherwise."""

    def __init__(self, name: str, source: str, *, scheme: str | None = None) -> None:
        self.name, self.source = name, source
        where = f"in the cache of its {scheme}: source" if scheme else "in the local Hugging Face cache"
        super().__init__(f"backbone {name!r} ({source}) is not {where} and HF_HUB_OFFLINE=1 is set: run "
                         f"'zoo fetch {name}' while online, then run this again.")

    def __str__(self) -> str:  # LookupError is fine, but keep the message as written
        return self.args[0]


def _refused_pickle(exc: BaseException) -> bool:
    """Whether ``exc`` is, or was caused by, torch refusing a pickle with ``weights_only=True``."""
    import pickle

    return any(isinstance(error, pickle.UnpicklingError) or "weights_only" in str(error)
               for error in _chain(exc))


def _refused_pickle_advice(exc: BaseException, family: str, convert: str | None) -> str:
    # torch's and the libraries' own messages suggest weights_only=False, which runs whatever code the pickle
    # holds: this message replaces theirs rather than quoting it.
    import re

    found = re.findall(r"Unsupported globals?: (?:GLOBAL )?([\w.]+(?:, [\w.]+)*)",
                       "\n".join(str(error) for error in _chain(exc)))
    holds = sorted({name.strip(".") for names in found for name in names.split(", ")})
    what = f" (it holds {', '.join(holds)}, not only tensors)" if holds else ""
    how = convert or f"load the model with {family} there and save it in safetensors format"
    return (f"its weights are a pickle (such as pytorch_model.bin) that torch refuses to load with "
            f"weights_only=True{what}. zoo loads safetensors, or pickles of plain tensors only, and never runs the "
            f"code a pickle may hold. Convert the weights to safetensors where you trust the file: {how}.")


def _chain(exc: BaseException | None) -> list[BaseException]:
    """``exc`` and the exceptions that caused it, outermost first."""
    chain: list[BaseException] = []
    while exc is not None and all(exc is not seen for seen in chain):
        chain.append(exc)
        exc = exc.__cause__ or exc.__context__
    return chain


def _not_cached_offline(spec) -> bool:
    # Asked of huggingface_hub itself: every layer imports this module, so it may import nothing of zoo (the
    # same question is zoo.hub.fetch.cached_snapshot's, for the layers above).
    from huggingface_hub import constants, snapshot_download

    if not constants.HF_HUB_OFFLINE:
        return False
    try:
        snapshot_download(spec.source, revision=spec.revision, local_files_only=True)
    except Exception:  # huggingface_hub raises several types for "not in the cache"
        return True
    return False


def one_line(text: object, limit: int = 200) -> str:
    """``text`` as a single line of at most ``limit`` characters, for embedding library messages in ours. An object's
    default repr (``<_io.BytesIO object at 0x7f...>``, how libraries name an in-memory upload) becomes "the file":
    its address says nothing to a person and differs on every call."""
    import re

    flat = re.sub(r"<[\w.]+ object at 0x[0-9a-fA-F]+>", "the file", " ".join(str(text).split()))
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def suggest(name: str, known: list[str], n: int = 3) -> list[str]:
    """Return up to ``n`` names from ``known`` closest to ``name``, including prefix matches."""
    lowered = {k.lower(): k for k in known}
    close = get_close_matches(name.lower(), list(lowered), n=n, cutoff=0.6)
    prefix = [k for k in lowered if k.startswith(name.lower().split(".")[0]) and k not in close]
    return [lowered[k] for k in (close + prefix)[:n]]
