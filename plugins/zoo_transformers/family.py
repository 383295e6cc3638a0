"""The transformers family: text (sequence classification) and audio (audio classification) encoders."""

from __future__ import annotations

import re
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from zoo.errors import InvalidInputError, ModelLoadError
from zoo.family import (
    Architecture,
    AttributionSpace,
    Classifier,
    ExportGraph,
    Family,
    LinearHead,
    copy_linear,
    forward_module,
    input_shapes,
    time_units,
    word_units,
)

TEXT_TASK, AUDIO_TASK = "text-cls", "audio-cls"
# Pooled representations the linear strategy probes. Text: the first token (what the native heads read, through
# the pooler where there is one), the mean over the tokens the attention mask keeps, of the last layer or of every
# hidden state (embeddings included) averaged. Audio: the mean over frames (what wav2vec2-style heads compute) of
# the last layer or of every hidden state, which those heads compute natively with `use_weighted_layer_sum` and
# equal layer weights.
FIRST_TOKEN, MEAN_TOKENS, MEAN_TOKENS_LAYERS = "first-token", "mean-tokens", "mean-tokens-layers"
MEAN_FRAMES, MEAN_FRAMES_LAYERS = "mean-frames", "mean-frames-layers"
POOLING_KEY = "zoo_pooling"    # config.json key of a text pooling the native head lacks
TEXT_POOLING_NOTE = ("with transformers alone, load it with AutoModel{for_cls}.from_pretrained, run model.base_model "
                     "with output_hidden_states=True, average the hidden states over the tokens the attention mask "
                     "keeps ({which}), and apply model.classifier to that vector")
# Attention projections LoRA adapts, by the names the supported architectures give them.
_LORA_NAMES = {"query", "value", "q_proj", "v_proj", "q_lin", "v_lin", "query_proj", "value_proj"}
_LAYER_INDEX = re.compile(r"\.(?:layer|layers|block|blocks)\.(\d+)\.")
# How to turn refused pickled weights into what zoo loads (quoted in the error).
CONVERT_TO_SAFETENSORS = ("load the model there with transformers and save it with "
                          "model.save_pretrained(DIR, safe_serialization=True), with its tokenizer or feature "
                          "extractor beside it")


def _auto_class(task: str):
    import transformers

    if task == TEXT_TASK:
        return transformers.AutoModelForSequenceClassification
    if task == AUDIO_TASK:
        return transformers.AutoModelForAudioClassification
    raise InvalidInputError(f"the transformers family handles {TEXT_TASK} and {AUDIO_TASK}, not {task!r}")


def _encoder_prefix(model) -> str | None:
    """Attribute name of the pretrained encoder inside a task model (whisper keeps it as `encoder`)."""
    import torch.nn as nn

    for prefix in (model.base_model_prefix, "encoder"):
        if prefix and isinstance(getattr(model, prefix, None), nn.Module):
            return prefix
    return None


def _encoder(model):
    prefix = _encoder_prefix(model)
    return getattr(model, prefix) if prefix else model


@contextmanager
def _quiet():
    """Silence transformers' per-load reports and progress bars; zoo reports what matters itself."""
    from transformers.utils import logging

    verbosity, bars = logging.get_verbosity(), logging.is_progress_bar_enabled()
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        logging.set_verbosity(verbosity)
        if bars:
            logging.enable_progress_bar()


def _encoder_kwargs(model, batch: dict[str, Any]) -> dict[str, Any]:
    """The batch as the encoder takes it: the task model's own inputs, minus what only the head uses."""
    return {key: value for key, value in batch.items() if key != "labels"}


def _source(spec) -> str:
    return str(spec.local_path) if spec.is_local else spec.source


