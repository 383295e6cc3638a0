"""`zoo push`: publish a finished run to a Hub repo, then check that what arrived is what was sent.

One commit carries the native model files, the plots and the "How it decides" pictures, ``zoo_run.json`` and a
model card written for the repo (its usage snippet loads from the repo id; its pictures are those sent). The run
directory itself is not changed. Before sending, absolute paths of this machine in the run record are cut to their
last component: a published record should not show where the person keeps their data.

The commit goes through ``HfApi.create_commit``, which asks the Hub first which files it already holds, so pushing
the same run again only sends what changed and a push interrupted by a broken connection is finished by running
the same command again. A push counts as published only once the commit's file listing matches every file sent,
by size and content hash; only then is it printed as done and recorded in the run history.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from zoo import jsonio
from zoo.errors import HubError, InvalidInputError
from zoo.hub.transport import transport_errors
from zoo.runs.card import dataset_name, how_it_decides_pictures, model_card
from zoo.runs.outputs import OUTPUTS_DIR
from zoo.runs.record import RUN_RECORD, read_finished_record
from zoo.secrets import resolve_token
from zoo.store import RunStore
from zoo.tasks import get_task

PLOTS = ("curves.png", "confusion.png")
KEPT_REPO_FILES = (".gitattributes",)   # the Hub's own, never removed
_SKIPPED_SUFFIXES = (".tmp", ".partial")


@dataclass(frozen=True)
class PushedFile:
    path: str         # in the repo
    size: int
    sha256: str


@dataclass
class PushResult:
    repo_id: str
    url: str                      # the repo page (the branch's, when not main)
    endpoint: str
    branch: str
    commit: str
    commit_url: str
    private: bool                 # as the Hub reports it (a push never changes it)
    created: bool                 # the repo did not exist before
    changed: bool                 # False when the repo already held exactly these files
    files: list[PushedFile] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def push_run(run_dir: str | os.PathLike, repo_id: str, *, private: bool | None = None, branch: str = "main",
             commit_message: str | None = None, token: str | None = None, store: bool = True,
             progress: Callable[[str], None] | None = None) -> PushResult:
    """Publish the finished run in ``run_dir`` to the model repo ``repo_id`` ("namespace/name").

    ``private`` applies when the repo is created (None means private); an existing repo keeps its visibility.
    ``token`` defaults to ``HF_TOKEN`` or the stored login (:func:`zoo.secrets.resolve_token`: stripped of
    surrounding whitespace); it is sent to the Hub and nowhere else.

    Raises:
        zoo.errors.InvalidInputError: not a run directory, an unfinished run, a malformed repo id or token.
        zoo.errors.HubError: no token, a refusal by the Hub, a broken connection, or files that did not arrive
            intact. Nothing is recorded as published then.
    """
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi, constants
    from huggingface_hub.errors import RepositoryNotFoundError

    run_dir = Path(run_dir)
    record = read_finished_record(run_dir).to_dict()   # finished, with finite weights
    _check_repo_id(repo_id)
    _check_branch(branch)
    if constants.HF_HUB_OFFLINE:
        raise HubError("zoo push uploads to the Hub, but HF_HUB_OFFLINE=1 is set; unset it to push")
    token = resolve_token(token)
    if not token:
        raise HubError("no Hugging Face token: pass --token, set HF_TOKEN, or log in once with 'hf auth login'")
    say = progress or (lambda message: None)
    payload = _payload(run_dir, record, repo_id, branch)
    hub = HfApi(token=token)
    endpoint = hub.endpoint.rstrip("/")
    with _hub_errors(repo_id, endpoint) as stage:
        stage("looking up")
        try:
            info = hub.repo_info(repo_id)
            created = False
        except RepositoryNotFoundError:
            stage("creating")
            say(f"creating {'private' if private is not False else 'public'} repo {repo_id}")
            hub.create_repo(repo_id, private=private is not False, exist_ok=True)
            info, created = hub.repo_info(repo_id), True
        notes = []
        wanted = True if private is None else private
        if not created and bool(info.private) != wanted:
            notes.append(f"{repo_id} already exists and is {'private' if info.private else 'public'}; its "
                         "visibility was left as it is (change it in the repo's settings on the Hub)")
        if branch != "main":
            stage("creating branch")
            hub.create_branch(repo_id, branch=branch, exist_ok=True)
        stage("reading")
        before = hub.repo_info(repo_id, revision=branch).sha
        # Files of an earlier push that this run does not have (another backbone's tokenizer, say) would sit
        # beside the new model and confuse loaders: the commit removes them.
        sent = {path for path, _ in payload}
        stale = sorted(entry.path for entry in hub.list_repo_tree(repo_id, revision=before, recursive=True)
                       if _is_file(entry) and entry.path not in sent and entry.path not in KEPT_REPO_FILES)
        size = sum(len(data) for _, data in payload)
        say(f"uploading {len(payload)} files ({size / 1e6:.1f} MB) to {repo_id}@{branch}")
        stage("committing to")
        operations = [CommitOperationAdd(path_in_repo=path, path_or_fileobj=data) for path, data in payload]
        operations += [CommitOperationDelete(path_in_repo=path) for path in stale]
        message = commit_message or _default_message(record)
        with _quiet_unchanged():
            commit = hub.create_commit(repo_id, operations, commit_message=message, revision=branch)
        stage("verifying")
        say("checking what arrived")
        files = _verify(hub, repo_id, commit.oid, payload)
    url = f"{endpoint}/{repo_id}" + (f"/tree/{quote(branch, safe='')}" if branch != "main" else "")
    result = PushResult(repo_id=repo_id, url=url, endpoint=endpoint, branch=branch, commit=commit.oid,
                        commit_url=commit.commit_url, private=bool(info.private), created=created,
                        changed=commit.oid != before, files=files, notes=notes)
    if store and result.changed:
        RunStore().record_push({"run_dir": str(run_dir), **result.to_dict()})
    return result


@contextmanager
def _quiet_unchanged() -> Iterator[None]:
    """Hide huggingface_hub's warning about an empty commit: the result says "already up to date" itself."""
    import logging

    class Unchanged(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            return "No files have been modified" not in record.getMessage()

    logger, unchanged = logging.getLogger("huggingface_hub.hf_api"), Unchanged()
    logger.addFilter(unchanged)
    try:
        yield
    finally:
        logger.removeFilter(unchanged)


def _check_branch(branch: str) -> None:
    if not branch.strip() or branch.startswith(("refs/", "/")) or branch != branch.strip() or ".." in branch:
        raise InvalidInputError(f"--branch {branch!r}: give a plain branch name such as 'main' or 'experiment-2'")


def _is_file(entry) -> bool:
    from huggingface_hub.hf_api import RepoFile

    return isinstance(entry, RepoFile)


def _check_repo_id(repo_id: str) -> None:
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as exc:
        raise InvalidInputError(f"--repo-id {repo_id!r}: {str(exc).splitlines()[0]}") from None
    if repo_id.count("/") != 1:
        raise InvalidInputError(f"--repo-id {repo_id!r}: give it as NAMESPACE/NAME (your user or organisation name, "
                                "then the model's name)")


def _payload(run_dir: Path, record: dict[str, Any], repo_id: str, branch: str) -> list[tuple[str, bytes]]:
    """(path in repo, content) for every file to publish: the run's files with a card and a record for the Hub."""
    files: list[tuple[str, bytes]] = []
    for path in sorted(run_dir.rglob("*")):
        relative = path.relative_to(run_dir)
        if path.is_symlink() or not path.is_file() or any(part.startswith(".") for part in relative.parts):
            continue   # checkpoints (.zoo/), hidden files and links to elsewhere stay local
        if relative.as_posix() in ("README.md", RUN_RECORD) or path.name.endswith(_SKIPPED_SUFFIXES):
            continue
        if relative.parts[0] == OUTPUTS_DIR:
            continue   # the validation outputs: for combining runs here, not part of the model
        files.append((relative.as_posix(), path.read_bytes()))
    if not any(path.endswith(".safetensors") for path, _ in files):
        raise InvalidInputError(f"{run_dir}: no model weights (*.safetensors) in the run directory; nothing to push")
    plots = [name for name in PLOTS if (run_dir / name).is_file()]
    # The "How it decides" pictures travel in their folder (above); the card shows those that do.
    sending = {path for path, _ in files}
    pictures = [name for name in how_it_decides_pictures(record) if name in sending]
    # Exports in the run's folder travel with it (their folders are in the payload above); the card lists those.
    record = {**record, "exports": [entry for entry in record.get("exports") or []
                                    if not Path(entry["dir"]).is_absolute() and (run_dir / entry["dir"]).is_dir()]}
    public = public_record(record)
    files.append((RUN_RECORD, jsonio.dumps(public, indent=2).encode()))
    # The data is named from the full path: the published record keeps only its last component.
    card = model_card(public, repo_id=repo_id, revision=branch, plots=plots, pictures=pictures,
                      dataset=dataset_name(record["data"]["source"]))
    files.append(("README.md", card.encode()))
    return files


# An absolute path inside a longer text ("given: /data/reviews/val.csv"): two or more components after a slash that
# follows no word character.
_EMBEDDED_PATH = re.compile(r"(?<![\w.~])/(?:[^\s/:,;()]+/)+([^\s/:,;()]+)")


def public_record(value: Any) -> Any:
    """The run record as published: every absolute path cut to its last component (``local-dir:`` kept), also
    where it sits inside a longer text (how a split was made: ``given: /data/val.csv``)."""
    if isinstance(value, dict):
        return {key: public_record(item) for key, item in value.items()}
    if isinstance(value, list):
        return [public_record(item) for item in value]
    if isinstance(value, str):
        prefix = "local-dir:" if value.startswith("local-dir:") else ""
        path = value.removeprefix(prefix)
        if os.path.isabs(path) and "\n" not in path:
            return prefix + (Path(path).name or path)
        return _EMBEDDED_PATH.sub(r"\1", value)
    return value


def _default_message(record: dict[str, Any]) -> str:
    scored = record["metrics"].get("test") or record["metrics"]["best"]
    metric = get_task(record["task"]).main_metric(bool(record.get("multi_label")))
    return (f"zoo push: {record['backbone']['name']} adapted for {record['task']} with {record['strategy']} "
            f"({metric} {float(scored[metric]):.3f})")


def git_blob_sha1(data: bytes) -> str:
    """The id git, and the Hub's file listing, give a file stored without LFS."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _verify(hub, repo_id: str, commit: str, payload: list[tuple[str, bytes]]) -> list[PushedFile]:
    """Compare the commit's file listing with what was sent; raise unless every file arrived intact."""
    from huggingface_hub.hf_api import RepoFile

    remote = {entry.path: entry for entry in hub.list_repo_tree(repo_id, revision=commit, recursive=True)
              if isinstance(entry, RepoFile)}
    sent = {path for path, _ in payload}
    pushed, broken = [], sorted(set(remote) - sent - set(KEPT_REPO_FILES))   # left over from before
    for path, data in payload:
        sha256 = hashlib.sha256(data).hexdigest()
        entry = remote.get(path)
        intact = entry is not None and entry.size == len(data) and (
            entry.lfs.sha256 == sha256 if entry.lfs is not None else entry.blob_id == git_blob_sha1(data))
        if not intact:
            broken.append(path)
        pushed.append(PushedFile(path, len(data), sha256))
    if broken:
        raise HubError(f"the Hub accepted commit {commit[:12]} to {repo_id}, but {len(broken)} file(s) differ from "
                       f"what was sent: {', '.join(broken)}. Run the same command again to send them once more.")
    return pushed


@contextmanager
def _hub_errors(repo_id: str, endpoint: str) -> Iterator[Callable[[str], None]]:
    """Turn what huggingface_hub and the network raise into one-line HubErrors naming the step that failed."""
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

    step = ["contacting"]

    def stage(name: str) -> None:
        step[0] = name

    again = ("Nothing was recorded as published; run the same command again (files already on the Hub are not "
             "sent twice).")
    try:
        yield stage
    except HubError:
        raise
    except RepositoryNotFoundError:
        raise HubError(f"the Hub at {endpoint} found no repo {repo_id} that this token can see while {step[0]} it: "
                       "check the name, and that the token's account can write there") from None
    except HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else None
        server = (exc.server_message or str(exc)).strip().splitlines()
        detail = server[0] if server else ""
        if status == 401:
            raise HubError(f"the Hub at {endpoint} refused the token while {step[0]} {repo_id} (401 Unauthorized): "
                           "check --token, HF_TOKEN or your login") from None
        if status == 403:
            raise HubError(f"the token may not write to {repo_id} (403 Forbidden): push to your own namespace or "
                           "to an organisation you can write to") from None
        raise HubError(f"the Hub answered {status} while {step[0]} {repo_id}: {detail}. {again}") from None
    except transport_errors() as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise HubError(f"the connection to {endpoint} broke while {step[0]} {repo_id} ({reason}). {again}") from None
