"""The engine's GPU-only paths, and its out-of-memory back-off.

Tests marked ``gpu`` need a CUDA device and are skipped without one (tests/conftest.py); ``pytest -m gpu`` runs
only them (benchmarks/gpu_suite.sh does). The back-off is also checked here on a CPU, with the out-of-memory error
raised on purpose, so every machine tests its bookkeeping.
"""

from __future__ import annotations

import json

import pytest
import torch
from conftest import FIXTURE_REGISTRY

from zoo import api
from zoo.engine import trainer as trainer_module
from zoo.engine.config import AdaptConfig
from zoo.engine.trainer import Reporter, Trainer, TrainingSetup
from zoo.errors import DeviceOutOfMemoryError

REGISTRY = [str(FIXTURE_REGISTRY)]


@pytest.fixture(autouse=True)
def fresh_accelerator_state():
    """accelerate keeps its device and mixed precision for the whole process, set by the first Accelerator; each
    test here starts from none, so a CPU test before it cannot put a GPU test on the CPU or in its precision."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)
    yield
    AcceleratorState._reset_state(reset_partial_state=True)


class _Messages(Reporter):
    def __init__(self) -> None:
        self.lines: list[str] = []

    def message(self, text: str) -> None:
        self.lines.append(text)


def _collate(items):
    return torch.stack([x for x, _ in items]), torch.stack([y for _, y in items])


def _fit(tmp_path, model, data, *, device="cpu", fits=lambda size, call: True, batch_size=8, grad_accum=2,
         optimizer="sgd"):
    """One epoch of the engine's loop over ``data`` with ``model``; ``fits(size, call)`` says whether a training
    forward pass of ``size`` examples (the ``call``-th) fits, else it raises CUDA's out-of-memory error."""
    from accelerate import Accelerator

    calls = []

    def forward(inputs):
        if torch.is_grad_enabled():
            calls.append(len(inputs))
            if not fits(len(inputs), len(calls)):
                raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (simulated)")
        return model(inputs)

    model.to(device)
    params = dict(model.named_parameters())
    opt = (torch.optim.SGD(params.values(), lr=0.1) if optimizer == "sgd" else
           torch.optim.AdamW(params.values(), lr=1e-3, fused=device == "cuda"))
    accelerator = Accelerator(cpu=device == "cpu")
    setup = TrainingSetup(forward=forward, trainable=params, train_data=data, val_data=data, collate=_collate,
                          model=model)
    reporter = _Messages()
    config = AdaptConfig(epochs=1, batch_size=batch_size, grad_accum=grad_accum, patience=0,
                         checkpoint_every=10**9, eval_batch_size=16, workers=0)
    trainer = Trainer(setup, config, accelerator=accelerator, optimizer=opt,
                      scheduler=torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0),
                      loss_fn=torch.nn.CrossEntropyLoss(), task="text-cls", label_names=["a", "b", "c"],
                      multi_label=False, run_dir=tmp_path, reporter=reporter)
    progress, _ = trainer.fit(trainer_module.Progress(), None)
    return {k: v.detach().cpu() for k, v in model.state_dict().items()}, progress, reporter.lines, calls


def _linear_task(seed=0):
    from zoo.engine.setup import FeatureDataset  # items by index, or by (epoch, index) as the training loader asks

    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(32, 4, generator=generator)
    return FeatureDataset(x, (x[:, 0] > 0).long() + (x[:, 1] > 0).long())


def _linear():
    torch.manual_seed(0)
    return torch.nn.Linear(4, 3)


