"""From examples to batches: preprocessing through the family, audio loading and augmentation (drawn from seeds
derived from the epoch and the example, so resume and worker processes change nothing), the order of examples in
each epoch (seeded, length-grouped for text, resumable mid-epoch, sharded across processes), and batches split
into parts that never pad one example against another where the family says padding would change its outputs."""

from __future__ import annotations

import random
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from zoo.data.base import Example
from zoo.engine.seeds import derive_seed, seeded_globals
from zoo.tasks import get_task


def augment_waveform(waveform: np.ndarray, preset: str, rng: random.Random) -> np.ndarray:
    """light: random gain (±6 dB) and time shift (±10%); strong: also Gaussian noise at 15-30 dB SNR."""
    if preset == "none" or waveform.size == 0:
        return waveform
    out = waveform * (10 ** (rng.uniform(-6, 6) / 20))
    shift = int(rng.uniform(-0.1, 0.1) * len(out))
    out = np.roll(out, shift)
    if preset == "strong":
        power = float(np.mean(out**2)) or 1e-8
        snr_db = rng.uniform(15, 30)
        noise = np.random.default_rng(rng.randrange(2**32)).standard_normal(len(out)).astype(np.float32)
        out = out + noise * np.sqrt(power / 10 ** (snr_db / 10))
    return out.astype(np.float32)


# Preprocessed items a dataset keeps in memory when preprocessing draws nothing (see ExampleDataset.keep_items): at
# most this many bytes each for the training and the evaluation data, so that the token ids of a large text set
# are kept (about 3 KB a sentence of 128 tokens) and the decoded images of a large image set are not.
KEPT_ITEMS_BYTES = 512 * 2**20
# Items preprocessed to estimate the bytes of all of them before keeping the rest.
KEPT_ITEMS_SAMPLE = 64


class ExampleDataset:
    """A map-style dataset: example i, preprocessed by the classifier (train-time augmentation when training).

    Augmentation of example i in epoch e draws only from seeds derived from (seed, e, i): call ``set_epoch`` at
    the start of each epoch, as with torch's DistributedSampler. Where preprocessing draws nothing, every item can
    be prepared once and kept (:meth:`keep_items`).
    """

    def __init__(self, examples: Sequence[Example], classifier, *, train: bool, max_seconds: float,
                 num_labels: int, multi_label: bool, seed: int = 0, teacher_logits: np.ndarray | None = None) -> None:
        self.examples, self.classifier, self.train = list(examples), classifier, train
        self.max_seconds, self.num_labels, self.multi_label = max_seconds, num_labels, multi_label
        self.seed, self.epoch = seed, 0
        # distillation: row i is the teacher's logits for example i, which travel with its target (SoftTargets)
        self.teacher_logits = teacher_logits
        if teacher_logits is not None and len(teacher_logits) != len(self.examples):
            raise ValueError(f"{len(teacher_logits)} rows of teacher logits for {len(self.examples)} examples")
        self.kept: list[dict[str, Any]] | None = None   # every item, prepared once (keep_items)

    @property
    def draws(self) -> bool:
        """Whether an example's item changes from epoch to epoch: training with augmentation, the family's in
        ``preprocess`` or the engine's on waveforms."""
        if not self.train:
            return False
        waveform_augmented = get_task(self.classifier.task).waveform and self.classifier.augment != "none"
        return bool(self.classifier.preprocess_augments) or waveform_augmented

    def keep_items(self, budget: int = KEPT_ITEMS_BYTES, *, announce: Callable[[str], None] | None = None) -> bool:
        """Prepare every item once and keep it, so that later epochs (and evaluations) do not preprocess again;
        returns whether they are kept. Nothing is kept when items draw augmentation (:attr:`draws`) or when the
        items, estimated from the first :data:`KEPT_ITEMS_SAMPLE`, would take more than ``budget`` bytes.
        ``announce`` is told what is about to happen, for a large set's progress."""
        if self.draws or not self.examples:
            return False
        first = [self._prepare(index, self.epoch) for index in range(min(KEPT_ITEMS_SAMPLE, len(self.examples)))]
        estimate = sum(map(_size_of, first)) / len(first) * len(self.examples)
        if estimate > budget:
            return False
        if announce is not None:
            announce(f"preprocessing {len(self.examples)} examples once, kept in memory (about "
                     f"{max(1, round(estimate / 2**20))} MB)" + (": they draw no augmentation" if self.train else ""))
        self.kept = first + [self._prepare(index, self.epoch) for index in range(len(first), len(self.examples))]
        return True

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.examples)

    def raw_input(self, example: Example, augment_rng: random.Random | None = None) -> Any:
        """The example's input as the family's preprocessing takes it (:meth:`zoo.tasks.Task.read_example`); a
        waveform is augmented here when ``augment_rng`` is given (the family augments other inputs)."""
        task = get_task(self.classifier.task)
        value = task.read_example(example.input, sample_rate=self.classifier.sample_rate,
                                  max_seconds=self.max_seconds)
        if task.waveform and augment_rng is not None:
            value = augment_waveform(value, self.classifier.augment, augment_rng)
        return value

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        """Example ``key``: an index, augmented for the epoch of :meth:`set_epoch`, or (epoch, index), as the
        training loader asks, whose worker processes keep their own copy of the dataset across epochs."""
        epoch, index = key if isinstance(key, tuple) else (self.epoch, key)
        if self.kept is not None:
            return dict(self.kept[index])   # a copy: collation takes the target out of the item it is given
        return self._prepare(index, epoch)

    def _prepare(self, index: int, epoch: int) -> dict[str, Any]:
        example = self.examples[index]
        if self.train:
            # This example's own seed for this epoch; the family's transforms draw from the global generators,
            # so those are seeded for this example only.
            seed = derive_seed(self.seed, epoch, index)
            with seeded_globals(seed):
                raw = self.raw_input(example, augment_rng=random.Random(seed))
                item = dict(self.classifier.preprocess(raw, train=True))
        else:
            item = dict(self.classifier.preprocess(self.raw_input(example), train=False))
        if self.multi_label:
            target = np.zeros(self.num_labels, dtype=np.float32)
            target[list(example.labels)] = 1.0
            item["_target"] = target
        else:
            item["_target"] = example.labels[0]
        if self.teacher_logits is not None:
            item["_teacher"] = self.teacher_logits[index]
        return item