class TransformersClassifier(Classifier):
    """A transformers encoder with a sequence/audio classification head and its tokenizer or feature extractor."""

    def __init__(self, model, processor, *, task: str, max_length: int | None = None) -> None:
        self.model, self.processor, self.task = model, processor, task
        config = model.config
        self.labels = [config.id2label[i] for i in range(config.num_labels)]
        self.multi_label = config.problem_type == "multi_label_classification"
        self.max_length = max_length
        # A text pooling the native head lacks, chosen by the linear strategy and saved in config.json.
        self.pooling: str | None = getattr(config, POOLING_KEY, None) if task == TEXT_TASK else None

    @property
    def sample_rate(self) -> int | None:
        return getattr(self.processor, "sampling_rate", None) if self.task == AUDIO_TASK else None

    # --- data ---------------------------------------------------------------------------------------------------

    # Tokenisation and feature extraction draw nothing; audio waveforms are augmented by the engine before them.
    preprocess_augments = False

    def preprocess(self, example: Any, *, train: bool = False) -> dict[str, Any]:
        if self.task == TEXT_TASK:
            if not isinstance(example, str):
                raise InvalidInputError(f"expected a text string, got {type(example).__name__}")
            # Never past what the tokenizer (and so the position embeddings) allow.
            limit = min(self.max_length or self.processor.model_max_length, self.processor.model_max_length)
            return dict(self.processor(example, truncation=True, max_length=min(limit, 10**6)))
        import numpy as np

        if isinstance(example, (str, Path)):
            from zoo.audio import read_audio

            example = read_audio(example, sample_rate=self.sample_rate)
        waveform = np.asarray(example, dtype=np.float32)
        if waveform.ndim != 1:
            raise InvalidInputError(f"expected a mono waveform (1-D), got shape {waveform.shape}")
        features = self.processor(waveform, sampling_rate=self.sample_rate)
        return {key: value[0] for key, value in features.items()}

    def collate(self, items: Sequence[dict[str, Any]]) -> dict[str, Any]:
        # Dynamic padding: pad to the longest item of this batch, not to the model's maximum.
        return dict(self.processor.pad(list(items), return_tensors="pt"))

    def batch_key(self, item: dict[str, Any]) -> Any:
        # Padding is harmless only where the model masks it out everywhere. Audio encoders whose feature encoder
        # normalises over time (feat_extract_norm="group": wav2vec2-base, HuBERT-base) see the padded zeros
        # even with a mask, and their processors return none; so do encoders given no mask at all. Their items
        # batch only with items of the same length, which need no padding.
        return None if self._pads_exactly() else input_shapes(item)

    def _pads_exactly(self) -> bool:
        if self.task == TEXT_TASK:
            return "attention_mask" in self.processor.model_input_names
        return (getattr(self.processor, "return_attention_mask", False) and self._masks_frames()
                and getattr(self.model.config, "feat_extract_norm", None) != "group")

    def attribution_space(self, example: Any, batch: dict[str, Any]) -> AttributionSpace:
        """Text: the token embeddings (gradient methods) or the token ids, against pad tokens with the special
        tokens kept, summed per word. Audio: the waveform, against noise as loud as the clip, or its spectrogram
        frames, against the features of silence; summed per tenth of a second."""
        import torch

        if self.task == TEXT_TASK:
            return self._text_attribution(example, batch)
        import numpy as np

        name = next(key for key in ("input_values", "input_features") if key in batch)
        values = batch[name]
        waveform = np.asarray(example, dtype=np.float32)
        if values.ndim == 2:
            # A waveform model's baseline is noise as loud as the clip, not silence. Its processor scales the clip
            # to unit variance, or its feature encoder normalises after a convolution without bias (wav2vec2,
            # HuBERT), so it scores a clip the same at any loudness: along the straight path from silence the score
            # changes only within a hair of silence, closer than integrated gradients' first step, and the
            # attributions miss most of the change (on the test models a 60% to 680% completeness error at 64
            # steps, still up to 90% at 256). Seeded, so that explanations repeat.
            loudness = float(np.sqrt(np.mean(np.square(waveform)))) or 1.0
            empty = np.random.default_rng(0).normal(0.0, loudness, waveform.shape).astype(np.float32)
        else:
            empty = np.zeros_like(waveform)   # spectrogram frames: silence's features are a floor, not a jump
        nothing = self.preprocess(empty)[name]
        baseline = torch.as_tensor(np.asarray(nothing), dtype=values.dtype, device=values.device)[None]
        rate = self.sample_rate
        if values.ndim == 2:   # a waveform: one position per sample
            per_second, time_axis = float(rate), 1
        else:                  # spectrogram frames: (mel, frames) as whisper's, or (frames, mel) as AST's
            bins = getattr(self.processor, "feature_size", None)
            time_axis = 2 if values.shape[1] == bins else 1
            per_second = rate / getattr(self.processor, "hop_length", rate // 100)   # 10 ms frames by default
        length = values.shape[time_axis]
        used = min(length, int(np.ceil(len(waveform) / rate * per_second)))
        positions, names, spans = time_units(length, per_second, used=used)
        shape = [1] * values.ndim
        shape[time_axis] = length
        units = torch.tensor(positions, device=values.device).view(shape).expand_as(values)
        return AttributionSpace(input=name, baseline=baseline, units=units, names=names, spans=spans,
                                view=waveform, sample_rate=rate)

    def _text_attribution(self, text: str, batch: dict[str, Any]) -> AttributionSpace:
        import torch

        ids = batch["input_ids"]
        tokenizer = self.processor
        special = set(tokenizer.all_special_ids)
        if getattr(tokenizer, "is_fast", False):
            limit = ids.shape[1]
            encoded = tokenizer(text, truncation=True, max_length=limit)
            word_ids = encoded.word_ids()
            spans = {word: tuple(encoded.word_to_chars(word)) for word in set(word_ids) if word is not None}
            positions, names, unit_spans = word_units(word_ids, spans, text)
        else:   # no word boundaries known: each token is its own unit
            tokens = tokenizer.convert_ids_to_tokens(ids[0].tolist())
            positions = [-1 if int(t) in special else i for i, t in enumerate(ids[0].tolist())]
            kept = [i for i in positions if i >= 0]
            renumber = {old: new for new, old in enumerate(kept)}
            positions = [renumber.get(i, -1) for i in positions]
            names, unit_spans, cursor = [], [], 0
            for i in kept:   # each token found in the text in order, its marks of a word piece dropped
                piece = tokens[i].removeprefix("##").lstrip("\u2581\u0120")
                start = text.find(piece, cursor) if piece else -1
                start, end = (start, start + len(piece)) if start >= 0 else (cursor, cursor)
                names.append(text[start:end] or tokens[i])
                unit_spans.append((float(start), float(end)))
                cursor = end
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.unk_token_id or 0)
        keep = torch.tensor([int(t) in special for t in ids[0].tolist()], device=ids.device)[None]
        baseline = torch.where(keep, ids, torch.full_like(ids, pad))
        units = torch.tensor(positions, device=ids.device)[None]
        return AttributionSpace(input="input_ids", baseline=baseline, units=units, names=names, spans=unit_spans,
                                layer=self.model.get_input_embeddings(), view=text)

    # --- model --------------------------------------------------------------------------------------------------

    def forward(self, batch: dict[str, Any]):
        if self.pooling not in (None, FIRST_TOKEN):   # a pooling the task model lacks: the encoder, then the head
            return self.head_logits(self.head_inputs(batch))
        return self.model(**batch).logits

    feature_layers = ("last", "mean")

    def features(self, batch: dict[str, Any], *, layers: str = "last"):
        """Mean-pooled hidden states over tokens or frames; ``layers="mean"`` averages every layer's pooling."""
        import torch

        outputs = self.model(**batch, output_hidden_states=True)
        hidden_states = outputs.hidden_states[1:] if layers == "mean" else outputs.hidden_states[-1:]
        return torch.stack([self._mean(hidden, batch) for hidden in hidden_states]).mean(0)

    def _mean(self, hidden, batch: dict[str, Any]):
        """``hidden`` averaged over the tokens or frames that hold input, as the model counts them."""
        import torch

        mask = batch.get("attention_mask")
        if mask is not None and mask.shape[1] != hidden.shape[1]:
            # Audio encoders downsample the waveform: the frames that hold audio, as the model counts them.
            if self._masks_frames():
                mask = self.model._get_feature_vector_attention_mask(hidden.shape[1], mask)
            else:
                mask = torch.nn.functional.interpolate(mask[:, None].float(), size=hidden.shape[1])[:, 0]
        if mask is None:
            return hidden.mean(dim=1)
        weights = mask.to(hidden.dtype).unsqueeze(-1)
        return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)

    # --- training the head on cached inputs (linear probing) ----------------------------------------------------
    #
    # The heads of the supported task models read little of the encoder's output: text heads read the first
    # token (directly, or through a pooler), audio heads project the frames and average them (which equals
    # projecting their average, since the projection is affine), AST's head reads the pooled output. So the cached
    # head inputs are those reduced outputs, one block of columns each (`_blocks`): the first token or the frame
    # average, the pooler output when the encoder has one, and the other poolings the linear strategy probes.
    # `head_logits` replays the block the current pooling reads through the model's own forward in place of the
    # encoder.

    head_inputs_version = "2"

    def _blocks(self) -> list[str]:
        """The head inputs' blocks, each ``hidden_size`` columns wide, in order."""
        pooler = getattr(_encoder(self.model), "pooler", None) is not None
        if self.task == TEXT_TASK:
            return [FIRST_TOKEN, *(["pooler"] if pooler else []), MEAN_TOKENS, MEAN_TOKENS_LAYERS]
        return [MEAN_FRAMES, *(["pooler"] if pooler else []),
                *([MEAN_FRAMES_LAYERS] if self._weighs_layers() else [])]

    def _columns(self, block: str) -> slice:
        hidden, index = self._hidden_size(), self._blocks().index(block)
        return slice(index * hidden, (index + 1) * hidden)

    def head_inputs(self, batch: dict[str, Any]):
        import torch

        outputs = _encoder(self.model)(**_encoder_kwargs(self.model, batch), output_hidden_states=True)
        hidden, layers = outputs[0], outputs.hidden_states
        if self.task == TEXT_TASK:
            computed = {FIRST_TOKEN: hidden[:, 0], MEAN_TOKENS: self._mean(hidden, batch),
                        MEAN_TOKENS_LAYERS: torch.stack([self._mean(layer, batch) for layer in layers]).mean(0)}
        else:
            # Averaged over the frames the head averages: the frames that hold audio where it is given the mask.
            frames = batch if self._uses_frame_mask() else {}
            computed = {MEAN_FRAMES: self._mean(hidden, frames)}
            if self._weighs_layers():
                computed[MEAN_FRAMES_LAYERS] = torch.stack([self._mean(layer, frames) for layer in layers]).mean(0)
        computed["pooler"] = getattr(outputs, "pooler_output", None)
        return torch.cat([computed[block] for block in self._blocks()], dim=-1)

    def head_logits(self, head_inputs):
        from transformers.modeling_outputs import BaseModelOutput, BaseModelOutputWithPooling

        blocks = self._blocks()
        config = self.model.config
        # Set by a solved mean-frames-layers head: the replayed frames are already the layers' mean (with the equal
        # weights the solver wrote), so the head's own weighted sum is switched off while they are replayed.
        weighted = bool(getattr(config, "use_weighted_layer_sum", False))
        if self.task == TEXT_TASK and self.pooling not in (None, FIRST_TOKEN):
            # The chosen pooling stands in for both what the head may read: the first token and the pooler output.
            vector = head_inputs[:, self._columns(self.pooling)]
            sequence, pooled = vector[:, None], (vector if "pooler" in blocks else None)
        else:
            sequence = head_inputs[:, self._columns(MEAN_FRAMES_LAYERS if weighted else blocks[0])][:, None]
            pooled = head_inputs[:, self._columns("pooler")] if "pooler" in blocks else None
        replay = (BaseModelOutput(last_hidden_state=sequence) if pooled is None else
                  BaseModelOutputWithPooling(last_hidden_state=sequence, pooler_output=pooled))
        encoder = _encoder(self.model)
        encoder.forward = lambda *args, **kwargs: replay  # the encoder's output is the cached one
        if weighted:
            config.use_weighted_layer_sum = False
        try:
            return self.model(**self._placeholder_inputs(head_inputs)).logits
        finally:
            del encoder.forward
            if weighted:
                config.use_weighted_layer_sum = True

    def _hidden_size(self) -> int:
        config = self.model.config
        return getattr(config, "hidden_size", None) or config.d_model

    def _masks_frames(self) -> bool:
        # Models that turn the sample mask into a frame mask (wav2vec2 and its kin) and pool only those frames.
        return hasattr(self.model, "_get_feature_vector_attention_mask")

    def _uses_frame_mask(self) -> bool:
        # Models that pass the sample mask to their head average only the frames that hold audio.
        return self._masks_frames() and getattr(self.processor, "return_attention_mask", False)

    def _weighs_layers(self) -> bool:
        # Audio heads that can average every hidden state themselves (wav2vec2 and its kin, whisper), with a
        # projector and classifier: the mean over frames and layers is then native.
        return self.task == AUDIO_TASK and hasattr(self.model.config, "use_weighted_layer_sum") and \
            self._affine_audio_head() is not None

    def _affine_audio_head(self):
        """The (projector, classifier) of a wav2vec2-style audio head, or None."""
        import torch.nn as nn

        projector, classifier = (getattr(self.model, name, None) for name in ("projector", "classifier"))
        if not all(isinstance(layer, nn.Linear) and layer.bias is not None for layer in (projector, classifier)):
            return None
        head = {name.rsplit(".", 1)[0] for name in self.head_parameter_names()} - {"layer_weights"}
        if head != {"projector", "classifier"} or projector.in_features != self._hidden_size() or \
                projector.out_features < classifier.out_features:
            return None
        return projector, classifier

    def _placeholder_inputs(self, head_inputs) -> dict[str, Any]:
        """Inputs the task model's forward accepts; their values are never read, the encoder being replayed."""
        import torch

        batch = head_inputs.shape[0]
        name = self.processor.model_input_names[0] if self.task == AUDIO_TASK else "input_ids"
        dtype = torch.long if name == "input_ids" else head_inputs.dtype
        return {name: torch.zeros(batch, 1, dtype=dtype, device=head_inputs.device)}

    def linear_heads(self) -> list[LinearHead]:
        # A single linear classifier reads the pooler output when the encoder has a pooler (BERT), else the first
        # token; given a mean over tokens in their place, it classifies that instead (saved with the pooling in
        # config.json, which transformers' own head ignores). Audio heads (wav2vec2, whisper) project the frames,
        # average them and classify, two affine maps in a row: the projection carries the fitted map into its
        # first rows and the classifier passes those through. Heads with a hidden layer, a non-linearity or a norm
        # (DistilBERT, RoBERTa, AST) are not one affine map: none.
        import torch.nn as nn

        hidden = self._hidden_size()
        if self.task == TEXT_TASK:
            classifier = getattr(self.model, "classifier", None)
            if {name.rsplit(".", 1)[0] for name in self.head_parameter_names()} != {"classifier"} or \
                    not isinstance(classifier, nn.Linear) or classifier.bias is None or \
                    classifier.in_features != hidden:
                return []
            native = "pooler" if "pooler" in self._blocks() else FIRST_TOKEN
            for_cls = "ForSequenceClassification"
            return [self._text_head(classifier, FIRST_TOKEN, self._columns(native), ""),
                    self._text_head(classifier, MEAN_TOKENS, self._columns(MEAN_TOKENS),
                                    TEXT_POOLING_NOTE.format(for_cls=for_cls, which="the last layer's")),
                    self._text_head(classifier, MEAN_TOKENS_LAYERS, self._columns(MEAN_TOKENS_LAYERS),
                                    TEXT_POOLING_NOTE.format(for_cls=for_cls,
                                                             which="each hidden state's, then their mean"))]
        layers = self._affine_audio_head()
        if layers is None:
            return []
        heads = [LinearHead(in_features=hidden, columns=self._columns(MEAN_FRAMES), pooling=MEAN_FRAMES,
                            write=lambda weight, bias: self._write_audio_head(*layers, weight, bias, False))]
        if self._weighs_layers():
            heads.append(LinearHead(in_features=hidden, columns=self._columns(MEAN_FRAMES_LAYERS),
                                    pooling=MEAN_FRAMES_LAYERS,
                                    write=lambda weight, bias: self._write_audio_head(*layers, weight, bias, True)))
        return heads

    def linear_head(self) -> LinearHead | None:
        heads = self.linear_heads()
        return heads[0] if heads else None

    def _text_head(self, classifier, pooling: str, columns: slice, note: str) -> LinearHead:
        def write(weight, bias) -> None:
            copy_linear(classifier, weight, bias)
            self.pooling = None if pooling == FIRST_TOKEN else pooling

        return LinearHead(in_features=classifier.in_features, columns=columns, pooling=pooling, write=write,
                          native=pooling == FIRST_TOKEN, load_note=note)

    def _write_audio_head(self, projector, classifier, weight, bias, weigh_layers: bool) -> None:
        import torch

        labels = weight.shape[0]
        identity = torch.zeros_like(classifier.weight)
        identity[:, :labels] = torch.eye(labels)
        projection = torch.zeros_like(projector.weight)
        projection[:labels] = weight.to(projection)
        copy_linear(projector, projection, torch.zeros_like(projector.bias))
        copy_linear(classifier, identity, bias)
        self.model.config.use_weighted_layer_sum = weigh_layers
        if weigh_layers:
            # Equal weights (a softmax of zeros) make the head's weighted sum of hidden states their mean.
            count = self.model.config.num_hidden_layers + 1
            self.model.layer_weights = torch.nn.Parameter(torch.zeros(count, device=projector.weight.device))
        elif isinstance(getattr(self.model, "layer_weights", None), torch.nn.Parameter):
            del self.model.layer_weights

    def head_parameter_names(self) -> list[str]:
        prefix = _encoder_prefix(self.model)
        return [n for n, _ in self.model.named_parameters() if prefix is None or not n.startswith(prefix + ".")]

    def parameter_groups(self) -> list[list[str]]:
        head = set(self.head_parameter_names())
        embeddings, layers, rest = [], {}, []
        for name, _ in self.model.named_parameters():
            match = _LAYER_INDEX.search(name)
            if name in head:
                rest.append(name)
            elif match:
                layers.setdefault(int(match.group(1)), []).append(name)
            elif not layers:
                embeddings.append(name)
            else:
                rest.append(name)  # final norms and poolers train with the head
        return [group for group in [embeddings, *(layers[i] for i in sorted(layers)), rest] if group]

    def lora_targets(self) -> list[str]:
        import torch.nn as nn

        head = {n.rsplit(".", 1)[0] for n in self.head_parameter_names()}
        return [name for name, module in self.model.named_modules()
                if isinstance(module, nn.Linear) and name.split(".")[-1] in _LORA_NAMES and name not in head]

    # --- export -------------------------------------------------------------------------------------------------

    def export_graph(self, batch: dict[str, Any]) -> ExportGraph:
        # Tokens and raw waveforms come in any length: their second axis is dynamic. Spectrogram inputs (whisper,
        # AST) are padded to a fixed number of frames by the feature extractor, so only their batch varies.
        axis = "sequence" if self.task == TEXT_TASK else "time"
        axes = {name: ({0: "batch", 1: axis} if value.ndim == 2 else {0: "batch"}) for name, value in batch.items()}
        names = list(batch)
        if self.pooling in (None, FIRST_TOKEN):
            module = forward_module(self, names)
        else:
            # A pooling the task model lacks: the encoder's pooled vector through the classifier, the map that
            # ``forward`` replays, written as one module the exporter can trace.
            columns = self._columns(self.pooling)
            module = forward_module(self, names,
                                    lambda inputs: self.model.classifier(self.head_inputs(inputs)[:, columns]))
        return ExportGraph(module=module, inputs=dict(batch), dynamic_axes=axes)

    def save(self, directory: str | Path) -> list[Path]:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        if self.task == TEXT_TASK:   # the chosen pooling travels in config.json (and a native one leaves no key)
            if self.pooling in (None, FIRST_TOKEN):
                self.model.config.__dict__.pop(POOLING_KEY, None)
            else:
                setattr(self.model.config, POOLING_KEY, self.pooling)
        if self.task == TEXT_TASK and self.max_length:
            # The token limit used in training travels with the tokenizer, so pipelines cut texts alike.
            self.processor.model_max_length = min(self.max_length, self.processor.model_max_length)
        with _quiet():
            self.model.save_pretrained(directory)   # safetensors: the only format transformers writes by default
            self.processor.save_pretrained(directory)
        return sorted(p for p in directory.iterdir() if p.is_file())


class TransformersFamily(Family):
    """Text and audio classification backbones through Hugging Face transformers."""

    name = "transformers"
    tasks = (TEXT_TASK, AUDIO_TASK)
    library = "transformers"

    def load_classifier(self, spec, *, task: str, labels: Sequence[str], multi_label: bool = False,
                        pretrained: bool = True, trust_remote_code: bool = False) -> TransformersClassifier:
        import torch
        import transformers

        if multi_label and task != TEXT_TASK:
            raise InvalidInputError("multi-label classification is supported for text-cls only")
        auto_model = _auto_class(task)
        source, common = _source(spec), {"revision": spec.revision, "trust_remote_code": trust_remote_code}
        head = {
            "num_labels": len(labels),
            "id2label": dict(enumerate(labels)),
            "label2id": {label: i for i, label in enumerate(labels)},
            "problem_type": "multi_label_classification" if multi_label else "single_label_classification",
        }
        with _quiet():
            try:
                processor = _processor(task, source, **common)
                if pretrained:
                    # fp32 master weights whatever the checkpoint holds: transformers 5 keeps a half-precision
                    # checkpoint in half precision, which fine-tuning on a CPU cannot train (autocast decides
                    # the compute precision, zoo.precision).
                    model = auto_model.from_pretrained(source, ignore_mismatched_sizes=True, dtype=torch.float32,
                                                       **head, **common)
                else:
                    config = transformers.AutoConfig.from_pretrained(source, **head, **common)
                    model = auto_model.from_config(config, trust_remote_code=trust_remote_code)
            except Exception as exc:  # transformers raises OSError, ValueError, hub errors...
                raise ModelLoadError.for_backbone(spec, "transformers", exc,
                                                  convert=CONVERT_TO_SAFETENSORS) from exc
        max_length = int(spec.input.get("max_tokens", 0)) or None
        return TransformersClassifier(model, processor, task=task, max_length=max_length)

    def load_saved(self, directory: str | Path) -> TransformersClassifier:
        return _from_folder(directory, lambda task, folder: _auto_class(task).from_pretrained(folder))

    def load_preprocessing(self, directory: str | Path) -> TransformersClassifier:
        import torch
        import transformers

        def weightless(task: str, folder: Path):
            config = transformers.AutoConfig.from_pretrained(folder)
            with torch.device("meta"):   # the model's structure answers batch_key; its weights are never read
                return _auto_class(task).from_config(config)

        return _from_folder(directory, weightless)

    def can_load_saved(self, directory: str | Path) -> bool:
        import json

        config = Path(directory) / "config.json"
        try:
            data = json.loads(config.read_text())
        except (OSError, ValueError):
            return False
        return "model_type" in data and "architecture" not in data

    def usage_snippet(self, *, task: str, repo_id: str | None, revision: str | None = None,
                      multi_label: bool = False, example: str = "") -> str:
        tag = "text-classification" if task == TEXT_TASK else "audio-classification"
        extra = f', revision="{revision}"' if repo_id and revision else ""
        load = f'classifier = pipeline("{tag}", model="{repo_id or "PATH"}"{extra})\n'
        if task == AUDIO_TASK:
            return ('import soundfile\nfrom transformers import pipeline\n\n' + load + '\n'
                    f'audio, rate = soundfile.read("{example}", dtype="float32")\n'
                    'audio = audio.mean(axis=1) if audio.ndim > 1 else audio   # the model takes one channel\n'
                    'print(classifier({"raw": audio, "sampling_rate": rate}, top_k=None))')
        return f'from transformers import pipeline\n\n{load}print(classifier("{example}", top_k=None))'

    def onnx_snippet(self, *, task: str, where: str, multi_label: bool = False, example: str = "") -> str:
        # transformers' tokenizers and feature extractors run on numpy: torch is not needed to feed the model.
        scores = ("scores = 1 / (1 + np.exp(-logits))\n" if multi_label else
                  "scores = np.exp(logits - logits.max())\nscores /= scores.sum()\n")
        if task == AUDIO_TASK:
            head = "ORTModelForAudioClassification"
            prepare = ('import soundfile\nfrom transformers import AutoFeatureExtractor\n\n'
                       f'extractor = AutoFeatureExtractor.from_pretrained("{where}")\n'
                       f'audio, rate = soundfile.read("{example}", dtype="float32")\n'
                       'audio = audio.mean(axis=1) if audio.ndim > 1 else audio   # the model takes one channel\n'
                       'assert rate == extractor.sampling_rate, "resample the clip to the model\'s rate first"\n'
                       'inputs = extractor(audio, sampling_rate=rate, return_tensors="np")\n')
        else:
            head = "ORTModelForSequenceClassification"
            prepare = ('from transformers import AutoTokenizer\n\n'
                       f'tokenizer = AutoTokenizer.from_pretrained("{where}")\n'
                       f'inputs = tokenizer(["{example}"], truncation=True, padding=True, return_tensors="np")\n')
        return ('import json\n\nimport numpy as np\nimport onnxruntime\n' + prepare +
                f'labels = json.load(open("{where}/config.json"))["id2label"]\n\n'
                f'session = onnxruntime.InferenceSession("{where}/model.onnx")\n'
                'types = {"tensor(float)": np.float32, "tensor(int64)": np.int64, "tensor(int32)": np.int32}\n'
                'feed = {item.name: inputs[item.name].astype(types[item.type]) for item in session.get_inputs()}\n'
                'logits = session.run(None, feed)[0][0]\n' + scores +
                'print({labels[str(i)]: round(float(score), 4) for i, score in enumerate(scores)})\n\n'
                '# Or with optimum (pip install "optimum-onnx[onnxruntime]"), which reads the same folder:\n'
                f'# from optimum.onnxruntime import {head}\n'
                f'# model = {head}.from_pretrained("{where}")')

    def architecture(self, spec, *, task: str | None = None, config: dict[str, Any] | None = None,
                     device: str = "meta") -> Architecture:
        import torch
        import transformers

        task = task or spec.tasks[0]
        if config is not None:
            options = dict(config)
            hf_config = transformers.AutoConfig.for_model(options.pop("model_type"), **options)
        else:
            try:
                hf_config = transformers.AutoConfig.from_pretrained(_source(spec), revision=spec.revision)
            except Exception as exc:
                raise ModelLoadError.for_backbone(spec, "transformers", exc,
                                                  convert=CONVERT_TO_SAFETENSORS) from exc
        with torch.device(device):
            encoder = _encoder(_auto_class(task).from_config(hf_config))
        encoder.eval()
        inputs = _example_inputs(hf_config, spec, task, device)
        if task == TEXT_TASK and device == "meta":
            # Some encoders read mask values (BERT's mask helper), others read ids when no mask is given
            # (DeBERTa's padding warning); meta tensors have no values, so use the form this encoder accepts.
            with_mask = {**inputs, "attention_mask": torch.ones_like(inputs["input_ids"])}
            for candidate in (inputs, with_mask):
                try:
                    with torch.no_grad():
                        encoder(**candidate)
                except RuntimeError:
                    continue
                inputs = candidate
                break
        return Architecture(encoder, inputs)