def test_out_of_memory_halves_the_micro_batch_and_replays_the_window(tmp_path):
    data = _linear_task()
    reference, progress, _, _ = _fit(tmp_path / "a", _linear(), data)
    assert progress.micro_batch is None and progress.memory_back_offs == 0
    # Batches of 8, two per optimizer step: the second batch of the first window runs out of memory at 8 and
    # at 4 examples, so the window's first batch (already backpropagated) is replayed each time.
    weights, progress, messages, calls = _fit(tmp_path / "b", _linear(), data,
                                              fits=lambda size, call: call == 1 or size <= 2)
    assert calls[:5] == [8, 8, 4, 2, 2]          # batch 1 full; batch 2 fails at 8, then at 4 (batch 1 replayed)
    assert progress.micro_batch == 2 and progress.memory_back_offs == 2
    assert "micro-batch 8 -> 4" in messages[0] and "micro-batch 4 -> 2" in messages[1]
    assert "effective batch unchanged" in messages[1]
    # The same effective batch, so the same training, up to the order of the sums.
    for name, tensor in reference.items():
        torch.testing.assert_close(weights[name], tensor, atol=1e-6, rtol=1e-5)


def test_out_of_memory_at_one_example_is_a_one_line_error(tmp_path):
    with pytest.raises(DeviceOutOfMemoryError) as caught:
        _fit(tmp_path, _linear(), _linear_task(), fits=lambda size, call: False)
    message = str(caught.value)
    assert "\n" not in message and "micro-batch of 1" in message and "Tried to allocate" in message


# --- on a CUDA device -------------------------------------------------------------------------------------------


@pytest.mark.gpu
def test_gpu_training_uses_fused_adamw_bf16_autocast_and_channels_last(hub, datasets, tmp_path, monkeypatch):
    seen: dict[str, object] = {}
    adamw = torch.optim.AdamW

    def recording_adamw(*args, **kwargs):
        seen["fused"] = kwargs.get("fused")
        return adamw(*args, **kwargs)

    def recording_forward(forward, inputs):
        logits = run_forward(forward, inputs)
        if torch.is_grad_enabled() and "logits" not in seen:
            model = getattr(forward, "__self__", None)
            convs = [m.weight for m in model.model.modules() if isinstance(m, torch.nn.Conv2d)] if model else []
            seen.update(logits=(logits.dtype, logits.device.type),
                        channels_last=all(w.is_contiguous(memory_format=torch.channels_last) for w in convs)
                        and bool(convs))
        return logits

    run_forward = trainer_module.run_forward
    monkeypatch.setattr(torch.optim, "AdamW", recording_adamw)
    monkeypatch.setattr(trainer_module, "run_forward", recording_forward)
    run = tmp_path / "run"
    api.adapt("test_resnet.r160_in1k", str(datasets["image-cls"]), output=run, val_fraction=0.25, store=False,
              device="cuda", config=AdaptConfig(strategy="full", epochs=1, batch_size=8, patience=0,
                                                precision="bf16"), registry_files=REGISTRY)
    record = json.loads((run / "zoo_run.json").read_text())
    assert record["precision_used"] == "bf16"
    assert seen["fused"] is True
    assert seen["logits"] == (torch.bfloat16, "cuda")
    assert seen["channels_last"] is True


@pytest.mark.gpu
def test_gpu_out_of_memory_backs_off_to_a_micro_batch_that_fits(tmp_path):
    """A real CUDA out-of-memory error: the process may use its current memory plus about 470 MB; the weights,
    gradients and AdamW state take about 272 MB and each example about 1 MB of activations, so a batch of 512
    cannot fit and one of 64 can."""
    torch.cuda.empty_cache()
    base = torch.cuda.memory_reserved()
    total = torch.cuda.get_device_properties(0).total_memory
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(256, 65536), torch.nn.ReLU(), torch.nn.Linear(65536, 3))
    generator = torch.Generator().manual_seed(0)
    data = [(row, torch.tensor(int(row[0] > 0))) for row in torch.randn(1024, 256, generator=generator)]
    torch.cuda.set_per_process_memory_fraction(min(1.0, (base + 470 * 2**20) / total))
    try:
        weights, progress, messages, _ = _fit(tmp_path, model, data, device="cuda", batch_size=512, grad_accum=1,
                                              optimizer="adamw")
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
        del model
        torch.cuda.empty_cache()
    assert progress.memory_back_offs >= 1 and 1 < progress.micro_batch < 512, messages
    assert messages and "out of memory on cuda" in messages[0]
    assert all(torch.isfinite(tensor).all() for tensor in weights.values())