def item_length(item: dict[str, Any]) -> int:
    """How long a preprocessed item is where dynamic padding pads it: its longest input (tokens, for text)."""
    return max((len(value) for name, value in item.items() if not name.startswith("_") and np.ndim(value) >= 1),
               default=0)


def _size_of(value: Any) -> int:
    """Bytes ``value`` (an item, or one of its inputs) holds, roughly: arrays and tensors by their data, Python
    containers with their elements."""
    if isinstance(value, np.ndarray):
        return value.nbytes
    if hasattr(value, "element_size") and hasattr(value, "numel"):   # a torch tensor
        return value.element_size() * value.numel()
    if isinstance(value, dict):
        return sys.getsizeof(value) + sum(_size_of(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sys.getsizeof(value) + sum(_size_of(v) for v in value)
    return sys.getsizeof(value)


class Parts:
    """A batch whose items may not be padded against each other: sub-batches of items with equal batch keys
    (:meth:`zoo.family.Classifier.batch_key`), each with the positions its items hold in the batch."""

    def __init__(self, parts: list[tuple[Any, list[int]]]) -> None:
        self.parts = parts

    def __len__(self) -> int:
        return sum(len(positions) for _, positions in self.parts)

    def to(self, device) -> Parts:
        return Parts([(to_device(inputs, device), positions) for inputs, positions in self.parts])

    def pin_memory(self) -> Parts:
        """Page-locked copies, which the loader makes on CUDA so that copies to the device overlap the compute."""
        from torch.utils.data._utils.pin_memory import pin_memory

        return Parts([(pin_memory(inputs), positions) for inputs, positions in self.parts])

    def __getitem__(self, rows: slice) -> Parts:
        """The items at batch positions ``rows`` (a slice), still part by part: rows of a part need no padding."""
        import torch

        wanted = range(len(self))[rows]
        kept = []
        for inputs, positions in self.parts:
            take = [i for i, position in enumerate(positions) if position in wanted]
            if take:
                index = torch.tensor(take)
                rows_of_part = {k: (v[index.to(v.device)] if isinstance(v, torch.Tensor) else v)
                                for k, v in inputs.items()}
                kept.append((rows_of_part, [wanted.index(positions[i]) for i in take]))
        return Parts(kept)


def collate_by_key(classifier, items: Sequence[dict[str, Any]]):
    """The family's batch of ``items``, or, when their batch keys differ, :class:`Parts` of equal-key items."""
    groups: dict[Any, list[int]] = {}
    for position, item in enumerate(items):
        groups.setdefault(classifier.batch_key(item), []).append(position)
    if len(groups) == 1:
        return classifier.collate(items)
    return Parts([(classifier.collate([items[i] for i in positions]), positions) for positions in groups.values()])


def run_forward(forward, inputs):
    """``forward`` on a batch; on :class:`Parts`, part by part, with the outputs in the order of the batch."""
    if not isinstance(inputs, Parts):
        return forward(inputs)
    import torch

    outputs = torch.cat([forward(part) for part, _ in inputs.parts])
    positions = torch.tensor([p for _, part_positions in inputs.parts for p in part_positions],
                             device=outputs.device)
    return outputs[torch.argsort(positions)]


class SoftTargets:
    """A training batch's targets with the teacher's logits beside them (distillation): what the loss of a distilled
    run takes (:func:`zoo.engine.trainer.distillation_loss`). It moves and slices as a target tensor does, so the
    loop handles it like one."""

    def __init__(self, labels, teacher_logits) -> None:
        self.labels, self.teacher_logits = labels, teacher_logits

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, rows: slice) -> SoftTargets:
        return SoftTargets(self.labels[rows], self.teacher_logits[rows])

    def to(self, device) -> SoftTargets:
        return SoftTargets(self.labels.to(device, non_blocking=True), self.teacher_logits.to(device, non_blocking=True))

    def pin_memory(self) -> SoftTargets:
        return SoftTargets(self.labels.pin_memory(), self.teacher_logits.pin_memory())


def make_collate(classifier, multi_label: bool):
    """Batch preprocessed items with :func:`collate_by_key`, keeping the targets aside as a tensor (with the
    teacher's logits, :class:`SoftTargets`, when the items carry them)."""
    import torch

    def collate(items: list[dict[str, Any]]) -> tuple[Any, Any]:
        targets = [item.pop("_target") for item in items]
        target = torch.tensor(np.stack(targets)) if multi_label else torch.tensor(targets, dtype=torch.long)
        if items and "_teacher" in items[0]:
            teacher = torch.from_numpy(np.stack([item.pop("_teacher") for item in items]).astype(np.float32))
            target = SoftTargets(target, teacher)
        return collate_by_key(classifier, items), target

    return collate


def epoch_order(num_examples: int, *, epoch: int, seed: int, batch_size: int,
                lengths: Sequence[int] | None = None) -> list[list[int]]:
    """The batches of one epoch, as example indices: a seeded shuffle, so a resumed run sees the same order.

    With ``lengths`` (text), examples are sorted by length inside shuffled windows of 50 batches, so a batch
    holds similar lengths (less padding), and the batches are shuffled again.
    """
    rng = random.Random(seed * 100_003 + epoch)
    order = list(range(num_examples))
    rng.shuffle(order)
    if lengths is not None:
        window = batch_size * 50
        order = [i for start in range(0, len(order), window)
                 for i in sorted(order[start:start + window], key=lambda j: lengths[j], reverse=True)]
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    if lengths is not None:
        rng.shuffle(batches)
    return batches


class EpochBatches:
    """The training loader's batch sampler, one for the whole run (so its worker processes persist): each epoch,
    :meth:`set_epoch` gives it that epoch's batches (:func:`epoch_order`), to start after ``skip`` of them, and it
    keeps this process's share. It yields keys (epoch, index): a worker's copy of the dataset cannot be told the
    epoch, so each key carries it (:meth:`ExampleDataset.__getitem__`)."""

    def __init__(self, *, rank: int = 0, world_size: int = 1) -> None:
        self.rank, self.world_size = rank, world_size
        self.epoch, self.batches = 0, []

    def set_epoch(self, epoch: int, batches: list[list[int]], *, skip: int = 0) -> None:
        # Every process walks the same batches; each takes an equal share of each batch (data parallel). A batch
        # too small to give every process an example repeats some, as DistributedSampler pads, so every process
        # steps the same number of times and batch positions stay those of the full order (for resume).
        padded = [batch if len(batch) >= self.world_size else (batch * self.world_size)[:self.world_size]
                  for batch in batches[skip:]]
        self.epoch, self.batches = epoch, [batch[self.rank::self.world_size] for batch in padded]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        return iter([[(self.epoch, index) for index in batch] for batch in self.batches])

    def __len__(self) -> int:
        return len(self.batches)


# Batches each worker process prepares ahead (torch's default is 2): a strong augmentation's time varies from batch
# to batch, and a deeper queue absorbs a slow one.
PREFETCH_BATCHES = 4


def make_loader(dataset, *, collate: Callable, workers: int, device, batch_size: int | None = None,
                batch_sampler: EpochBatches | None = None, seed: int = 0):
    """A torch DataLoader over ``dataset`` (in order by ``batch_size``, or by ``batch_sampler``) whose ``workers``
    processes persist across passes, prefetch, and on CUDA put batches in page-locked memory for faster copies."""
    import torch
    from torch.utils.data import DataLoader

    on_cuda = getattr(device, "type", str(device).split(":")[0]) == "cuda"
    extra = {"persistent_workers": True, "prefetch_factor": PREFETCH_BATCHES} if workers > 0 else {}
    if batch_sampler is not None:
        return DataLoader(dataset, batch_sampler=batch_sampler, collate_fn=collate, num_workers=workers,
                          pin_memory=on_cuda, generator=torch.Generator().manual_seed(seed), **extra)
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate, num_workers=workers,
                      pin_memory=on_cuda, **extra)


