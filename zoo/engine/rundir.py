"""One run owns one folder: a run directory is claimed before any work starts and held until the run ends.

A claim is an exclusive lock on ``RUN_DIR/.zoo/lock`` (through ``filelock``), taken without waiting, with a note
of who holds it (``.zoo/owner.json``: process, host, start time, command) for the refusal a second run gets. It
is taken before the data is read, so of two runs started at the same moment into one folder exactly one goes on
and the other refuses at once; a default folder name is reserved with an exclusive ``mkdir``, so two runs never
pick the same one. If the run never starts (bad data, a model that does not load), the folders the claim created
are removed again: nothing half-written is left behind.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from zoo.errors import InvalidInputError, RunDirectoryBusyError
from zoo.runs.record import RUN_RECORD, has_record

STATE_DIR = ".zoo"           # the run's private folder: the lock, its owner, checkpoints
LOCK_FILE = "lock"
OWNER_FILE = "owner.json"
# Set for the ranks a launcher starts: the launcher holds the claim, the ranks write into the folder without one.
CLAIMED_ENV = "ZOO_RUN_DIR_CLAIMED"


@dataclass
class RunDirClaim:
    """A held run directory. Release it when the run has ended, whatever the outcome."""

    run_dir: Path
    created: list[Path] = field(default_factory=list)   # folders the claim made, outermost first
    _lock: object = None

    def release(self) -> None:
        """Drop the lock and its note; if the run never wrote its record, remove the folders the claim made."""
        state = self.run_dir / STATE_DIR
        (state / OWNER_FILE).unlink(missing_ok=True)
        if self._lock is not None:
            self._lock.release()
            self._lock = None
        (state / LOCK_FILE).unlink(missing_ok=True)
        _remove_if_empty(state)
        if not (self.run_dir / RUN_RECORD).exists():
            for folder in reversed(self.created):
                _remove_if_empty(folder)

    def __enter__(self) -> RunDirClaim:
        return self

    def __exit__(self, *exc_info) -> None:
        self.release()


def default_run_dir(backbone: str, data: str, root: str | os.PathLike = "runs") -> Path:
    """runs/<data>-<backbone>: the folder a run gets without --output (-2, -3... are added when it is taken)."""
    stem = Path(data.split(":", 1)[-1] if data.startswith("hf:") else data).stem or "data"
    return Path(root) / f"{stem}-{backbone.split('/')[-1]}".replace(" ", "_")


def claim_new(run_dir: str | os.PathLike | None, *, default: Path) -> RunDirClaim:
    """Claim a folder for a new run: ``run_dir`` when given (empty or missing), else ``default`` or, when that
    name is taken, the first free ``default-2``, ``default-3``...

    Raises:
        InvalidInputError: the path is a file, cannot be created, or holds files already.
        RunDirectoryBusyError: another run holds it.
    """
    if run_dir is None:
        path, created = _reserve_default(default)
    else:
        path = Path(run_dir)
        if path.exists() and not path.is_dir():
            raise InvalidInputError(f"--output {path}: is a file, not a folder; choose a folder for the run")
        created = _make_folders(path)
    claim = _lock(path, created)
    leftovers = sorted(p.name for p in path.iterdir() if p.name != STATE_DIR)
    if leftovers:
        claim.release()
        hint = (f"continue the interrupted run with --resume {path}" if RUN_RECORD in leftovers else
                "choose another --output")
        raise InvalidInputError(f"{path}: already exists and is not empty ({', '.join(leftovers[:3])}"
                                f"{', ...' if len(leftovers) > 3 else ''}); {hint}")
    return claim


def claim_existing(run_dir: str | os.PathLike) -> RunDirClaim:
    """Claim the folder of a run that exists already (``--resume``).

    Raises:
        InvalidInputError: it is not a run directory.
        RunDirectoryBusyError: another process is running it.
    """
    path = Path(run_dir)
    if not has_record(path):
        raise InvalidInputError(f"{path}: not a zoo run directory (no {RUN_RECORD})")
    return _lock(path, [])


def is_claimed(run_dir: str | os.PathLike) -> bool:
    """Whether a live process holds ``run_dir`` now. The lock dies with its process (a kill -9 too), so a run
    folder that is not claimed has no run going on in it, whatever its record says."""
    from filelock import FileLock, Timeout

    path = Path(run_dir) / STATE_DIR / LOCK_FILE
    if not path.is_file():   # every claim holds this file until it is released
        return False
    lock = FileLock(str(path), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        return True
    lock.release()
    return False


def _lock(path: Path, created: list[Path]) -> RunDirClaim:
    from filelock import FileLock, Timeout

    state = path / STATE_DIR
    try:
        state.mkdir(exist_ok=True)
    except OSError as exc:
        for folder in reversed(created):
            _remove_if_empty(folder)
        raise InvalidInputError(f"{path}: cannot write in this folder ({exc.strerror or exc})") from None
    lock = FileLock(str(state / LOCK_FILE), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise RunDirectoryBusyError(path, _owner(state)) from None
    claim = RunDirClaim(path, created, lock)
    note = {"pid": os.getpid(), "host": socket.gethostname(), "started_at": datetime.now(UTC).isoformat(
        timespec="seconds"), "command": " ".join(Path(sys.argv[0]).name if i == 0 else a
                                                  for i, a in enumerate(sys.argv))}
    (state / OWNER_FILE).write_text(json.dumps(note))
    return claim


def _owner(state: Path) -> str:
    """Who holds the lock, as far as its note says."""
    try:
        note = json.loads((state / OWNER_FILE).read_text())
        return f"process {note['pid']} on {note['host']} since {note['started_at']}: {note['command']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "a process that is starting"


def _make_folders(path: Path) -> list[Path]:
    """Create ``path`` and its missing parents; return the ones created, outermost first."""
    missing = []
    probe = path
    while not probe.exists():
        missing.append(probe)
        if probe.parent == probe:
            break
        probe = probe.parent
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InvalidInputError(f"--output {path}: cannot create this folder ({exc.strerror or exc})") from None
    return list(reversed(missing))


def _reserve_default(base: Path) -> tuple[Path, list[Path]]:
    created = _make_folders(base.parent)
    candidate, n = base, 1
    while True:
        try:
            candidate.mkdir()         # exclusive: of two runs reserving one name, one gets it
            return candidate, [*created, candidate]
        except FileExistsError:
            n += 1
            candidate = base.with_name(f"{base.name}-{n}")
        except OSError as exc:
            raise InvalidInputError(f"{candidate}: cannot create the run folder ({exc.strerror or exc})") from None


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass

