"""Turning a classifier and a strategy into what the loop trains: `linear` (head on cached features),
`lora` (peft adapters plus the head) or `full` (every parameter)."""

from __future__ import annotations

from zoo.data.base import DataSplits
from zoo.engine.batches import ExampleDataset, collect_outputs, item_length, make_collate
from zoo.engine.config import AdaptConfig
from zoo.engine.features import cache_key, load_cached, save_cached
from zoo.engine.trainer import Reporter, TrainingSetup
from zoo.errors import InvalidInputError, PluginError
from zoo.precision import autocast, resolve_precision
from zoo.tasks import get_task


class FeatureDataset:
    """Cached head inputs and targets, item by item."""

    def __init__(self, features, targets) -> None:
        self.features, self.targets = features, targets

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, key: int | tuple[int, int]):
        index = key[1] if isinstance(key, tuple) else key   # (epoch, index) from the training loader: no augmentation
        return self.features[index], self.targets[index]


def _stack(items):
    import torch

    features, targets = zip(*items, strict=True)
    return torch.stack(features), torch.stack(targets)


def cached_head_inputs(classifier, spec, splits: DataSplits, split: str, config: AdaptConfig, device,
                       reporter: Reporter):
    import torch

    examples = getattr(splits, split)
    precision = resolve_precision(config.precision, device)   # the frozen pass runs as training does
    extra = {"max_seconds": config.max_seconds, "max_length": config.max_length, "labels": splits.label_names,
             "precision": precision, "multi_label": splits.multi_label, "image_size": config.image_size,
             "head_inputs": f"{type(classifier).__module__}.{type(classifier).__qualname__} "
                            f"{getattr(classifier, 'head_inputs_version', '1')}"}
    key = cache_key(spec, fingerprint=splits.fingerprint, split=split, extra=extra)
    cached = load_cached(key)
    if cached is not None:
        reporter.message(f"features for {split} ({len(examples)} examples): from the cache")
        return cached
    reporter.message(f"extracting features for {split} ({len(examples)} examples) with the frozen backbone")
    dataset = ExampleDataset(examples, classifier, train=False, max_seconds=config.max_seconds,
                             num_labels=splits.num_labels, multi_label=splits.multi_label)
    classifier.model.eval()   # the frozen backbone, run once
    targets, features = collect_outputs(classifier.head_inputs, dataset, batch_size=config.eval_batch_size,
                                        device=device, num_workers=config.workers,
                                        collate=make_collate(classifier, dataset.multi_label),
                                        autocast=autocast(precision, device))
    features, targets = torch.from_numpy(features), torch.from_numpy(targets)
    save_cached(key, features, targets)
    return features, targets


def evaluation_data(classifier, spec, splits: DataSplits, split: str, config: AdaptConfig, *, device,
                    reporter: Reporter):
    """The ``split`` (val or test) as the loop evaluates it: cached head inputs for `linear`, examples otherwise."""
    if config.strategy == "linear":
        return FeatureDataset(*cached_head_inputs(classifier, spec, splits, split, config, device, reporter))
    dataset = ExampleDataset(getattr(splits, split), classifier, train=False, max_seconds=config.max_seconds,
                             num_labels=splits.num_labels, multi_label=splits.multi_label)
    # evaluated after every epoch: preprocessed once where the items fit in memory
    dataset.keep_items(announce=lambda what: reporter.message(f"{split} data: {what}"))
    return dataset


def _module_names(parameter_names: list[str]) -> list[str]:
    return sorted({name.rsplit(".", 1)[0] for name in parameter_names})


def plugin_of(classifier, spec) -> str:
    """How an error names the plugin behind ``classifier``: its package and the family."""
    return f"{type(classifier).__module__.split('.')[0]} ({spec.family} family)"


