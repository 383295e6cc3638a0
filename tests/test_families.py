"""Every family's contract, run on a tiny backbone of each, loaded through the local Hub with huggingface_hub.

The contract checks are zoo.testing's, the ones a plugin author runs in their own CI; here they run on every
fixture backbone, check by check, beside what only the first-party families promise (native loading without zoo).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import FIXTURE_REGISTRY

from zoo.registry import read_registry_file
from zoo.testing import CHECKS, ContractViolation, check_family, example_inputs

FIXTURES = read_registry_file(FIXTURE_REGISTRY)
LABELS = ["alpha", "beta", "gamma"]


def example(task: str, seed: int):
    return example_inputs(task, seed + 1)[seed]


@pytest.fixture
def classifier(request, hub, fresh_plugins):
    spec = request.param
    family = fresh_plugins.family(spec.family)
    return spec, family.load_classifier(spec, task=spec.tasks[0], labels=LABELS)


@pytest.mark.parametrize("check", list(CHECKS))
@pytest.mark.parametrize("spec", FIXTURES, ids=lambda s: s.name)
def test_family_contract(spec, check, hub, fresh_plugins):
    """zoo.testing's contract checks, one by one, on every fixture backbone: load, outputs, parameter groups, LoRA
    targets, augmentation, head replay, linear heads, save and load, batch independence, padding, strategies."""
    report = check_family(fresh_plugins.family(spec.family), spec, labels=LABELS, checks=[check])
    assert [result.name for result in report.results] == [check]


@pytest.mark.parametrize("classifier", FIXTURES, ids=lambda s: s.name, indirect=True)
def test_saved_model_loads_natively_without_zoo(classifier, tmp_path, fresh_plugins):
    """The saved folder loads with timm or transformers alone, in a process that never imports zoo."""
    import torch

    spec, clf = classifier
    out = tmp_path / "saved"
    written = clf.save(out)
    assert all(p.exists() for p in written)
    assert not list(out.glob("*.bin")) and not list(out.glob("*.pt")), "weights are safetensors only"
    clf.model.eval()
    inputs = [example(clf.task, seed) for seed in range(2)]
    with torch.no_grad():   # one by one, as the pipeline runs them
        expected = torch.cat([clf.forward(clf.collate([clf.preprocess(x)])) for x in inputs]).softmax(-1).numpy()

    payload = tmp_path / "inputs.npz"
    if clf.task == "image-cls":
        paths = []
        for i, image in enumerate(inputs):
            image.save(tmp_path / f"{i}.png")
            paths.append(str(tmp_path / f"{i}.png"))
        script = f"""
import json, sys, timm, torch
from PIL import Image
model = timm.create_model("local-dir:{out}", pretrained=True).eval()
cfg = timm.data.resolve_data_config({{}}, model=model)
tf = timm.data.create_transform(**cfg)
x = torch.stack([tf(Image.open(p).convert("RGB")) for p in {paths!r}])
with torch.no_grad():
    probs = model(x).softmax(-1)
print(json.dumps({{"labels": model.pretrained_cfg.get("label_names"), "probs": probs.tolist()}}))
"""
    else:
        if clf.task == "text-cls":
            np.savez(payload, *[np.array(x) for x in inputs])
        else:
            np.savez(payload, *inputs)
        pipeline_task = "text-classification" if clf.task == "text-cls" else "audio-classification"
        script = f"""
import json, sys, numpy as np
from transformers import pipeline
pipe = pipeline("{pipeline_task}", model="{out}", top_k=None)
data = np.load("{payload}")
inputs = [data[k].item() if data[k].ndim == 0 else data[k] for k in data.files]
if "{clf.task}" == "audio-cls":
    inputs = [{{"raw": x, "sampling_rate": pipe.feature_extractor.sampling_rate}} for x in inputs]
