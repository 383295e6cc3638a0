"""The contract between the core and a model family.

A *family* (provided by a plugin) turns a :class:`~zoo.registry.BackboneSpec` into a :class:`Classifier`: a
backbone with its weights, a fresh head for N labels, the preprocessing and collate function, pooled features,
the parameter groups for layer-wise learning-rate decay and the LoRA target modules. A classifier saves itself in
the family's native format, so the result loads with the family's own library and no zoo installed.

The core calls only what is declared here; it never imports a family's library. Heavy imports (torch and the
family's library) belong inside the methods, so that listing plugins stays fast.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar

from zoo.errors import PluginError
from zoo.tasks import TASKS

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from zoo.registry import BackboneSpec


@dataclass
class Architecture:
    """A backbone built without pretrained weights, with an example input at the spec's default size.

    Used to check the registry's facts (parameters, FLOPs) against the real network and to time it.
    """

    model: torch.nn.Module
    example_inputs: dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass
class LinearHead:
    """The head as one affine map of the head inputs: ``logits = head_inputs[:, columns] @ weight.T + bias``.

    The linear strategy's solver fits ``weight`` (labels, in_features) and ``bias`` (labels,) on cached head inputs
    and hands them to ``write``, which puts them into the model so that :meth:`Classifier.head_logits` and the
    saved native model compute exactly that map.
    """

    in_features: int                                   # the width of ``head_inputs[:, columns]``
    write: Callable[[torch.Tensor, torch.Tensor], None]  # (weight, bias) -> None, into the model's parameters
    columns: slice = field(default_factory=lambda: slice(None))   # the part of the head inputs read (default: all)
    # The pooled representation those columns hold, as the run records it ("native": the family's own head input).
    # ``write`` also makes the model pool that way, in ``forward``, ``head_logits`` and the saved model.
    pooling: str = "native"
    # Whether the family's own library, loading the saved model, computes this head. When not, the saved model
    # records the pooling and loads with zoo (`zoo predict`, zoo.api), and ``load_note`` says how to reproduce it
    # with the library alone; the run record and the model card repeat it.
    native: bool = True
    load_note: str = ""


@dataclass
class ExportGraph:
    """What a classifier hands the ONNX exporter (:meth:`Classifier.export_graph`).

    ``module(*inputs.values())`` returns the logits of ``forward(inputs)``; the exported model's inputs are named
    and ordered as ``inputs``, its one output is ``logits``, and ``dynamic_axes`` names the axes that vary (the
    batch, and the sequence or time axis where the model takes any length).
    """

    module: torch.nn.Module
    inputs: dict[str, torch.Tensor]
    dynamic_axes: dict[str, dict[int, str]]


@dataclass
class AttributionSpace:
    """Where `zoo explain` computes a classifier's attributions for one example, and how they map back to what a
    person sees (:meth:`Classifier.attribution_space`). Every tensor is for the example collated alone (batch 1).

    The attributed tensor is ``batch[input]``, or, where that input is not differentiable (token ids), the output
    of ``layer`` (the token embeddings) for gradient methods; occlusion and SHAP always replace parts of
    ``batch[input]`` by ``baseline``. Attributions are summed per *unit* (a word, an image region, a stretch of
    time): ``units`` gives the unit of each element of ``batch[input]`` (-1: never attributed, as special tokens
    and padding), and a layer's output is read with its leading axes matching ``units``.
    """

    input: str                              # the batch input that is perturbed (and attributed when no layer)
    baseline: torch.Tensor                  # that input with nothing in it: pad tokens, a mean-grey image,
                                            # silence's features (noise, for a model deaf to loudness)
    units: torch.Tensor                     # long, shape of batch[input]: each element's unit, or -1
    names: list[str]                        # unit i as a person reads it: the word, "0.30-0.40 s", "row 2, col 5"
    spans: list[tuple[float, ...]]          # where unit i is: (first, end) characters of the text; (start, end)
                                            # seconds of the clip; (top, left, bottom, right) pixels of the view
    layer: torch.nn.Module | None = None    # gradient methods attribute at this module's output
    # What the attributions are drawn on: the text; the image as the model saw it (H, W, 3 uint8 array); the clip
    # (1-D float array at ``sample_rate``).
    view: Any = None
    sample_rate: int | None = None
    # The axes of ``batch[input]`` (batch axis included) that map onto the view's pixels, the rest summed: an
    # image's (2, 3) of (batch, channel, height, width); empty where the view is drawn unit by unit.
    view_axes: tuple[int, ...] = ()


def word_units(word_ids: Sequence[int | None], word_spans: Mapping[int, tuple[int, int]],
               text: str) -> tuple[list[int], list[str], list[tuple[float, ...]]]:
    """Units for text: the tokens of one word share a unit. ``word_ids`` gives each token's word (None for special
    tokens), as a fast tokenizer's ``word_ids()`` does, and ``word_spans`` each word's (first, end) characters.
    Returns each token's unit (-1 for special tokens), the words and their character spans, in reading order."""
    order: dict[int, int] = {}
    for word in word_ids:
        if word is not None and word not in order:
            order[word] = len(order)
    units = [-1 if word is None else order[word] for word in word_ids]
    spans = [tuple(float(c) for c in word_spans[word]) for word in order]
    names = [text[int(start):int(end)] for start, end in spans]
    return units, names, spans