def check_lora_targets(classifier, spec) -> list[str]:
    """The family's LoRA target modules, checked to be module names the model has (as peft matches them: the
    whole name or its last parts), so a bad list is reported, naming the plugin, before the run starts.

    Raises:
        zoo.errors.PluginError: the list is not a list of names, or names modules the model lacks.
        zoo.errors.InvalidInputError: the family names none (LoRA is not available for it).
    """
    targets = classifier.lora_targets()
    method = f"{type(classifier).__name__}.lora_targets()"
    if not isinstance(targets, (list, tuple)) or not all(isinstance(t, str) and t for t in targets):
        raise PluginError(plugin_of(classifier, spec), f"{method} must return a list of module names, not "
                                                        f"{targets!r}; use --strategy full or linear meanwhile")
    if not targets:
        raise InvalidInputError(f"{spec.name}: its family names no LoRA target modules; use --strategy full "
                                "or linear")
    names = [name for name, _ in classifier.model.named_modules() if name]
    missing = [t for t in targets if not any(n == t or n.endswith("." + t) for n in names)]
    if missing:
        raise PluginError(plugin_of(classifier, spec), f"{method} names modules the model does not have "
                                                        f"({', '.join(missing[:3])}); use --strategy full or linear "
                                                        "meanwhile")
    return list(targets)


def build_setup(classifier, spec, splits: DataSplits, config: AdaptConfig, *, device,
                reporter: Reporter, teacher_logits=None) -> TrainingSetup:
    """Freeze, wrap or open the model for ``config.strategy`` and return what the loop needs. ``teacher_logits``
    (distillation: a teacher's logits for each training example, in order) travel with the training targets;
    evaluation data never carries them."""
    model = classifier.model
    head = set(classifier.head_parameter_names())
    if config.strategy == "linear":
        if teacher_logits is not None:
            raise InvalidInputError("--strategy linear: the linear head takes no soft targets; distil with "
                                    "--strategy full or lora")
        for name, param in model.named_parameters():
            param.requires_grad_(name in head)
        model.to(device)
        train = FeatureDataset(*cached_head_inputs(classifier, spec, splits, "train", config, device, reporter))
        val = evaluation_data(classifier, spec, splits, "val", config, device=device, reporter=reporter)

        def train_mode(training: bool) -> None:
            model.train(training)

        return TrainingSetup(forward=classifier.head_logits, train_data=train, val_data=val, collate=_stack,
                             trainable={n: p for n, p in model.named_parameters() if p.requires_grad},
                             train_mode=train_mode, model=model)

    if config.strategy == "lora":
        from peft import LoraConfig, get_peft_model

        targets = check_lora_targets(classifier, spec)
        lora = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                          target_modules=list(targets), modules_to_save=_module_names(sorted(head)))
        try:
            classifier.model = model = get_peft_model(model, lora)
        except (ValueError, KeyError, TypeError, AttributeError, RuntimeError) as exc:
            detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise PluginError(plugin_of(classifier, spec),
                              f"{type(classifier).__name__}.lora_targets() named modules LoRA cannot wrap "
                              f"({detail}); use --strategy full or linear meanwhile") from None
    else:
        for param in model.parameters():
            param.requires_grad_(True)
    model.to(device)
    if classifier.channels_last and getattr(device, "type", str(device)) == "cuda":
        import torch

        model.to(memory_format=torch.channels_last)   # convolutions run faster in NHWC on GPUs
    if config.compile:
        import torch

        compiled = torch.compile(model)
        classifier.model = compiled
    train = ExampleDataset(splits.train, classifier, train=True, seed=config.seed, max_seconds=config.max_seconds,
                           num_labels=splits.num_labels, multi_label=splits.multi_label, teacher_logits=teacher_logits)
    # Items that draw no augmentation are preprocessed once, here, and kept for every epoch.
    kept = train.keep_items(announce=lambda what: reporter.message(f"training data: {what}"))
    val = evaluation_data(classifier, spec, splits, "val", config, device=device, reporter=reporter)
    lengths = None
    if get_task(classifier.task).length_grouped:   # the lengths padding pads to, else the inputs' own
        lengths = [item_length(item) for item in train.kept] if kept else [len(ex.input) for ex in splits.train]

    def train_mode(training: bool) -> None:
        classifier.model.train(training)

    return TrainingSetup(forward=classifier.forward, train_data=train, val_data=val,
                         collate=make_collate(classifier, splits.multi_label), lengths=lengths,
                         set_epoch=train.set_epoch,
                         trainable={n: p for n, p in classifier.model.named_parameters() if p.requires_grad},
                         train_mode=train_mode, model=classifier.model)


def finalize_model(classifier, strategy: str) -> None:
    """Make the trained classifier plain again: LoRA adapters merged into the weights, compile undone."""
    model = classifier.model
    model = getattr(model, "_orig_mod", model)          # torch.compile wrapper
    if strategy == "lora":
        model = model.merge_and_unload()
    classifier.model = model