def _processor(task: str, source, **options):
    """The tokenizer (text) or feature extractor (audio) of a backbone or a saved folder."""
    import transformers

    auto = transformers.AutoTokenizer if task == TEXT_TASK else transformers.AutoFeatureExtractor
    return auto.from_pretrained(source, **options)


def _from_folder(directory: str | Path, model_from) -> TransformersClassifier:
    """A classifier from a folder ``save`` (or ``export_files``) wrote: its preprocessing, and the model
    ``model_from(task, folder)`` builds (from the saved weights, or without them)."""
    directory = Path(directory)
    task = TEXT_TASK if (directory / "tokenizer_config.json").is_file() else AUDIO_TASK
    with _quiet():
        try:
            processor = _processor(task, directory)
            model = model_from(task, directory)
        except Exception as exc:  # transformers raises OSError, ValueError, hub errors...
            raise ModelLoadError.for_saved(directory, "transformers", exc, convert=CONVERT_TO_SAFETENSORS) from exc
    return TransformersClassifier(model, processor, task=task)


def _example_inputs(config, spec, task: str, device: str) -> dict[str, Any]:
    """Inputs at the spec's default size: seq_len tokens, or `seconds` of audio in the model's input form."""
    import torch

    if task == TEXT_TASK:
        length = int(spec.input["seq_len"])
        return {"input_ids": torch.zeros(1, length, dtype=torch.long, device=device)}
    if config.model_type == "whisper":
        return {"input_features": torch.empty(1, config.num_mel_bins, 3000, device=device)}
    if config.model_type == "audio-spectrogram-transformer":
        return {"input_values": torch.empty(1, config.max_length, config.num_mel_bins, device=device)}
    samples = int(spec.input["sample_rate"] * spec.input["seconds"])
    return {"input_values": torch.empty(1, samples, device=device)}