class TimedBatches:
    """Iterates a loader and adds up :attr:`seconds`, the time spent waiting for its next batch: the data-wait
    share of a training step (0 when loading keeps ahead of the device)."""

    def __init__(self, loader) -> None:
        self.loader, self.seconds = loader, 0.0

    def __iter__(self) -> Iterator[Any]:
        import time

        batches = iter(self.loader)
        while True:
            started = time.perf_counter()
            try:
                batch = next(batches)
            except StopIteration:
                return
            self.seconds += time.perf_counter() - started
            yield batch


def to_device(inputs, device):
    """A batch (dict of tensors, :class:`Parts`, or one tensor) on ``device``; non-tensor values stay as they are."""
    if isinstance(inputs, dict):
        return {k: (_moved(v, device) if hasattr(v, "to") else v) for k, v in inputs.items()}
    return _moved(inputs, device)


def _moved(value, device):
    import torch

    if isinstance(value, torch.Tensor):   # a pinned tensor is copied while the device works (else a plain copy)
        return value.to(device, non_blocking=True)
    return value.to(device)


def collect_outputs(forward, dataset, *, collate, batch_size: int, device, num_workers: int = 0, autocast=None,
                    should_stop: Callable[[], bool] | None = None, on_batch: Callable[[int], None] | None = None,
                    loader=None) -> tuple[np.ndarray, np.ndarray] | None:
    """(targets, float32 outputs) of ``forward`` over ``dataset`` in order, under inference mode: the logits of an
    evaluation, the head inputs of a linear probe, the pooled features a recommendation scores. A batch that
    ``collate`` split into :class:`Parts` runs part by part, so no output depends on what else is in the batch.

    ``should_stop`` is asked before each batch; when it says yes, the pass ends and None is returned. ``loader``:
    one :func:`make_loader` built over ``dataset`` before, whose workers persist across passes (an evaluation at
    each epoch's end); else one is built for this pass.
    """
    from contextlib import nullcontext

    import torch

    if loader is None:
        loader = make_loader(dataset, collate=collate, workers=num_workers, device=device, batch_size=batch_size)
    outputs, targets = [], []
    with torch.inference_mode():
        for inputs, target in loader:
            if should_stop is not None and should_stop():
                return None
            with autocast() if autocast else nullcontext():
                out = run_forward(forward, to_device(inputs, device))
            outputs.append(out.float().cpu().numpy())
            targets.append(target.numpy())
            if on_batch is not None:
                on_batch(len(out))
    return np.concatenate(targets), np.concatenate(outputs)