results = [pipe(x) for x in inputs]
results = [r[0] if r and isinstance(r[0], list) else r for r in results]
labels = list(pipe.model.config.id2label.values())
probs = [[next(r["score"] for r in res if r["label"] == l) for l in labels] for res in results]
print(json.dumps({{"labels": labels, "probs": probs}}))
"""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-c", "import sys; sys.modules['zoo'] = None\n" + script],
                            capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    native = json.loads(result.stdout.strip().splitlines()[-1])
    assert native["labels"] == LABELS
    np.testing.assert_allclose(np.array(native["probs"]), expected, atol=1e-4)

    reloaded = fresh_plugins.family(spec.family).load_saved(out)
    assert reloaded.labels == LABELS


@pytest.mark.parametrize("spec", [s for s in FIXTURES if "text-cls" in s.tasks], ids=lambda s: s.name)
def test_text_classifier_supports_multi_label(spec, hub, fresh_plugins):
    clf = fresh_plugins.family(spec.family).load_classifier(spec, task="text-cls", labels=LABELS, multi_label=True)
    assert clf.multi_label


def test_missing_backbone_gives_a_load_error(hub, fresh_plugins):
    from zoo.errors import ModelLoadError
    from zoo.registry import BackboneSpec

    for family, task, inp in (("timm", "image-cls", {"image_size": 32}),
                              ("transformers", "text-cls", {"max_tokens": 8, "seq_len": 8})):
        spec = BackboneSpec(name="ghost", family=family, source="zoo-test/does-not-exist", tasks=(task,),
                            params_m=1, gflops=1, input=inp)
        with pytest.raises(ModelLoadError, match=f"could not load {family} backbone 'ghost'.*zoo-test/does-not-exist"):
            fresh_plugins.family(family).load_classifier(spec, task=task, labels=["a", "b"])


def test_a_half_precision_checkpoint_loads_in_full_precision(tmp_path, fresh_plugins):
    """Many Hub checkpoints are stored in fp16; fine-tuning needs fp32 master weights whatever the file holds."""
    import torch
    from tiny_models import build_bert
    from transformers import BertModel

    from zoo.registry import BackboneSpec

    build_bert(tmp_path / "bert")
    BertModel.from_pretrained(tmp_path / "bert").half().save_pretrained(tmp_path / "bert")
    spec = BackboneSpec(name="half", family="transformers", source=f"local-dir:{tmp_path / 'bert'}",
                        tasks=("text-cls",), params_m=0.02, gflops=0.001, input={"max_tokens": 16, "seq_len": 8})
    classifier = fresh_plugins.family("transformers").load_classifier(spec, task="text-cls", labels=["a", "b"])
    assert {p.dtype for p in classifier.model.parameters()} == {torch.float32}


@pytest.mark.parametrize("classifier", [s for s in FIXTURES if "image-cls" in s.tasks], ids=lambda s: s.name,
                         indirect=True)
@pytest.mark.parametrize("augment", ["none", "light", "strong"])
def test_image_augmentation_presets(classifier, augment):
    spec, clf = classifier
    clf.augment = augment
    item = clf.preprocess(example(clf.task, 0), train=True)
    assert item["pixel_values"].shape[-1] == spec.input["image_size"]


# --- scores do not depend on the batch ---------------------------------------------------------------------------

def mixed_lengths(task: str) -> list:
    """Examples of different lengths (sizes, for images), longest neither first nor last."""
    return [example(task, seed) for seed in (2, 0, 3, 1)]


def test_padding_changes_the_scores_of_a_group_norm_wav2vec2(hub, fresh_plugins):
    """The fixture the batch tests rely on shows what they guard against: padded among longer clips, a clip's
    scores move (group normalisation over time sees the padded zeros; its processor returns no mask)."""
    import torch

    spec = next(s for s in FIXTURES if s.name == "tiny-wav2vec2-group")
    clf = fresh_plugins.family(spec.family).load_classifier(spec, task="audio-cls", labels=LABELS)
    clf.model.eval()
    items = [clf.preprocess(x) for x in mixed_lengths("audio-cls")]
    assert len({clf.batch_key(item) for item in items}) == len(items)
    with torch.no_grad():
        alone = torch.cat([clf.forward(clf.collate([item])) for item in items])
        padded = clf.forward(clf.collate(items))
    assert (padded - alone).abs().max() > 1e-3


@pytest.mark.parametrize("classifier", FIXTURES, ids=lambda s: s.name, indirect=True)
def test_every_fixture_head_is_one_affine_map(classifier):
    """The fixtures' heads are one affine map, so the contract's linear_heads check runs on each (not skipped)."""
    spec, clf = classifier
    heads = clf.linear_heads()
    assert heads, f"{spec.name}: the fixture's head is one affine map; linear_heads() must offer it"


def test_a_head_with_a_hidden_layer_is_not_a_linear_head(hub, fresh_plugins):
    import torch

    spec = next(s for s in FIXTURES if s.name == "test_resnet.r160_in1k")
    clf = fresh_plugins.family(spec.family).load_classifier(spec, task="image-cls", labels=LABELS)
    features = clf.model.get_classifier().in_features
    clf.model.reset_classifier(0)
    clf.model.fc = torch.nn.Sequential(torch.nn.Linear(features, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    assert clf.linear_head() is None


# --- what the core asks a family instead of knowing it -----------------------------------------------------------

SNIPPETS = {   # the model card's usage code, as the card wrote it before families wrote it themselves
    ("timm", "image-cls", True, "me/x", "abc123"):
        'import timm\nimport torch\nfrom PIL import Image\n\nmodel = timm.create_model("hf-hub:me/x@abc123", '
        'pretrained=True).eval()\ntransform = timm.data.create_transform(**timm.data.resolve_data_config({}, '
        'model=model))\nlabels = model.pretrained_cfg["label_names"]\n\nimage = Image.open("example.jpg")'
        '.convert("RGB")\nwith torch.inference_mode():\n    scores = model(transform(image).unsqueeze(0))'
        '.sigmoid()[0]\nprint({label: round(float(score), 4) for label, score in zip(labels, scores)})',
    ("transformers", "text-cls", False, None, "main"):
        'from transformers import pipeline\n\nclassifier = pipeline("text-classification", model="PATH")\n'
        'print(classifier("an example text to classify", top_k=None))',
    ("transformers", "audio-cls", False, "me/x", "abc123"):
        'import soundfile\nfrom transformers import pipeline\n\nclassifier = pipeline("audio-classification", '
        'model="me/x", revision="abc123")\n\naudio, rate = soundfile.read("example.wav", dtype="float32")\n'
        'audio = audio.mean(axis=1) if audio.ndim > 1 else audio   # the model takes one channel\n'
        'print(classifier({"raw": audio, "sampling_rate": rate}, top_k=None))',
}


@pytest.mark.parametrize("case", sorted(SNIPPETS, key=str), ids=lambda c: f"{c[0]}-{c[1]}")
def test_model_card_snippet_comes_from_the_family(case, fresh_plugins):
    from zoo.runs.card import _load_snippet

    family, task, multi_label, repo_id, revision = case
    record = {"family_library": family, "task": task, "multi_label": multi_label, "backbone": {"family": family}}
    assert _load_snippet(record, repo_id, revision) == SNIPPETS[case]


def test_a_family_without_a_snippet_gets_a_comment(fresh_plugins):
    from zoo.runs.card import _load_snippet

    record = {"family_library": "somelib", "task": "image-cls", "multi_label": False,
              "backbone": {"family": "not-installed"}}
    assert _load_snippet(record, "me/x") == "# load with somelib from me/x"


# --- the contract checker catches what it is for -----------------------------------------------------------------

def test_the_contract_checker_catches_a_wrong_head_logits(hub, fresh_plugins):
    """A family whose head_logits does not replay its forward (the bug the linear strategy cannot survive) fails
    the checker with a report naming the check and the difference."""
    spec = next(s for s in FIXTURES if s.name == "test_resnet.r160_in1k")
    family = fresh_plugins.family(spec.family)

    class OffByOneHead(type(family)):
        def load_classifier(self, *args, **kwargs):
            classifier = super().load_classifier(*args, **kwargs)
            head_logits = classifier.head_logits
            classifier.head_logits = lambda inputs: head_logits(inputs) + 1.0
            return classifier

    report = check_family(OffByOneHead(), spec, checks=["outputs", "head_replay"], raise_on_failure=False)
    assert not report.ok and [r.name for r in report.failed] == ["head_replay"]
    assert "head_logits(head_inputs(batch)) differs from forward(batch)" in report.failed[0].detail
    with pytest.raises(ContractViolation) as info:
        check_family(OffByOneHead(), spec, checks=["head_replay"])
    assert "failed head_replay" in str(info.value) and info.value.report.failed


def test_the_contract_checker_catches_a_unit_without_a_name(hub, fresh_plugins):
    """An attribution space whose names run short of its units fails the check, which says so."""
    spec = next(s for s in FIXTURES if s.name == "tiny-bert")
    family = fresh_plugins.family(spec.family)

    class NameDropped(type(family)):
        def load_classifier(self, *args, **kwargs):
            classifier = super().load_classifier(*args, **kwargs)
            attribution_space = classifier.attribution_space

            def short(example, batch):
                space = attribution_space(example, batch)
                space.names = space.names[:-1]
                return space

            classifier.attribution_space = short
            return classifier

    report = check_family(NameDropped(), spec, checks=["attribution_space"], raise_on_failure=False)
    assert [r.name for r in report.failed] == ["attribution_space"]
    assert "spans for" in report.failed[0].detail


def test_the_contract_checker_skips_attribution_space_where_a_family_has_none(hub, fresh_plugins):
    """A family that does not implement attribution_space (the default refuses) keeps the contract: the check is
    skipped with the reason, and the passed check of one that does reports integrated gradients' completeness."""
    from zoo.family import Classifier

    spec = next(s for s in FIXTURES if s.name == "test_resnet.r160_in1k")
    family = fresh_plugins.family(spec.family)

    class Unexplained(type(family)):
        def load_classifier(self, *args, **kwargs):
            classifier = super().load_classifier(*args, **kwargs)
            classifier.attribution_space = Classifier.attribution_space.__get__(classifier)
            return classifier

    (result,) = check_family(Unexplained(), spec, checks=["attribution_space"]).results
    assert result.status == "skipped" and "does not implement attribution_space" in result.detail
    (result,) = check_family(family, spec, checks=["attribution_space"]).results
    assert result.status == "passed" and "completeness error" in result.detail