def time_units(length: int, per_second: float, *, window_s: float = 0.1, max_units: int = 100,
               used: int | None = None) -> tuple[list[int], list[str], list[tuple[float, ...]]]:
    """Units for a time axis of ``length`` positions at ``per_second`` positions a second (samples, or feature
    frames): windows of ``window_s`` seconds, widened so that there are at most ``max_units``. Positions from
    ``used`` on (padding past the clip) belong to no unit. Returns each position's unit (-1: none), the windows'
    names ("0.30-0.40 s") and (start, end) seconds."""
    import math

    used = length if used is None else min(used, length)
    seconds = used / per_second
    window = max(window_s, seconds / max_units)
    step = max(1, round(window * per_second))
    count = max(1, math.ceil(used / step))
    units = [min(i // step, count - 1) if i < used else -1 for i in range(length)]
    spans = [(i * step / per_second, min((i + 1) * step, used) / per_second) for i in range(count)]
    return units, [f"{start:.2f}-{end:.2f} s" for start, end in spans], spans


def grid_units(height: int, width: int, *, cells: int = 8) -> tuple[list[list[int]], list[str],
                                                                    list[tuple[float, ...]]]:
    """Units for an image: a ``cells`` × ``cells`` grid of regions over ``height`` × ``width`` pixels. Returns each
    pixel's unit (rows of ids), the regions' names ("row 2, col 5" counted from the top left, from 1) and
    (top, left, bottom, right) pixel boxes."""
    import math

    rows, cols = min(cells, height), min(cells, width)
    tall, wide = math.ceil(height / rows), math.ceil(width / cols)
    units = [[(y // tall) * cols + x // wide for x in range(width)] for y in range(height)]
    names, spans = [], []
    for r in range(rows):
        for c in range(cols):
            names.append(f"row {r + 1}, col {c + 1}")
            spans.append((float(r * tall), float(c * wide), float(min((r + 1) * tall, height)),
                          float(min((c + 1) * wide, width))))
    return units, names, spans


@dataclass(frozen=True)
class FetchedSource:
    """Where :meth:`Family.fetch_source` put a backbone's files, and which version of them it holds."""

    path: Path                 # the local folder (or file) holding the backbone's files
    commit: str | None = None  # what identifies the version read (a checksum, a release tag), recorded by zoo fetch


class Classifier(ABC):
    """A backbone with a classification head, ready to train, evaluate, predict and save."""

    task: str
    labels: list[str]
    multi_label: bool = False
    model: torch.nn.Module
    # Training-time augmentation preset the engine sets: "none", "light" or "strong". Families apply their own
    # (image transforms); audio waveforms are augmented by the engine before `preprocess`.
    augment: str = "light"
    # Audio classifiers: the sample rate their preprocessing expects (the engine resamples to it).
    sample_rate: int | None = None
    # Image classifiers: the side of the square input their preprocessing produces (recorded by the engine as the
    # image size used); None where inputs are not images.
    image_size: int | None = None
    # Part of the key of cached head inputs (the linear strategy's feature cache): change it when what
    # :meth:`head_inputs` returns changes, so that features cached by an earlier version are computed again.
    head_inputs_version: str = "1"
    # Text classifiers: the most tokens `preprocess` keeps. The engine sets it (`zoo adapt --max-length`, the
    # sequence length `zoo bench` times) before preprocessing; None: the backbone's own limit. A classifier whose
    # inputs have no such limit ignores it.
    max_length: int | None = None
    # The values of ``layers`` that :meth:`features` takes (`zoo recommend --data --layers`): "last" is the pooled
    # last layer, ``features(batch)``; a family that can also average every layer's pooling adds "mean" and takes
    # ``features(batch, layers="mean")``. A value left out is answered with ``features(batch)``.
    feature_layers: tuple[str, ...] = ("last",)

    @property
    def channels_last(self) -> bool:
        """Whether the model runs faster with its inputs and weights in channels-last memory format (NHWC), which
        the engine then uses on GPUs. Default: the task's (:attr:`zoo.tasks.Task.channels_last`: image
        classifiers, whose convolutions it speeds up); override to say otherwise."""
        task = TASKS.get(self.task)
        return task is not None and task.channels_last

    @property
    def preprocess_augments(self) -> bool:
        """Whether ``preprocess(example, train=True)`` draws random augmentation at :attr:`augment`, so that an
        example's inputs change from one epoch to the next. Where it does not, ``train=True`` must give exactly
        what ``train=False`` gives (the contract checker compares them), and the engine preprocesses each training
        example once and keeps the items for later epochs, measuring lengths for length grouping from them.
        Default: unless :attr:`augment` is "none"; a family whose preprocessing never draws (tokenisation, a
        feature extractor: the engine augments audio waveforms itself) returns False."""
        return self.augment != "none"

    @abstractmethod
    def preprocess(self, example: Any, *, train: bool = False) -> dict[str, Any]:
        """Turn one raw example (PIL image or path, text string, 1-D float waveform) into model inputs.

        With ``train=True`` the family's augmentation for ``self.augment`` is applied.
        """

    @abstractmethod
    def collate(self, items: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        """Batch preprocessed examples (padding dynamically where the input has a length)."""

    def batch_key(self, item: dict[str, Any]) -> Hashable:
        """Which preprocessed items may share a batch: the core batches together only items with equal keys.

        An example must score the same alone as in any batch, in training, evaluation and prediction alike. Where
        the model ignores padding (an attention mask that every layer honours, including the pooling), return one
        constant, and ``collate`` pads freely. Where something sees the padding (normalisation over a padded time
        axis, an encoder given no mask), items of different lengths must never meet: the default keys an item by
        the shapes of its inputs (:func:`input_shapes`), so ``collate`` never pads. A batch of mixed keys is run
        part by part and its outputs put back in order.
        """
        return input_shapes(item)

    @abstractmethod
    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Logits of shape (batch, len(labels))."""

    @abstractmethod
    def features(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Pooled backbone features of shape (batch, dim): the head's input.

        A family that lists more than "last" in :attr:`feature_layers` also takes ``layers=`` (keyword).
        """

    def head_inputs(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """What the head consumes, computed by the backbone, as a (batch, dim) tensor that can be cached.

        With the backbone frozen (linear probing), ``head_logits(head_inputs(batch)) == forward(batch)``, so the
        head can be trained on cached head inputs and the model saved natively. Default: :meth:`features`.
        """
        return self.features(batch)

    def head_logits(self, head_inputs: torch.Tensor) -> torch.Tensor:
        """Logits from cached :meth:`head_inputs`, running only the head."""
        raise NotImplementedError(f"{type(self).__name__} does not support training on cached features")

    @abstractmethod
    def head_parameter_names(self) -> list[str]:
        """Names (as in ``model.named_parameters()``) of the freshly initialised head."""

    def linear_head(self) -> LinearHead | None:
        """The head as one affine map of the head inputs, for the linear strategy's solver; None when it is not
        one (a hidden layer, a norm or a non-linearity), and the linear strategy then trains it epoch by epoch.

        Default: the head is one ``torch.nn.Linear`` (weight and bias) that reads all of the head inputs, as in
        timm models. Override when the head reads part of the head inputs or is several affine layers in a row.
        """
        import torch

        names = set(self.head_parameter_names())
        owners = {name.rsplit(".", 1)[0] if "." in name else "" for name in names}
        if len(owners) != 1:
            return None
        (owner,) = owners
        layer = self.model.get_submodule(owner)
        if not isinstance(layer, torch.nn.Linear) or layer.bias is None or \
                names != {f"{owner}.weight", f"{owner}.bias"}:
            return None
        return LinearHead(in_features=layer.in_features, write=lambda weight, bias: copy_linear(layer, weight, bias))

    def linear_heads(self) -> list[LinearHead]:
        """Every pooled representation the linear strategy may probe, each with the head that reads it.

        The solver fits a head on each and keeps the best on the validation split (a tie goes to the earlier
        one, so list the native head first), then calls its ``write``. Offer several where a frozen encoder is
        often better probed another way than its native head reads it (the mean over tokens and layers rather
        than the first token); the head inputs then hold each representation in its own columns. Default: the
        one :meth:`linear_head`, or none (the head is then trained epoch by epoch).
        """
        head = self.linear_head()
        return [] if head is None else [head]

    @abstractmethod
    def parameter_groups(self) -> list[list[str]]:
        """Parameter names grouped from the input end to the output end, for layer-wise learning-rate decay."""

    @abstractmethod
    def lora_targets(self) -> list[str]:
        """Names of the modules a LoRA adapter should wrap."""

    @abstractmethod
    def save(self, directory: str | Path) -> list[Path]:
        """Write the model, its preprocessing config and label names in the family's native format.

        Returns the files written. Weights are written as safetensors only.
        """

    # --- explain (zoo explain) -----------------------------------------------------------------------------------

    def attribution_space(self, example: Any, batch: dict[str, torch.Tensor]) -> AttributionSpace:
        """What `zoo explain` attributes to for one raw ``example`` (as :meth:`preprocess` takes it), given its
        preprocessed ``batch`` of one (on the model's device): the input (or layer), the baseline, the units
        (words, regions, stretches of time) and the view they are drawn on. :func:`word_units`,
        :func:`time_units` and :func:`grid_units` build the units.

        Default: not supported, with a message naming the plugin.
        """
        raise PluginError(type(self).__module__.split(".")[0],
                          f"{type(self).__name__} does not implement attribution_space, so zoo cannot explain "
                          "its predictions")

    # --- export (zoo export) -------------------------------------------------------------------------------------

    def export_graph(self, batch: dict[str, torch.Tensor]) -> ExportGraph:
        """The module and example inputs `zoo export` traces, from a collated ``batch`` of at least two examples.

        Default: :meth:`forward` over the batch's inputs, in the batch's order, with only the batch axis dynamic.
        Override to free more axes (a text model's sequence, an audio model's time) or to export a leaner module
        that computes the same logits.
        """
        names = list(batch)
        return ExportGraph(module=forward_module(self, names), inputs=dict(batch),
                           dynamic_axes={name: {0: "batch"} for name in names})

    def int8_method(self) -> tuple[str, str]:
        """Which int8 quantization suits this model, ``"dynamic"`` or ``"static"``, and why (`zoo export --quantize
        auto` says it). Default: by where the weights are. Dynamic quantization covers matrix multiplications
        (MatMul, Gemm) and computes activation scales per batch: right for transformers. Convolutions need static
        quantization with calibrated activation scales: right where they hold most weights (CNNs).
        """
        import torch.nn as nn

        conv = sum(p.numel() for m in self.model.modules() if isinstance(m, nn.modules.conv._ConvNd)
                   for p in m.parameters(recurse=False))
        linear = sum(p.numel() for m in self.model.modules() if isinstance(m, nn.Linear)
                     for p in m.parameters(recurse=False))
        total = max(conv + linear, 1)
        if conv > linear:
            return "static", (f"{100 * conv / total:.0f}% of the weights of its convolutions and matrix "
                              "multiplications are in convolutions, which static quantization (activation scales "
                              "calibrated on training examples) covers and dynamic does not")
        return "dynamic", (f"{100 * linear / total:.0f}% of the weights of its convolutions and matrix "
                           "multiplications are in matrix multiplications, which dynamic quantization covers "
                           "(activation scales computed per batch, no calibration)")

    def export_files(self, directory: str | Path) -> list[Path]:
        """Write beside an exported model what running it needs but the weights: the preprocessing config
        (tokenizer, feature extractor, image transform) and the label names, as :meth:`save` writes them.

        Default: :meth:`save` into a scratch folder, and every file it wrote but the weights (``*.safetensors``)
        copied into ``directory``. Returns the files written.
        """
        import shutil
        import tempfile

        directory = Path(directory)
        written = []
        with tempfile.TemporaryDirectory() as scratch:
            for path in self.save(scratch):
                path = Path(path)
                if path.is_file() and path.suffix != ".safetensors":
                    written.append(Path(shutil.copy2(path, directory / path.name)))
        return written

    @property
    def num_labels(self) -> int:
        return len(self.labels)


def forward_module(classifier: Classifier, names: Sequence[str],
                   call: Callable[[dict[str, Any]], Any] | None = None) -> torch.nn.Module:
    """``classifier.forward`` (or ``call``) as a module whose ``forward`` takes the inputs positionally, in the order
    of ``names``, and says so in its signature (the exporters read the input names from it)."""
    import inspect

    import torch

    run = call or classifier.forward

    class ForwardByName(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = classifier.model       # registered, so that the exporter sees its parameters

        def forward(self, *tensors):
            return run(dict(zip(names, tensors, strict=True)))

    ForwardByName.forward.__signature__ = inspect.Signature(
        [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD),
         *(inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD) for name in names)])
    return ForwardByName()


def input_shapes(item: Mapping[str, Any]) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """The shape of each value of a preprocessed item, by name: equal for items that batch without padding."""
    import numpy as np

    return tuple(sorted((name, tuple(np.shape(value))) for name, value in item.items()))


class Family(ABC):
    """A plugin's adapter for one family of backbones (timm, transformers, ...)."""

    name: ClassVar[str]                 # unique across plugins; the registry's `family` field refers to it
    tasks: ClassVar[tuple[str, ...]]    # task types this family can build classifiers for
    library: ClassVar[str] = ""         # the library that loads saved models (model cards, run records)
    # Whether load_classifier takes ``image_size`` (`zoo adapt --image-size`): the backbone built, preprocessed and
    # saved for square inputs of that side. Default: no; the option is then refused before a run starts.
    takes_image_size: ClassVar[bool] = False
    # Peak learning rates (AdamW, cosine schedule, batch 32) this family's backbones prefer for the `full` and `lora`
    # strategies, used when `--lr` is not given and recorded as the family's default; a strategy left out takes the
    # core's (zoo.engine.config.DEFAULT_LR). Default: none, the core's for both.
    preferred_lr: ClassVar[Mapping[str, float]] = MappingProxyType({})
    # Source schemes this family resolves and downloads itself, for weights that live outside the Hub: a registry
    # source "torchvision:resnet34" or "url:https://...#sha256=..." names its scheme before the first colon.
    # `zoo fetch` and the offline guard call :meth:`fetch_source` for them; a source whose scheme no family claims
    # is refused when the registry is read. Default: none (Hub repo ids and ``local-dir:`` need no claim).
    source_schemes: ClassVar[tuple[str, ...]] = ()

    @abstractmethod
    def load_classifier(self, spec: BackboneSpec, *, task: str, labels: Sequence[str],
                        multi_label: bool = False, pretrained: bool = True,
                        trust_remote_code: bool = False, image_size: int | None = None) -> Classifier:
        """Load the backbone of ``spec`` (with weights unless ``pretrained=False``) and attach a fresh head.

        Weights come from the spec's Hub repo (through huggingface_hub, honouring ``HF_ENDPOINT`` and
        ``HF_HUB_OFFLINE``) at its pinned revision, or from a ``local-dir:`` path.

        ``image_size`` is given only to a family that sets :attr:`takes_image_size` (a family that does not can
        leave the argument out): the classifier then trains, evaluates and saves at N×N pixels, and its saved
        preprocessing says so, so the family's own library loads it at that size.

        Raises:
            zoo.errors.ModelLoadError: with a message that says what to do.
        """

    @abstractmethod
    def load_saved(self, directory: str | Path) -> Classifier:
        """Load a classifier written by :meth:`Classifier.save`."""

    @abstractmethod
    def architecture(self, spec: BackboneSpec, *, task: str, config: dict[str, Any] | None = None,
                     device: str = "meta") -> Architecture:
        """Build the published network of ``spec`` without weights (on ``device``), with an example input.

        ``config`` may give the architecture's hyperparameters when they cannot be fetched.
        """

    def can_load_saved(self, directory: str | Path) -> bool:
        """Whether ``directory`` holds a model this family saved. Default: no."""
        return False

    def load_preprocessing(self, directory: str | Path) -> Classifier:
        """A classifier from the files :meth:`Classifier.export_files` wrote (no weights), whose ``preprocess``,
        ``collate``, ``batch_key``, ``labels``, ``task`` and ``multi_label`` work; its model may be built without
        weights (on the meta device) and is never run. `zoo bench`, `zoo predict` and `zoo serve` use it to feed
        an exported ONNX model.

        Default: not supported, with a message naming the plugin.
        """
        raise PluginError(f"{type(self).__module__.split('.')[0]} ({self.name} family)",
                          f"{type(self).__name__} does not implement load_preprocessing, so its ONNX exports "
                          "cannot be run by zoo (onnxruntime runs them directly)")

    def fetch_source(self, spec: BackboneSpec, *, local_only: bool = False) -> FetchedSource | None:
        """Download the files of a ``spec`` whose source has one of :attr:`source_schemes` into a local cache.

        ``zoo fetch`` calls it to download (``local_only=False``), and the offline guard with ``local_only=True``
        to ask whether the files are already cached: return None then when they are not, without downloading.
        Downloads should check what they read (a checksum), and a second call should reuse the cache.
        ``load_classifier`` reads the files from the same place (``self.fetch_source(spec, local_only=...)``).

        Raises:
            zoo.errors.ModelLoadError: the files could not be fetched, with a message that says what to do.
        """
        raise PluginError(f"{type(self).__module__.split('.')[0]} ({self.name} family)",
                          f"{type(self).__name__} claims source schemes {list(self.source_schemes)} but does not "
                          "implement fetch_source")

    def usage_snippet(self, *, task: str, repo_id: str | None, revision: str | None = None,
                      multi_label: bool = False, example: str = "") -> str:
        """Python code, for the model card, that loads an adapted model with :attr:`library` alone (no zoo) and
        classifies one input.

        Args:
            task: the task type of the model.
            repo_id: the Hub repo the model was pushed to; None for a local run, which the code loads from the
                folder ``PATH``.
            revision: the branch or commit to load, when not the repo's main branch.
            multi_label: whether scores are independent per label (a sigmoid) rather than a distribution.
            example: the input the code classifies (``example.jpg``, a sentence, ``example.wav``), which a person
                replaces with their own.

        Default: one comment naming the library and where to load from.
        """
        return f"# load with {self.library or self.name} from {repo_id or 'PATH'}"

    def onnx_snippet(self, *, task: str, where: str, multi_label: bool = False, example: str = "") -> str:
        """Python code, for an export's card, that runs the exported model with onnxruntime and numpy (no zoo, no
        torch), preprocessing one input with the files beside it, and prints the scores.

        Args:
            task: the task type of the model.
            where: the folder holding ``model.onnx`` and the files :meth:`Classifier.export_files` wrote.
            multi_label: whether scores are independent per label (a sigmoid) rather than a distribution.
            example: the input the code classifies.

        Default: the session and a comment on the inputs, which the plugin's preprocessing gives.
        """
        return ("import onnxruntime\n\n"
                f'session = onnxruntime.InferenceSession("{where}/model.onnx")\n'
                "# inputs: see session.get_inputs(); prepare them as the "
                f"{self.library or self.name} preprocessing in {where} does")


def copy_linear(layer: torch.nn.Linear, weight: torch.Tensor, bias: torch.Tensor) -> None:
    """Write ``weight`` and ``bias`` into ``layer`` in place, on its device and in its dtype."""
    import torch

    with torch.no_grad():
        layer.weight.copy_(weight.to(layer.weight))
        layer.bias.copy_(bias.to(layer.bias))
