"""`zoo fetch`: download backbones into the Hugging Face cache ahead of time, so later commands run offline.

A backbone is downloaded with ``snapshot_download`` at the registry's pinned revision, or at the branch head,
whose commit is then recorded (in the result and the run history). The cache is the standard one
(``HF_HOME``/``HF_HUB_CACHE``), so transformers and timm find the files there by themselves when
``HF_HUB_OFFLINE=1``.

Which files: everything in the repo except weights in formats zoo never loads (TensorFlow, Flax, ONNX, Core ML,
OpenVINO, GGUF, Rust) and, when the repo has safetensors weights, its pickled PyTorch copies too. That keeps a
fetch close to what loading the model reads, without zoo knowing any family's file names.

A source outside the Hub (``torchvision:resnet34``, a URL with a checksum) names a scheme that a family claims
(:attr:`zoo.family.Family.source_schemes`); that family downloads and caches it (``Family.fetch_source``), for
``zoo fetch`` and the offline guard alike.

:func:`ensure_fetched` is the offline guard the commands call before a family loads a backbone: with
``HF_HUB_OFFLINE=1`` and nothing cached it raises the one-line hint to run ``zoo fetch NAME``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from zoo.errors import BackboneNotFetchedError, HubError, ZooError
from zoo.hub.transport import transport_errors
from zoo.plugins import get_plugin_manager
from zoo.registry import BackboneSpec
from zoo.secrets import resolve_token, scrub

# Weights in formats zoo never loads.
OTHER_FRAMEWORKS = ["*.h5", "*.msgpack", "*.ot", "*.onnx", "*.onnx_data", "*.tflite", "*.gguf", "*.mlmodel",
                    "onnx/*", "openvino/*", "coreml/*", "*.mlpackage/*", "tf_model*", "flax_model*", "rust_model*"]
# Pickled PyTorch weights, skipped when safetensors are there.
PICKLED_WEIGHTS = ["*.bin", "*.pth", "*.pt", "*.ckpt"]


@dataclass
class FetchResult:
    backbone: str
    source: str
    status: str                   # "fetched", "local" (weights already on disk) or "failed"
    revision: str | None = None   # as asked: the registry's pin, or None for the branch head
    commit: str | None = None     # what was downloaded
    files: int = 0
    bytes: int = 0
    path: str | None = None       # the snapshot folder in the Hugging Face cache
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class FetchReport:
    """What one `zoo fetch` did: a result per backbone, failures included, so all of them can be shown before
    :meth:`raise_for_failures` reports the failures as one error."""

    results: list[FetchResult]

    @property
    def ready(self) -> int:
        """How many backbones now load offline."""
        return sum(r.status != "failed" for r in self.results)

    @property
    def failed(self) -> list[FetchResult]:
        return [r for r in self.results if r.status == "failed"]

    def raise_for_failures(self) -> None:
        raise_for_failures(self.results)


def is_offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def cached_snapshot(spec: BackboneSpec) -> Path | None:
    """The cached snapshot folder of ``spec`` at its revision, or None when nothing is cached."""
    from huggingface_hub import snapshot_download

    if spec.source_scheme is not None:
        fetched = _cached_source(spec)
        return fetched.path if fetched is not None else None
    try:
        return Path(snapshot_download(spec.source, revision=spec.revision, local_files_only=True))
    except Exception:  # huggingface_hub raises several types for "not in the cache"
        return None


def loaded_commit(spec: BackboneSpec) -> str | None:
    """The commit of ``spec``'s files in the local cache, which is what loading it just read (None for a local
    folder, or when nothing is cached)."""
    if spec.is_local:
        return None
    if spec.source_scheme is not None:
        fetched = _cached_source(spec)
        return fetched.commit if fetched is not None else None
    folder = cached_snapshot(spec)
    return folder.name if folder is not None else None


def _cached_source(spec: BackboneSpec):
    """What the family claiming ``spec``'s source scheme has cached of it (a FetchedSource), or None."""
    try:
        return get_plugin_manager().family_for_source(spec).fetch_source(spec, local_only=True)
    except ZooError:
        return None


