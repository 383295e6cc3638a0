"""Training checkpoints, written so that a run killed at any instant can resume from the last complete one.

A checkpoint is a folder: ``trainable.safetensors`` (the parameters being trained and the model's buffers),
``best.safetensors`` (the same, of the best epoch so far), ``optimizer.pt`` and ``scheduler.pt`` (state dicts of
tensors and numbers, read back with ``torch.load(weights_only=True)``), ``rng.safetensors`` and ``state.json``
(progress and history). It is written to a temporary folder and swapped in with renames; the previous one is kept
until the swap is done.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from zoo.engine.rundir import STATE_DIR


@dataclass
class Progress:
    epoch: int = 0                        # the epoch in progress (0-based)
    batches_done: int = 0                 # batches of that epoch already trained on
    global_step: int = 0                  # optimizer steps so far
    best_metric: float | None = None
    best_epoch: int | None = None
    epochs_without_improvement: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)   # one record per finished epoch


def checkpoint_dir(run_dir: Path) -> Path:
    return Path(run_dir) / STATE_DIR / "checkpoint"


def _rng_state() -> tuple[dict[str, Any], dict[str, Any]]:
    import torch

    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda{i}"] = state
    py_state = random.getstate()
    np_state = np.random.get_state()
    plain = {"python": [py_state[0], list(py_state[1]), py_state[2]],
             "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]]}
    return tensors, plain


def _set_rng_state(tensors: dict[str, Any], plain: dict[str, Any]) -> None:
    import torch

    torch.set_rng_state(tensors["torch"])
    cuda = [tensors[k] for k in sorted(k for k in tensors if k.startswith("cuda"))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    version, state, gauss = plain["python"]
    random.setstate((version, tuple(state), gauss))
    name, keys, pos, has_gauss, cached = plain["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))


def save_checkpoint(run_dir: Path, *, trainable: dict, best: dict | None, optimizer, scheduler,
                    progress: Progress) -> None:
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
    rng_tensors, rng_plain = _rng_state()
    save_file(rng_tensors, str(tmp / "rng.safetensors"))
    (tmp / "state.json").write_text(json.dumps({"progress": asdict(progress), "rng": rng_plain}))
    # Swap: checkpoint -> checkpoint.old, tmp -> checkpoint, drop old. A kill between the renames leaves .old.
    if final.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)


@dataclass
class Checkpoint:
    trainable: dict
    best: dict | None
    optimizer_state: dict
    scheduler_state: dict
    progress: Progress

    def restore_rng(self) -> None:
        _set_rng_state(self._rng_tensors, self._rng_plain)


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
    checkpoint._rng_tensors = load_file(str(folder / "rng.safetensors"))
    checkpoint._rng_plain = state["rng"]
    return checkpoint


def discard_checkpoints(run_dir: Path) -> None:
    """Drop every checkpoint folder, complete or partial (the run's lock lives beside them and stays)."""
    final = checkpoint_dir(run_dir)
    for folder in (final, final.with_name("checkpoint.tmp"), final.with_name("checkpoint.old")):
        shutil.rmtree(folder, ignore_errors=True)
