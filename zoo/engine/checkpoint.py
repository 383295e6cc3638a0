"""Training checkpoints, written so that a run killed at any instant can resume from the last complete one.

A checkpoint is a folder: ``trainable.safetensors`` (the parameters being trained and the model's buffers),
``best.safetensors`` (the same, of the best epoch so far), ``optimizer.pt`` and ``scheduler.pt`` (state dicts of
tensors and numbers, read back with ``torch.load(weights_only=True)``), ``state.json`` (progress and history) and,
with ``--soup-top-k``, ``soup/epoch-N.safetensors``: the best epochs' parameters and buffers, which the run averages
when training ends (an epoch's file never changes, so a later checkpoint links it instead of writing it again).
It is written to a temporary folder and swapped in with renames; the previous one is kept until the swap is done.

When `--strategy auto` tries two strategies, the first one's result waits in ``candidates/`` (its best
parameters and buffers, and its progress) while the second trains, so that the winner can be saved whichever it is.

No global random state is kept: every draw of training comes from a seed derived from where it happens (epoch,
example, batch; zoo.engine.seeds), so the state of the generators at the checkpoint decides nothing.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from zoo.engine.rundir import STATE_DIR

SOUP_DIR = "soup"   # inside a checkpoint: the snapshots --soup-top-k keeps


@dataclass
class Progress:
    epoch: int = 0                        # the epoch in progress (0-based)
    batches_done: int = 0                 # batches of that epoch already trained on
    global_step: int = 0                  # optimizer steps so far
    best_metric: float | None = None
    best_epoch: int | None = None
    epochs_without_improvement: int = 0
    stopped_early: bool = False           # patience ran out (or the reporter stopped the run): what is left is
                                          # the final evaluation and save
    stopped_by: str | None = None         # the reporter's reason, when it stopped the run (Reporter.should_stop)
    skipped_steps: int = 0                # optimizer steps of this epoch the fp16 loss scaler skipped
    micro_batch: int | None = None        # examples per forward pass after an out-of-memory back-off (None: the
                                          # whole batch); gradients accumulate over the parts, the batch stays
    memory_back_offs: int = 0             # how many times the micro-batch was halved
    history: list[dict[str, Any]] = field(default_factory=list)   # one record per finished epoch
    # --soup-top-k: the epochs whose snapshots are kept, {"epoch": 0-based, "score": validation metric}
    snapshots: list[dict[str, Any]] = field(default_factory=list)


def checkpoint_dir(run_dir: Path) -> Path:
    return Path(run_dir) / STATE_DIR / "checkpoint"


def save_checkpoint(run_dir: Path, *, trainable: dict, best: dict | None, optimizer, scheduler,
                    progress: Progress, snapshots: dict[int, dict] | None = None) -> None:
    import torch
    from safetensors.torch import save_file

    final = checkpoint_dir(run_dir)
    tmp, old = final.with_name("checkpoint.tmp"), final.with_name("checkpoint.old")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in trainable.items()}, str(tmp / "trainable.safetensors"))
    if best is not None:
        save_file({k: v.detach().cpu().contiguous() for k, v in best.items()}, str(tmp / "best.safetensors"))
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
    _save_snapshots(tmp, final, snapshots or {})
    (tmp / "state.json").write_text(json.dumps({"progress": asdict(progress)}))
    # Swap: checkpoint -> checkpoint.old, tmp -> checkpoint, drop old. A kill between the renames leaves .old.
    if final.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)


def _save_snapshots(tmp: Path, final: Path, snapshots: dict[int, dict]) -> None:
    """The kept epochs' snapshots into ``tmp/soup``: linked from the current checkpoint when it has the epoch."""
    from safetensors.torch import save_file

    if not snapshots:
        return
    (tmp / SOUP_DIR).mkdir()
    for epoch, tensors in snapshots.items():
        name = f"epoch-{epoch}.safetensors"
        earlier = final / SOUP_DIR / name
        try:
            os.link(earlier, tmp / SOUP_DIR / name)
        except OSError:   # not there yet, or a file system without hard links
            save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp / SOUP_DIR / name))


@dataclass
class Checkpoint:
    trainable: dict
    best: dict | None
    optimizer_state: dict
    scheduler_state: dict
    progress: Progress
    snapshots: dict[int, dict] = field(default_factory=dict)   # --soup-top-k: epoch (0-based) -> tensors


def load_checkpoint(run_dir: Path) -> Checkpoint | None:
    """The last complete checkpoint of ``run_dir``, or None when there is none."""
    import torch
    from safetensors.torch import load_file

    final = checkpoint_dir(run_dir)
    for folder in (final, final.with_name("checkpoint.old")):
        if (folder / "state.json").is_file():
            break
    else:
        return None
    state = json.loads((folder / "state.json").read_text())
    best_path = folder / "best.safetensors"
    checkpoint = Checkpoint(
        trainable=load_file(str(folder / "trainable.safetensors")),
        best=load_file(str(best_path)) if best_path.is_file() else None,
        optimizer_state=torch.load(folder / "optimizer.pt", weights_only=True),
        scheduler_state=torch.load(folder / "scheduler.pt", weights_only=True),
        progress=Progress(**state["progress"]),
    )
    for kept in checkpoint.progress.snapshots:
        epoch = kept["epoch"]
        checkpoint.snapshots[epoch] = load_file(str(folder / SOUP_DIR / f"epoch-{epoch}.safetensors"))
    return checkpoint


def saved_progress(run_dir: Path) -> Progress | None:
    """The progress of the last complete checkpoint of ``run_dir`` (its epoch history), without its tensors; None
    when there is none."""
    final = checkpoint_dir(run_dir)
    for folder in (final, final.with_name("checkpoint.old")):
        if (folder / "state.json").is_file():
            return Progress(**json.loads((folder / "state.json").read_text())["progress"])
    return None


def discard_partial_checkpoint(run_dir: Path) -> None:
    """Drop a checkpoint whose writing was cut short (the complete one, and its predecessor, stay for --resume)."""
    shutil.rmtree(checkpoint_dir(run_dir).with_name("checkpoint.tmp"), ignore_errors=True)


def discard_checkpoints(run_dir: Path) -> None:
    """Drop every checkpoint folder, complete or partial (the run's lock lives beside them and stays)."""
    final = checkpoint_dir(run_dir)
    for folder in (final, final.with_name("checkpoint.tmp"), final.with_name("checkpoint.old")):
        shutil.rmtree(folder, ignore_errors=True)


def candidates_dir(run_dir: Path) -> Path:
    return Path(run_dir) / STATE_DIR / "candidates"


def save_candidate(run_dir: Path, strategy: str, *, tensors: dict, progress: Progress) -> None:
    """Keep a tried strategy's best parameters and buffers and its progress until the run picks its winner.

    The run record, rewritten after this with the candidate's score, is what says the candidate finished: files
    a kill leaves without that are written again when the candidate is trained again.
    """
    from safetensors.torch import save_file

    folder = candidates_dir(run_dir)
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(folder / f"{strategy}.safetensors"))
    (folder / f"{strategy}.json").write_text(json.dumps({"progress": asdict(progress)}))


def load_candidate(run_dir: Path, strategy: str) -> tuple[dict, Progress]:
    """What :func:`save_candidate` kept for ``strategy``."""
    from safetensors.torch import load_file

    folder = candidates_dir(run_dir)
    state = json.loads((folder / f"{strategy}.json").read_text())
    return load_file(str(folder / f"{strategy}.safetensors")), Progress(**state["progress"])


def discard_candidates(run_dir: Path) -> None:
    shutil.rmtree(candidates_dir(run_dir), ignore_errors=True)
