"""Running an exported model with onnxruntime, inside zoo: the session, the forward pass over a collated batch, and
:class:`OnnxClassifier`, which `zoo bench`, `zoo predict` (and the server) use in place of a torch classifier."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from zoo.errors import InvalidInputError

EXPORT_RECORD = "zoo_export.json"
MODEL_FILE = "model.onnx"
# onnxruntime's element types, as numpy names.
ORT_TYPES = {"tensor(float)": "float32", "tensor(int64)": "int64", "tensor(int32)": "int32",
              "tensor(double)": "float64", "tensor(float16)": "float16", "tensor(bool)": "bool"}


def is_export_dir(path: str | Path) -> bool:
    """Whether ``path`` is a folder `zoo export` wrote."""
    path = Path(path)
    return (path / EXPORT_RECORD).is_file() and (path / MODEL_FILE).is_file()


def read_export_record(directory: str | Path) -> dict[str, Any]:
    """zoo_export.json of an export folder.

    Raises:
        zoo.errors.InvalidInputError: not an export folder, or a record that does not parse.
    """
    path = Path(directory) / EXPORT_RECORD
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        raise InvalidInputError(f"{directory}: not an export folder (no {EXPORT_RECORD}); make one with "
                                "zoo export RUN") from None
    except (OSError, ValueError) as exc:
        raise InvalidInputError(f"{path}: cannot be read ({exc})") from None
    if not isinstance(record, dict) or "task" not in record or "labels" not in record:
        raise InvalidInputError(f"{path}: not a zoo export record (no task or labels)")
    return record


def providers_for(device: str) -> list[str]:
    """onnxruntime's execution providers for ``device`` ("cpu" or "cuda").

    Raises:
        zoo.errors.InvalidInputError: CUDA asked for, and this onnxruntime has no CUDA provider.
    """
    import onnxruntime

    if device.startswith("cuda"):
        if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
            raise InvalidInputError("--device cuda: this onnxruntime has no CUDA provider; install onnxruntime-gpu "
                                    "in its place, or use --device cpu")
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def open_session(path: str | Path, *, device: str = "cpu", threads: int | None = None):
    """An onnxruntime session for the model at ``path``, with ``threads`` intra-op threads (default: as many as
    torch uses here, so the two are compared on the same cores), all graph optimisations on."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads or _torch_threads()
    options.log_severity_level = 3     # errors only: the quantized graphs' fusion notices are not the user's concern
    try:
        return onnxruntime.InferenceSession(str(path), sess_options=options, providers=providers_for(device))
    except InvalidInputError:
        raise
    except Exception as exc:  # onnxruntime raises its own exception types (Fail, InvalidGraph, ...)
        raise InvalidInputError(f"{path}: onnxruntime cannot load this model ({str(exc).splitlines()[0][:200]})")\
            from exc


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def ort_forward(session) -> Callable[[dict[str, Any]], Any]:
    """The logits (a float32 torch tensor) of ``session`` on a collated batch: the inputs the model declares,
    in the element types it declares."""
    import numpy as np
    import torch

    declared = {item.name: ORT_TYPES.get(item.type, "float32") for item in session.get_inputs()}

    def forward(batch: dict[str, Any]):
        feed = {}
        for name, dtype in declared.items():
            if name not in batch:
                raise InvalidInputError(f"the exported model takes {name!r}, which the preprocessing did not give")
            value = batch[name]
            value = value.detach().cpu().numpy() if hasattr(value, "detach") else np.asarray(value)
            feed[name] = value.astype(dtype, copy=False)
        return torch.from_numpy(np.ascontiguousarray(session.run(None, feed)[0], dtype=np.float32))

    return forward


class OnnxClassifier:
    """An export folder as zoo's commands see a classifier: the family's preprocessing (from the files beside the
    model, no weights) and onnxruntime's forward pass. It predicts, is benchmarked and is evaluated; it does not
    train or save."""

    runtime = "onnxruntime"

    def __init__(self, directory: str | Path, *, families, device: str = "cpu", threads: int | None = None) -> None:
        import torch

        self.directory = Path(directory)
        self.record = read_export_record(self.directory)
        family = families.get(self.record.get("family", ""))
        if family is None:
            raise InvalidInputError(f"{directory}: exported from a {self.record.get('family')!r} model, a family no "
                                    "loaded plugin provides (see zoo plugins)")
        self.preprocessing = family.load_preprocessing(self.directory)
        self.task, self.labels = self.record["task"], list(self.record["labels"])
        self.multi_label = bool(self.record.get("multi_label", False))
        self.device = device
        self.session = open_session(self.directory / MODEL_FILE, device=device, threads=threads)
        self._forward = ort_forward(self.session)
        self.model = torch.nn.Module()   # holds nothing: the weights live in the ONNX file

    # What the commands read of a classifier, from the preprocessing.
    @property
    def sample_rate(self) -> int | None:
        return self.preprocessing.sample_rate

    @property
    def image_size(self) -> int | None:
        return self.preprocessing.image_size

    @property
    def max_length(self) -> int | None:
        return self.preprocessing.max_length

    @max_length.setter
    def max_length(self, value: int | None) -> None:
        self.preprocessing.max_length = value

    @property
    def num_labels(self) -> int:
        return len(self.labels)

    def preprocess(self, example: Any, *, train: bool = False) -> dict[str, Any]:
        return self.preprocessing.preprocess(example, train=False)

    def collate(self, items):
        return self.preprocessing.collate(items)

    def batch_key(self, item: dict[str, Any]):
        return self.preprocessing.batch_key(item)

    def forward(self, batch: dict[str, Any]):
        return self._forward(batch)

    def parameter_count(self) -> int:
        """The number of weights stored in the ONNX model (int8 ones included)."""
        import onnx

        model = onnx.load(str(self.directory / MODEL_FILE), load_external_data=False)
        return sum(_numel(tensor.dims) for tensor in model.graph.initializer)

    def size_on_disk_mb(self) -> float:
        return model_size_mb(self.directory)


def model_size_mb(directory: str | Path) -> float:
    """The size of an export's ONNX model, with any external-data side file."""
    directory = Path(directory)
    files = [directory / MODEL_FILE, *directory.glob(f"{MODEL_FILE}.data"), *directory.glob("model.onnx_data")]
    return round(sum(path.stat().st_size for path in files if path.is_file()) / 2**20, 3)


def _numel(dims) -> int:
    count = 1
    for dim in dims:
        count *= int(dim)
    return count