def ensure_fetched(spec: BackboneSpec) -> None:
    """In offline mode, fail with the fetch hint unless ``spec``'s files are cached (or on disk already)."""
    if spec.is_local or not is_offline():
        return
    if cached_snapshot(spec) is None:
        raise BackboneNotFetchedError(spec.name, spec.source, scheme=spec.source_scheme)


@contextmanager
def download_bars(shown: bool) -> Iterator[None]:
    """huggingface_hub's download bars hidden while fetching, unless ``shown`` (or they were hidden already)."""
    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    if shown or are_progress_bars_disabled():
        yield
        return
    disable_progress_bars()
    try:
        yield
    finally:
        enable_progress_bars()


def fetch_one(spec: BackboneSpec, *, token: str | None = None) -> FetchResult:
    """Download one backbone's files at its revision into the Hugging Face cache."""
    from huggingface_hub import HfApi, snapshot_download

    if spec.is_local:
        if not spec.local_path.is_dir():
            return FetchResult(spec.name, spec.source, "failed",
                               error=f"local folder {spec.local_path} does not exist; fix the registry entry's source")
        return FetchResult(spec.name, spec.source, "local", path=str(spec.local_path))
    if spec.source_scheme is not None:
        return _fetch_through_family(spec)
    token = resolve_token(token)
    hub = HfApi(token=token)
    try:
        info = hub.model_info(spec.source, revision=spec.revision)
        names = [sibling.rfilename for sibling in info.siblings or []]
        ignore = OTHER_FRAMEWORKS + (PICKLED_WEIGHTS if any(n.endswith(".safetensors") for n in names) else [])
        folder = Path(snapshot_download(spec.source, revision=spec.revision, ignore_patterns=ignore, token=token))
    except ZooError:
        raise
    except Exception as exc:
        # The reason travels in results (--json) as well as errors, and a client's error text may quote the token.
        return FetchResult(spec.name, spec.source, "failed", revision=spec.revision,
                           error=scrub(_describe(exc, spec, hub.endpoint)))
    files = [p for p in folder.rglob("*") if p.is_file()]
    return FetchResult(spec.name, spec.source, "fetched", revision=spec.revision, commit=folder.name,
                       files=len(files), bytes=sum(p.stat().st_size for p in files), path=str(folder))


def _fetch_through_family(spec: BackboneSpec) -> FetchResult:
    """Download a source outside the Hub through the family that claims its scheme (Family.fetch_source)."""
    try:
        fetched = get_plugin_manager().family_for_source(spec).fetch_source(spec)
        if fetched is None:
            raise ZooError(f"the {spec.family} family fetched nothing for {spec.source}")
    except Exception as exc:  # a plugin's failure is this backbone's, never the whole fetch's
        detail = str(exc) if isinstance(exc, ZooError) else f"{type(exc).__name__}: {exc}"
        return FetchResult(spec.name, spec.source, "failed", revision=spec.revision,
                           error=scrub((detail.splitlines() or [""])[0]))
    path = Path(fetched.path)
    files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path] if path.is_file() else []
    return FetchResult(spec.name, spec.source, "fetched", revision=spec.revision, commit=fetched.commit,
                       files=len(files), bytes=sum(p.stat().st_size for p in files), path=str(path))


def _describe(exc: Exception, spec: BackboneSpec, endpoint: str) -> str:
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError

    if isinstance(exc, RevisionNotFoundError):
        return f"revision {spec.revision!r} of {spec.source} not found at {endpoint}; fix the registry entry's revision"
    if isinstance(exc, RepositoryNotFoundError):
        return (f"{spec.source} not found at {endpoint} (a private or gated repo needs --token or HF_TOKEN with "
                "access)")
    if isinstance(exc, HfHubHTTPError):
        status = exc.response.status_code if exc.response is not None else "?"
        return f"the Hub answered {status} for {spec.source}: {(str(exc).splitlines() or [''])[0]}"
    if isinstance(exc, transport_errors()):
        return f"could not reach {endpoint} ({(str(exc).splitlines() or [type(exc).__name__])[0]}); check the " \
               "connection or HF_ENDPOINT"
    return f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}"


def raise_for_failures(results: Sequence[FetchResult]) -> None:
    """One error naming every backbone that failed, if any did."""
    failed = [r for r in results if r.status == "failed"]
    if failed:
        raise HubError("; ".join(f"{r.backbone}: {r.error}" for r in failed))