@pytest.mark.parametrize("classifier", FIXTURES, ids=lambda s: s.name, indirect=True)
def test_training_items_are_kept_exactly_where_preprocessing_draws_nothing(classifier):
    """The engine prepares a training item once and keeps it only where no augmentation draws (the family's, in
    preprocess, or the engine's, on waveforms), and then gives what preparing it again would give."""
    from zoo.data.base import Example
    from zoo.engine.batches import ExampleDataset, item_length
    from zoo.tasks import get_task

    _, clf = classifier
    examples = [Example(x, (i % len(LABELS),), str(i)) for i, x in enumerate(example_inputs(clf.task))]
    for augment in ("none", "light", "strong"):
        clf.augment = augment
        dataset = ExampleDataset(examples, clf, train=True, max_seconds=10.0, num_labels=len(LABELS),
                                 multi_label=False)
        prepared = [dataset[(1, i)] for i in range(len(examples))]
        draws = clf.preprocess_augments or (get_task(clf.task).waveform and augment != "none")
        assert dataset.keep_items() is (not draws), f"augment={augment}"
        if draws:
            continue
        for i, expected in enumerate(prepared):
            item = dataset[(1, i)]
            assert item is not dataset.kept[i], "a copy: collation takes the target out of the item"
            assert item.keys() == expected.keys()
            assert all(np.array_equal(np.asarray(item[k]), np.asarray(expected[k])) for k in item)
            if get_task(clf.task).length_grouped:   # the length that grouping sorts by is the one collate pads to
                alone = clf.collate([{k: v for k, v in item.items() if not k.startswith("_")}])
                assert item_length(item) == max(v.shape[1] for v in alone.values() if v.ndim >= 2)
    clf.augment = "none"
    over_budget = ExampleDataset(examples, clf, train=False, max_seconds=10.0, num_labels=len(LABELS),
                                 multi_label=False)
    assert not over_budget.keep_items(budget=1) and over_budget.kept is None, "items over the budget are not kept"
