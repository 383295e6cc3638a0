"""The training loop shared by every task, family and strategy.

It reads top to bottom: set the order of the epoch, forward under autocast, backward, step with the schedule,
checkpoint, evaluate at the end of the epoch, keep the best, stop early. Accelerate places the model and data,
runs mixed precision and scales fp16 losses; gradients of the trainable parameters are averaged across processes.

Every random draw of training comes from a seed derived from (seed, epoch, example) for augmentation and from
(seed, epoch, batch, process) for the forward pass (zoo.engine.seeds), so a run resumed mid-epoch trains exactly
as if it had never stopped. A non-finite loss or gradient stops the run with TrainingDivergedError: a diverged
model is never saved as finished. Steps the fp16 loss scaler skips are expected, and counted instead.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from zoo.engine.batches import TimedBatches, collect_outputs, make_loader, run_forward, to_device
from zoo.engine.checkpoint import Progress, save_checkpoint
from zoo.engine.config import AdaptConfig
from zoo.engine.metrics import compute_metrics, headline
from zoo.engine.seeds import derive_seed, seeded_globals
from zoo.engine.soup import top_epochs
from zoo.errors import DeviceOutOfMemoryError, TrainingDivergedError
from zoo.tasks import get_task

BUFFER_PREFIX = "buffer::"
# torch.profiler labels of a training step's phases; the rest of a step (loading and collating the batch, copying
# it to the device, reporting) is outside them.
PHASES = {"forward": "zoo::forward", "backward": "zoo::backward", "optimizer": "zoo::optimizer"}


class Reporter:
    """Receives progress; the CLI draws it with rich, scripts and tests ignore it."""

    def start(self, *, epochs: int, batches_per_epoch: int, first_epoch: int, first_batch: int) -> None: ...
    def step(self, *, epoch: int, batch: int, loss: float, samples_per_s: float) -> None: ...
    def epoch_end(self, record: dict[str, Any]) -> None: ...
    def message(self, text: str) -> None: ...
    def stop(self) -> None: ...

    def should_stop(self, record: dict[str, Any]) -> str | None:
        """Asked after each epoch's :meth:`epoch_end` with the same record: a reason stops the run as early
        stopping does (the best epoch is kept and the run finishes), and is recorded (``metrics.stopped_by``).
        `zoo tune` prunes trials through it; None goes on."""
        return None


@dataclass
class TrainingSetup:
    """What the loop trains: a forward function over batches, and the parameters it may change."""

    forward: Callable[[Any], Any]                  # inputs -> logits
    trainable: dict[str, Any]                      # name -> parameter being trained
    train_data: Any                                # map-style dataset of (inputs, target) items
    val_data: Any
    collate: Callable
    lengths: list[int] | None = None               # text lengths, for length-grouped batches
    train_mode: Callable[[bool], None] = lambda training: None
    set_epoch: Callable[[int], None] = lambda epoch: None   # tells the training data which epoch it serves
    model: Any = None                              # the module trained (its buffers are kept in sync)

    def state_tensors(self) -> dict[str, Any]:
        """What a snapshot or checkpoint keeps: the trainable parameters and the model's buffers (batch-norm
        statistics belong with the weights they were gathered for)."""
        tensors = dict(self.trainable)
        if self.model is not None:
            tensors.update({BUFFER_PREFIX + name: buffer for name, buffer in self.model.named_buffers()})
        return tensors

    def load_state_tensors(self, tensors: dict[str, Any]) -> None:
        import torch

        buffers = dict(self.model.named_buffers()) if self.model is not None else {}
        with torch.no_grad():
            for name, value in tensors.items():
                if name.startswith(BUFFER_PREFIX):
                    target = buffers.get(name[len(BUFFER_PREFIX):])
                else:
                    target = self.trainable.get(name)
                if target is not None:
                    target.copy_(value.to(target.device))


def cosine_with_warmup(warmup_steps: int, total_steps: int) -> Callable[[int], float]:
    """Learning-rate factor: linear warm-up, then cosine decay to zero."""
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / max(1, warmup_steps)
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


def make_loss(config: AdaptConfig, *, multi_label: bool, class_counts: list[int], num_examples: int, device):
    """Cross-entropy (with label smoothing) or, for multi-label, binary cross-entropy; `class_weights=auto`
    weighs classes by inverse frequency (multi-label: positives by negatives/positives)."""
    import torch

    counts = torch.tensor(class_counts, dtype=torch.float32)
    if multi_label:
        pos_weight = None
        if config.class_weights == "auto":
            pos_weight = ((num_examples - counts) / counts.clamp(min=1)).clamp(max=100.0).to(device)
        return torch.nn.BCEWithLogitsLoss(pos_weight=pos_weight)
    weight = None
    if config.class_weights == "auto":
        weight = (counts.sum() / (len(counts) * counts.clamp(min=1))).to(device)
    return torch.nn.CrossEntropyLoss(weight=weight, label_smoothing=config.label_smoothing)


def distillation_loss(hard_loss, *, temperature: float, alpha: float, multi_label: bool):
    """Knowledge distillation's loss (Hinton et al., 2015) over a batch's :class:`~zoo.engine.batches.SoftTargets`:
    ``alpha * T^2 * soft + (1 - alpha) * hard_loss(logits, labels)``.

    The soft term is KL(softmax(teacher / T) || softmax(student / T)), averaged over the batch; for multi-label,
    the binary cross-entropy of sigmoid(student / T) against sigmoid(teacher / T), averaged over labels, as the
    hard loss is. Softening by T shrinks its gradients by about 1 / T^2, which the factor T^2 restores, so
    ``alpha`` weighs the two terms alike whatever the temperature. ``hard_loss`` is the run's own (label smoothing,
    class weights: :func:`make_loss`).
    """
    import torch.nn.functional as F

    def loss(logits, target):
        hard = hard_loss(logits, target.labels)
        if alpha == 0:   # the hard loss exactly, with no soft term computed
            return hard
        student, teacher = logits / temperature, target.teacher_logits.float() / temperature
        if multi_label:
            soft = F.binary_cross_entropy_with_logits(student, teacher.sigmoid())
        else:
            soft = F.kl_div(F.log_softmax(student, dim=-1), F.log_softmax(teacher, dim=-1), log_target=True,
                            reduction="batchmean")
        return alpha * temperature ** 2 * soft + (1 - alpha) * hard

    return loss


class Trainer:
    def __init__(self, setup: TrainingSetup, config: AdaptConfig, *, accelerator, optimizer, scheduler, loss_fn,
                 task: str, label_names: list[str], multi_label: bool, run_dir, reporter: Reporter) -> None:
        self.setup, self.config, self.accelerator = setup, config, accelerator
        self.optimizer, self.scheduler, self.loss_fn = optimizer, scheduler, loss_fn
        self.label_names, self.multi_label = label_names, multi_label
        self.run_dir, self.reporter = run_dir, reporter
        self.metric = config.metric or get_task(task).main_metric(multi_label)
        self.progress = Progress()    # fit's: it carries the micro-batch that fits in device memory
        # The current accumulation window's batches (inputs, target, seed), replayed after an out-of-memory back-off
        self.window_batches: list[tuple[Any, Any, int]] = []
        # --soup-top-k: the best epochs' state tensors (epoch, 0-based -> tensors on the CPU); a resumed run gives
        # the checkpoint's, which Progress.snapshots lists
        self.snapshots: dict[int, dict[str, Any]] = {}
        self._val_loader = None   # built on first use (make_loader)

    # --- one optimizer step -----------------------------------------------------------------------------

    def _backward(self, inputs, target, window: int) -> float:
        """Forward and backward over the batch in micro-batches of at most ``progress.micro_batch`` examples
        (the whole batch when None); returns the mean loss.

        ``window`` is how many batches this optimizer step accumulates (grad_accum, or fewer at an epoch's end).
        """
        from torch.profiler import record_function

        size = len(target)
        step = min(size, self.progress.micro_batch or size)
        total = 0.0
        for start in range(0, size, step):
            part = slice(start, min(start + step, size))
            weight = (part.stop - part.start) / size
            part_inputs = {k: v[part] for k, v in inputs.items()} if isinstance(inputs, dict) else inputs[part]
            # The labels name the phases of a step in a torch.profiler trace (benchmarks/roofline.py splits a
            # step by them); without a profiler running they cost a few microseconds.
            with self.accelerator.autocast(), record_function(PHASES["forward"]):
                logits = run_forward(self.setup.forward, part_inputs)
                loss = self.loss_fn(logits.float(), target[part])
            with record_function(PHASES["backward"]):
                self.accelerator.backward(loss * weight / window)
            total += float(loss.detach()) * weight
        return total

    def _train_batch(self, inputs, target, window: int, *, seed: int) -> float:
        """Forward and backward of one batch, its random draws from its own ``seed``; returns its mean loss.

        When the device runs out of memory, the micro-batch halves (twice the gradient accumulation, the same
        effective batch) and the window's batches so far are replayed from their seeds: a failed backward leaves
        gradients half-accumulated, so they are all discarded and recomputed.
        """
        import torch

        self.window_batches.append((inputs, target, seed))
        replay = self.window_batches[-1:]
        while True:
            failure = None
            try:
                for batch_inputs, batch_target, batch_seed in replay:
                    with seeded_globals(batch_seed, self.accelerator.device):
                        loss = self._backward(batch_inputs, batch_target, window)
                return loss
            except torch.cuda.OutOfMemoryError as exc:   # only raised on CUDA
                failure = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
            # Outside the except clause: the exception's frames (and the activations they hold) are gone.
            self._back_off(len(target), failure)
            replay = self.window_batches

    def _back_off(self, batch_size: int, failure: str) -> None:
        """Halve the micro-batch after an out-of-memory error, or give up at one example."""
        import gc

        import torch

        current = min(batch_size, self.progress.micro_batch or batch_size)
        self.optimizer.zero_grad(set_to_none=True)
        gc.collect()
        torch.cuda.empty_cache()
        if current <= 1:
            raise DeviceOutOfMemoryError(device=str(self.accelerator.device), detail=failure)
        self.progress.micro_batch = math.ceil(current / 2)
        self.progress.memory_back_offs += 1
        parts = math.ceil(self.config.batch_size / self.progress.micro_batch) * self.config.grad_accum
        self.reporter.message(f"out of memory on {self.accelerator.device}: micro-batch {current} -> "
                              f"{self.progress.micro_batch}, gradients accumulated over {parts} micro-batches per "
                              "step (effective batch unchanged)")

    def _sync_gradients(self) -> None:
        """Average gradients across processes (data parallel), once per optimizer step."""
        if self.accelerator.num_processes == 1:
            return
        import torch.distributed as dist

        for param in self.setup.trainable.values():
            if param.grad is not None:
                dist.all_reduce(param.grad)
                param.grad /= self.accelerator.num_processes

    def _sync_buffers(self) -> None:
        """Give every process rank 0's buffers (batch-norm statistics), as DDP does, so all evaluate alike."""
        if self.accelerator.num_processes == 1 or self.setup.model is None:
            return
        import torch.distributed as dist

        for buffer in self.setup.model.buffers():
            dist.broadcast(buffer, src=0)

    def _everywhere(self, flag: bool) -> bool:
        """Whether ``flag`` holds in every process: each rank decides the same, so none waits on a stopped one."""
        if self.accelerator.num_processes == 1:
            return flag
        import torch
        import torch.distributed as dist

        failures = torch.tensor([0.0 if flag else 1.0], device=self.accelerator.device)
        dist.all_reduce(failures)
        return float(failures) == 0.0

    def _optimizer_step(self, window_losses: list[float], *, epoch: int, batch: int, step: int) -> bool:
        """Average gradients, stop on a non-finite loss or gradient norm, clip, step the optimizer and the
        schedule. Returns whether the fp16 loss scaler skipped the step (overflowing gradients, expected)."""
        self._sync_gradients()
        if not self._everywhere(all(math.isfinite(loss) for loss in window_losses)):
            bad = next((loss for loss in window_losses if not math.isfinite(loss)), math.nan)
            raise TrainingDivergedError(epoch=epoch + 1, batch=batch, step=step, what=f"the loss is {bad}",
                                        lr=self.config.lr)
        norm = self.accelerator.clip_grad_norm_(list(self.setup.trainable.values()), 1.0)
        # The fp16 scaler skips a step whose gradients overflowed and lowers its scale; anything else is broken.
        # The norm is of gradients already averaged across processes, so every rank decides the same.
        if norm is not None and not math.isfinite(float(norm)) and self.accelerator.scaler is None:
            raise TrainingDivergedError(epoch=epoch + 1, batch=batch, step=step,
                                        what=f"the gradient norm is {float(norm)}", lr=self.config.lr)
        self.optimizer.step()
        skipped = self.accelerator.optimizer_step_was_skipped
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.window_batches = []
        return skipped

    # --- evaluation -------------------------------------------------------------------------------------

    def predict(self, dataset) -> tuple[np.ndarray, np.ndarray]:
        self.setup.train_mode(False)
        # The validation data is read at every epoch's end: its loader, and its workers, live as long as the trainer.
        loader = None
        if dataset is self.setup.val_data:
            if self._val_loader is None:
                self._val_loader = make_loader(dataset, collate=self.setup.collate, workers=self.config.workers,
                                               device=self.accelerator.device, batch_size=self.config.eval_batch_size)
            loader = self._val_loader
        return collect_outputs(self.setup.forward, dataset, collate=self.setup.collate,
                               batch_size=self.config.eval_batch_size, device=self.accelerator.device,
                               num_workers=self.config.workers, autocast=self.accelerator.autocast, loader=loader)

    def evaluate(self, dataset) -> dict[str, Any]:
        targets, logits = self.predict(dataset)
        return compute_metrics(targets, logits, self.label_names, multi_label=self.multi_label)

    # --- the loop ---------------------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        return {name: tensor.detach().cpu().clone() for name, tensor in self.setup.state_tensors().items()}

    def fit(self, progress: Progress, best: dict | None) -> tuple[Progress, dict | None]:
        from torch.profiler import record_function

        from zoo.engine.batches import EpochBatches, epoch_order

        config, accelerator = self.config, self.accelerator
        self.progress = progress
        num_train = len(self.setup.train_data)
        batches_per_epoch = math.ceil(num_train / config.batch_size)
        self.reporter.start(epochs=config.epochs, batches_per_epoch=batches_per_epoch,
                            first_epoch=progress.epoch, first_batch=progress.batches_done)
        # One loader for the whole run, so its worker processes start once; the sampler is told each epoch's order.
        # Augmentation draws per (epoch, example), so which worker loads an example changes nothing.
        sampler = EpochBatches(rank=accelerator.process_index, world_size=accelerator.num_processes)
        loader = make_loader(self.setup.train_data, batch_sampler=sampler, collate=self.setup.collate,
                             workers=config.workers, device=accelerator.device, seed=derive_seed(config.seed))
        # A run that stopped early and was interrupted before it finished goes straight to its final evaluation.
        while progress.epoch < config.epochs and not progress.stopped_early:
            epoch, started = progress.epoch, time.perf_counter()
            # The order of this epoch: seeded, so a resumed run continues the same sequence.
            batches = epoch_order(num_train, epoch=epoch, seed=config.seed, batch_size=config.batch_size,
                                  lengths=self.setup.lengths if config.group_by_length else None)
            sampler.set_epoch(epoch, batches, skip=progress.batches_done)
            self.setup.set_epoch(epoch)
            self.setup.train_mode(True)
            losses, seen, pending, window = [], 0, 0, config.grad_accum
            timed = TimedBatches(loader)   # how long each step waits for its batch
            for index, (inputs, target) in enumerate(timed):
                inputs, target = to_device(inputs, accelerator.device), to_device(target, accelerator.device)
                if pending == 0:   # a new accumulation window: the epoch's last one may be shorter
                    window = min(config.grad_accum, len(sampler) - index)
                # Forward and backward (accumulating gradients over the window's batches); dropout draws from
                # this batch's own seed, so batch k of a resumed epoch sees what it would have seen.
                batch_seed = derive_seed(config.seed, epoch, progress.batches_done, accelerator.process_index)
                losses.append(self._train_batch(inputs, target, window, seed=batch_seed))
                seen += len(target) * accelerator.num_processes
                pending += 1
                progress.batches_done += 1
                last = progress.batches_done >= len(batches)
                # Step the optimizer and the learning-rate schedule; a non-finite loss or gradient stops the run.
                if pending == window or last:
                    with record_function(PHASES["optimizer"]):
                        skipped = self._optimizer_step(losses[-pending:], epoch=epoch,
                                                       batch=progress.batches_done, step=progress.global_step + 1)
                    progress.skipped_steps += int(skipped)
                    pending = 0
                    progress.global_step += 1
                    # Checkpoint now and then, so a killed run loses little.
                    if progress.global_step % config.checkpoint_every == 0 and not last:
                        self._checkpoint(progress, best)
                elapsed = time.perf_counter() - started
                self.reporter.step(epoch=epoch, batch=progress.batches_done, loss=float(np.mean(losses)),
                                   samples_per_s=seen / elapsed if elapsed > 0 else 0.0)
            train_seconds = time.perf_counter() - started
            # Evaluate, keep the best, decide whether to go on.
            self._sync_buffers()
            metrics = self.evaluate(self.setup.val_data)
            value = metrics[self.metric]
            improved = progress.best_metric is None or value > progress.best_metric + 1e-9
            if improved:
                progress.best_metric, progress.best_epoch = value, epoch
                progress.epochs_without_improvement = 0
                best = self.snapshot()
            else:
                progress.epochs_without_improvement += 1
            if config.soup_top_k:
                self._keep_snapshot(progress, epoch, value, best if improved else None)
            record = {"epoch": epoch + 1, "train_loss": float(np.mean(losses)) if losses else None,
                      "lr": self.scheduler.get_last_lr()[0], "seconds": round(train_seconds, 3),
                      "samples_per_s": round(seen / train_seconds, 2) if train_seconds > 0 else None,
                      # the share of the epoch's training time spent waiting for batches (--workers lowers it)
                      "data_wait": round(timed.seconds / train_seconds, 4) if train_seconds > 0 else None,
                      "val": headline(metrics), "best": improved, "skipped_steps": progress.skipped_steps}
            progress.history.append(record)
            self.reporter.epoch_end(record)
            progress.epoch, progress.batches_done, progress.skipped_steps = epoch + 1, 0, 0
            progress.stopped_early = bool(config.patience) and progress.epochs_without_improvement >= config.patience
            if progress.stopped_early:
                self.reporter.message(f"early stop: no {self.metric} improvement for {config.patience} epochs")
            elif progress.epoch < config.epochs:   # the reporter may stop a run that has epochs left
                self._ask_reporter(progress, record)
            # Checkpoint the finished epoch (and the decision to stop), so a resumed run never repeats it.
            self._checkpoint(progress, best)
        self.reporter.stop()
        return progress, best

    def _ask_reporter(self, progress: Progress, record: dict[str, Any]) -> None:
        """Stop when the reporter says so (every process stops if one's reporter does, so none waits)."""
        reason = self.reporter.should_stop(record)
        if self._everywhere(reason is None):
            return
        progress.stopped_early, progress.stopped_by = True, reason or "stopped by another process's reporter"
        self.reporter.message(f"stopped after epoch {record['epoch']}: {progress.stopped_by}")

    def _keep_snapshot(self, progress: Progress, epoch: int, value: float, best: dict | None) -> None:
        """Keep this epoch's state tensors if it is among the ``soup_top_k`` best so far (``best``: the snapshot
        just taken of it as the best epoch, shared rather than copied), and drop the epoch it pushes out."""
        scored = [(kept["epoch"], kept["score"]) for kept in progress.snapshots] + [(epoch, value)]
        keep = top_epochs(scored, self.config.soup_top_k)
        if epoch in keep:
            self.snapshots[epoch] = best if best is not None else self.snapshot()
        progress.snapshots = [{"epoch": e, "score": s} for e, s in scored if e in keep]
        self.snapshots = {e: tensors for e, tensors in self.snapshots.items() if e in keep}

    def _checkpoint(self, progress: Progress, best: dict | None) -> None:
        if self.accelerator.is_main_process:
            save_checkpoint(self.run_dir, trainable=self.setup.state_tensors(), best=best, optimizer=self.optimizer,
                            scheduler=self.scheduler, progress=progress, snapshots=self.snapshots)
        self.accelerator.wait_for_everyone()


# Devices where torch's AdamW has a fused kernel for float parameters (CUDA; the CPU from torch 2.4); others take
# torch's default implementation.
FUSED_ADAMW_DEVICES = ("cuda", "cpu")


def adamw(groups: list[dict[str, Any]], *, lr: float, device_type: str):
    """AdamW with torch's fused kernel where it has one for the device (``FUSED_ADAMW_DEVICES``). On a CPU the
    per-tensor loop, torch's default there, took about 3 times as long a step (BERT-base-sized parameters,
    benchmarks/roofline.py; 3.3% of a small BERT's training step against 1.0% fused, benchmarks/engine_vs_peers.py);
    the HF Trainer fuses everywhere too. Older torch falls back to the default."""
    import torch

    fused = device_type in FUSED_ADAMW_DEVICES
    try:   # copies: a refused optimizer has already filled its defaults (fused=True) into the groups it was given
        return torch.optim.AdamW([dict(group) for group in groups], lr=lr, fused=fused)
    except RuntimeError:   # no fused kernel for this device or parameter type
        return torch.optim.AdamW(groups, lr=lr)


def parameter_groups(named: Iterable[tuple[str, Any]], *, lr: float, weight_decay: float,
                     layer_groups: list[list[str]] | None = None, layer_decay: float | None = None):
    """AdamW groups: no weight decay on biases and norms; with ``layer_decay``, smaller rates toward the input."""
    named = list(named)
    depth: dict[str, int] = {}
    if layer_groups and layer_decay:
        for index, group in enumerate(layer_groups):
            for name in group:
                depth[name] = index
    last = (len(layer_groups) - 1) if layer_groups else 0
    groups: dict[tuple[float, float], list] = {}
    for name, param in named:
        decay = 0.0 if param.ndim <= 1 or name.endswith(".bias") else weight_decay
        plain = name.replace("_orig_mod.", "")    # torch.compile's wrapper prefixes every name
        scale = layer_decay ** (last - depth.get(plain, last)) if layer_decay else 1.0
        groups.setdefault((decay, lr * scale), []).append(param)
    return [{"params": params, "weight_decay": decay, "lr": group_lr}
            for (decay, group_lr), params in groups.items()]
