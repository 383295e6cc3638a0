"""`zoo push` and `zoo fetch` against the local Hub server, through the real huggingface_hub client.

Round trip: adapt a tiny model of each task type, push it, load it back from the same endpoint in a process that
never imports zoo, and compare predictions with the local run. Also: the model card, privacy, tokens, a connection
that breaks mid-push, and offline work after `zoo fetch`.
"""

from __future__ import annotations

import ast
import json
import os
import re
import tempfile
from pathlib import Path

import pytest
from conftest import FIXTURE_REGISTRY, run_zoo, val_inputs
from native_loading import native_predictions, run_without_zoo

from zoo import api
from zoo.engine.config import AdaptConfig
from zoo.registry import read_registry_file
from zoo.store import RunStore
from zoo.tasks import get_task

FIXTURES = {spec.name: spec for spec in read_registry_file(FIXTURE_REGISTRY)}
REGISTRY = [str(FIXTURE_REGISTRY)]
USER, TOKEN = "alice", "hf_zooTestTokenAlice0123456789"
OTHER_USER, OTHER_TOKEN = "mallory", "hf_zooTestTokenMallory987654321"
ROUND_TRIP = ["test_resnet.r160_in1k", "tiny-bert", "tiny-wav2vec2"]


@pytest.fixture(scope="module")
def hub_users(hub):
    hub.store.add_token(TOKEN, USER)
    hub.store.add_token(OTHER_TOKEN, OTHER_USER)
    return hub


@pytest.fixture(scope="module")
def runs(hub, datasets, tmp_path_factory) -> dict[str, Path]:
    """One finished run per round-trip backbone."""
    root = tmp_path_factory.mktemp("runs")
    out = {}
    for name in ROUND_TRIP:
        task = FIXTURES[name].tasks[0]
        api.adapt(name, str(datasets[task]), output=root / name, val_fraction=0.25, registry_files=REGISTRY,
                  config=AdaptConfig(strategy="full", epochs=2, batch_size=8, lr=1e-3, patience=0), store=False)
        out[name] = root / name
    return out


def _push(run: Path, repo_id: str, *args: str, env: dict[str, str] | None = None):
    return run_zoo("push", str(run), "--repo-id", repo_id, "--json", *args, env=env)


@pytest.mark.parametrize("name", ROUND_TRIP)
def test_push_round_trip_loads_without_zoo_and_predicts_the_same(name, hub_users, runs, tmp_path):
    run, spec = runs[name], FIXTURES[name]
    repo_id = f"{USER}/{name.replace('.', '-')}-round-trip"
    pushed = _push(run, repo_id, "--token", TOKEN)
    assert pushed.returncode == 0, pushed.stderr
    result = json.loads(pushed.stdout)
    assert result["created"] and result["private"] and result["changed"]
    assert result["url"] == f"{hub_users.endpoint}/{repo_id}"
    sent = {f["path"] for f in result["files"]}
    assert {"README.md", "zoo_run.json", "curves.png", "config.json"} <= sent
    assert any(path.endswith(".safetensors") for path in sent)
    assert not any(path.startswith(".") or path.endswith((".bin", ".pt", ".pkl")) for path in sent)
    assert not any(path.startswith("outputs/") for path in sent), "validation outputs stay local"

    # What the server holds is byte for byte what zoo sent.
    commit = hub_users.store.resolve(repo_id, "main")
    assert commit.sha == result["commit"]
    for entry in result["files"]:
        import hashlib

        assert hashlib.sha256(hub_users.store.blob_bytes(commit.files[entry["path"]])).hexdigest() == entry["sha256"]

    # A fresh process that never imports zoo, with an empty cache, loads the model from the endpoint.
    inputs = val_inputs(run, 3, sample_rate=16000)
    model = f"hf-hub:{repo_id}" if spec.family == "timm" else repo_id
    native = native_predictions(spec.family, spec.tasks[0], model, inputs,
                                env={"HF_TOKEN": TOKEN, "HF_HOME": str(tmp_path / "fresh-hf-home")})
    ours = api.predict(run, inputs, top_k=len(json.loads((run / "zoo_run.json").read_text())["labels"]))
    for prediction, scores in zip(ours, native, strict=True):
        for entry in prediction.labels:
            assert entry["score"] == pytest.approx(scores[entry["label"]], abs=1e-4)

    # The pushed card parses with huggingface_hub and carries the run's metrics and metadata.
    from huggingface_hub import ModelCard

    card = ModelCard.load(repo_id, token=TOKEN)
    record = json.loads((run / "zoo_run.json").read_text())
    scored = record["metrics"].get("test") or record["metrics"]["best"]
    metrics = {r.metric_type: r.metric_value for r in card.data.eval_results}
    assert metrics == {name: pytest.approx(round(scored[name], 4)) for name in ("accuracy", "macro_f1")}
    assert card.data.base_model == spec.source and card.data.license == spec.license
    assert card.data.library_name == ("timm" if spec.family == "timm" else "transformers")
    assert card.data.pipeline_tag == {"image-cls": "image-classification", "text-cls": "text-classification",
                                      "audio-cls": "audio-classification"}[spec.tasks[0]]
    assert repo_id in card.text and "## Limitations" in card.text and "Full training configuration" in card.text
    base_commit = hub_users.store.resolve(spec.source, "main").sha
    assert record["backbone"]["commit"] == base_commit and f"at commit `{base_commit[:12]}`" in card.text
    # "How it decides" travels with the card: every picture it shows is in the commit, at the path it names.
    pictures = re.findall(r"\]\((how_it_decides/[^)]+\.png)\)", card.text)
    assert "## How it decides" in card.text and set(pictures) <= sent
    assert bool(pictures) == (get_task(spec.tasks[0]).input_kind != "text")

    # The card's usage snippet, run as written (on one of the inputs) without zoo, gives the same scores.
    snippet = card.text.split("```python\n", 1)[1].split("```", 1)[0]
    assert get_task(spec.tasks[0]).snippet_input in snippet
    printed = run_without_zoo(snippet.replace(get_task(spec.tasks[0]).snippet_input, inputs[0]),
                              env={"HF_TOKEN": TOKEN, "HF_HOME": str(tmp_path / "snippet-hf-home")})
    shown = ast.literal_eval(printed.strip().splitlines()[-1])
    if isinstance(shown, list):   # the pipeline's [{"label": ..., "score": ...}, ...]
        shown = {entry["label"]: entry["score"] for entry in shown}
    assert shown == pytest.approx({entry["label"]: entry["score"] for entry in ours[0].labels}, abs=1e-3)

    # The published record shows no path of this machine.
    published = hub_users.store.blob_bytes(commit.files["zoo_run.json"]).decode()
    assert str(run.parent) not in published and str(Path.home()) not in published
    assert tempfile.gettempdir() + "/" not in published, "no path of this machine, not even inside a sentence"
    assert [p["repo_id"] for p in RunStore().list_pushes(run_dir=run)][0] == repo_id


def test_private_stays_private_and_wrong_tokens_are_refused(hub_users, runs, tmp_path):
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

    run = runs["tiny-bert"]
    private_repo = f"{USER}/private-by-default"
    assert _push(run, private_repo, "--token", TOKEN).returncode == 0
    cache = tmp_path / "cache"
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download(private_repo, "config.json", token=False, cache_dir=cache)
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download(private_repo, "config.json", token=OTHER_TOKEN, cache_dir=cache)
    with pytest.raises(HfHubHTTPError):
        hf_hub_download(private_repo, "config.json", token="hf_wrong", cache_dir=cache)
    assert Path(hf_hub_download(private_repo, "config.json", token=TOKEN, cache_dir=cache)).is_file()

    public_repo = f"{USER}/public-by-choice"
    public = _push(run, public_repo, "--token", TOKEN, "--public")
    assert public.returncode == 0 and json.loads(public.stdout)["private"] is False
    assert Path(hf_hub_download(public_repo, "config.json", token=False, cache_dir=cache)).is_file()

    # An existing repo keeps its visibility; the person is told.
    again = _push(run, private_repo, "--token", TOKEN, "--public")
    result = json.loads(again.stdout)
    assert result["private"] is True and "visibility was left" in result["notes"][0]
    assert result["changed"] is False, "the same files again make no new commit"
    default = json.loads(_push(run, public_repo, "--token", TOKEN).stdout)
    assert default["private"] is False and "visibility was left" in default["notes"][0], "told, not silently public"

    wrong = run_zoo("push", str(run), "--repo-id", f"{USER}/never", "--token", "hf_wrong")
    assert wrong.returncode == 1 and "401" in wrong.stderr and len(wrong.stderr.strip().splitlines()) == 1
    foreign = run_zoo("push", str(run), "--repo-id", f"{USER}/not-mallorys", "--token", OTHER_TOKEN)
    assert foreign.returncode == 1 and "403" in foreign.stderr
    assert f"{USER}/never" not in hub_users.store.repos and f"{USER}/not-mallorys" not in hub_users.store.repos


def test_push_to_a_branch_and_from_the_stored_login(hub_users, runs, tmp_path):
    run = runs["test_resnet.r160_in1k"]
    repo_id = f"{USER}/branched"
    home = tmp_path / "hf-home"
    home.mkdir()
    (home / "token").write_text(TOKEN)   # what `hf auth login` leaves behind
    pushed = _push(run, repo_id, "--branch", "experiment", "--commit-message", "first try",
                   env={"HF_HOME": str(home)})
    assert pushed.returncode == 0, pushed.stderr
    result = json.loads(pushed.stdout)
    assert result["branch"] == "experiment" and result["url"].endswith("/tree/experiment")
    repo = hub_users.store.repos[repo_id]
    assert "model.safetensors" in hub_users.store.resolve(repo_id, "experiment").files
    assert "model.safetensors" not in hub_users.store.resolve(repo_id, "main").files
    assert repo.commits[-1].message == "first try"
    card = hub_users.store.blob_bytes(hub_users.store.resolve(repo_id, "experiment").files["README.md"]).decode()
    assert f'hf-hub:{repo_id}@experiment' in card, "the card's snippet loads the branch it was pushed to"


def test_pushing_another_run_to_a_repo_replaces_its_files(hub_users, runs):
    repo_id = f"{USER}/replaced"
    assert _push(runs["tiny-bert"], repo_id, "--token", TOKEN).returncode == 0
    assert "tokenizer_config.json" in hub_users.store.resolve(repo_id, "main").files
    replaced = _push(runs["test_resnet.r160_in1k"], repo_id, "--token", TOKEN)
    assert replaced.returncode == 0, replaced.stderr
    files = set(hub_users.store.resolve(repo_id, "main").files)
    assert files == {f["path"] for f in json.loads(replaced.stdout)["files"]} | {".gitattributes"}
    assert "tokenizer_config.json" not in files


def test_push_refuses_unfinished_runs_and_bad_repo_ids(hub_users, runs, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(runs["tiny-bert"], copy)
    record = json.loads((copy / "zoo_run.json").read_text())
    (copy / "zoo_run.json").write_text(json.dumps({**record, "status": "running"}))
    unfinished = run_zoo("push", str(copy), "--repo-id", f"{USER}/unfinished", "--token", TOKEN)
    assert unfinished.returncode == 2 and "has not finished" in unfinished.stderr and "--resume" in unfinished.stderr
    (copy / "zoo_run.json").write_text(json.dumps({**record, "status": "failed", "error": "RuntimeError: boom"}))
    failed = run_zoo("push", str(copy), "--repo-id", f"{USER}/unfinished", "--token", TOKEN)
    assert failed.returncode == 2 and "boom" in failed.stderr
    bad = run_zoo("push", str(runs["tiny-bert"]), "--repo-id", "no-namespace", "--token", TOKEN)
    assert bad.returncode == 2 and "NAMESPACE/NAME" in bad.stderr
    no_token = run_zoo("push", str(runs["tiny-bert"]), "--repo-id", f"{USER}/x", env={"HF_HOME": str(tmp_path)})
    assert no_token.returncode == 1 and "HF_TOKEN" in no_token.stderr
    bad_branch = run_zoo("push", str(runs["tiny-bert"]), "--repo-id", f"{USER}/x", "--branch", "", "--token", TOKEN)
    assert bad_branch.returncode == 2 and "--branch" in bad_branch.stderr
    offline = run_zoo("push", str(runs["tiny-bert"]), "--repo-id", f"{USER}/x", "--token", TOKEN,
                      env={"HF_HUB_OFFLINE": "1"})
    assert offline.returncode == 1 and "HF_HUB_OFFLINE" in offline.stderr
    (copy / "zoo_run.json").write_text(json.dumps(record))
    for weights in copy.glob("*.safetensors"):
        weights.unlink()
    no_weights = run_zoo("push", str(copy), "--repo-id", f"{USER}/x", "--token", TOKEN)
    assert no_weights.returncode == 2 and "no model weights" in no_weights.stderr
    assert f"{USER}/x" not in hub_users.store.repos
    assert f"{USER}/unfinished" not in hub_users.store.repos


def test_connection_broken_mid_push_is_a_clean_error_and_pushing_again_completes(hub_users, runs):
    run = runs["tiny-wav2vec2"]
    repo_id = f"{USER}/interrupted"
    before = len(RunStore().list_pushes(run_dir=run))
    hub_users.store.drop_next("commit")
    broken = run_zoo("push", str(run), "--repo-id", repo_id, "--token", TOKEN)
    assert broken.returncode == 1
    assert broken.stderr.startswith("Error: the connection to") and "committing to" in broken.stderr
    assert "run the same command again" in broken.stderr and len(broken.stderr.strip().splitlines()) == 1
    assert broken.stdout == "", "nothing is reported as published"
    assert "model.safetensors" not in hub_users.store.resolve(repo_id, "main").files
    assert len(RunStore().list_pushes(run_dir=run)) == before

    again = _push(run, repo_id, "--token", TOKEN)
    assert again.returncode == 0, again.stderr
    result = json.loads(again.stdout)
    assert result["changed"] and "model.safetensors" in hub_users.store.resolve(repo_id, "main").files
    assert len(RunStore().list_pushes(run_dir=run)) == before + 1


def test_token_is_never_printed_or_written(hub_users, runs, datasets, tmp_path):
    """Every command runs with a token at hand; push and fetch take it each way (--token, HF_TOKEN, the stored
    login), with and without the newline a paste leaves, and fail with wrong or malformed ones, ZOO_DEBUG=1 too.
    No output and no file any of them wrote contains a token."""
    home, cache, config = tmp_path / "hf-home", tmp_path / "cache", tmp_path / "config"
    home.mkdir()
    login = home / "token"                 # what `hf auth login` leaves behind: the one file allowed to hold it
    env = {"HF_HOME": str(home), "XDG_CACHE_HOME": str(cache), "XDG_CONFIG_HOME": str(config),
           "ZOO_STORE": str(tmp_path / "runs.sqlite")}
    run = tmp_path / "run"
    wrong, malformed = OTHER_TOKEN + "x", "hf_zooTestMalformed TokenSecondHalf"
    ways = {  # how the token is given: extra arguments, extra environment, the stored login's content
        "--token": lambda token: (["--token", token], {}, None),
        "HF_TOKEN": lambda token: ([], {"HF_TOKEN": token}, None),
        "login": lambda token: ([], {}, token),
    }
    commands = [  # (arguments, extra environment, stored login, exit code)
        (["list"], {}, None, 0), (["info", "tiny-bert", "-r", *REGISTRY], {}, None, 0), (["plugins"], {}, None, 0),
        (["recommend", "--task", "text-cls", "-r", *REGISTRY], {"HF_TOKEN": TOKEN + "\n"}, None, 0),
        (["adapt", "tiny-bert", "--data", str(datasets["text-cls"]), "--output", str(run), "--epochs", "1",
          "--strategy", "linear", "-r", *REGISTRY], {"HF_TOKEN": TOKEN}, None, 0),
        (["predict", str(run), "a fine day"], {"HF_TOKEN": TOKEN}, None, 0),
        (["bench", str(run), "--iters", "3", "--warmup", "1", "--batch-sizes", "1"], {"HF_TOKEN": TOKEN + "\n"},
         None, 0),
        (["runs"], {"HF_TOKEN": TOKEN}, TOKEN, 0), (["runs", "show", "1"], {}, TOKEN + "\n", 0),
    ]
    for give in ways.values():
        for ending, output in (("", []), ("\n", ["--json"])):
            args, extra, stored = give(TOKEN + ending)
            commands += [(["fetch", "tiny-bert", "-r", *REGISTRY, *output, *args], extra, stored, 0),
                         (["push", str(run), "--repo-id", f"{USER}/token-check", *output, *args], extra, stored, 0)]
        # Refused: a token the Hub does not know (401), shown under ZOO_DEBUG=1 with the whole traceback.
        args, extra, stored = give(wrong + "\n")
        commands.append((["push", str(run), "--repo-id", f"{USER}/token-check-2", *args], {**extra, "ZOO_DEBUG": "1"},
                         stored, 1))
        # Malformed: a space inside (line breaks are dropped, as huggingface_hub does); refused before sending.
        args, extra, stored = give(malformed)
        commands.append((["push", str(run), "--repo-id", f"{USER}/token-check-3", *args], extra, stored, 2))
    commands.append((["push", str(run), "--repo-id", f"{OTHER_USER}/token-check"], {"HF_TOKEN": TOKEN}, None, 1))
    outputs = []
    for command, extra, stored, code in commands:
        if stored is None:
            login.unlink(missing_ok=True)
        else:
            login.write_text(stored)
        result = run_zoo(*command, env={**env, **extra})
        outputs.append(result.stdout + result.stderr)
        assert result.returncode == code, (command, extra, result.stderr)
        if "ZOO_DEBUG" in extra:
            assert "Traceback" in result.stderr and "401" in result.stderr, result.stderr
        elif code == 2:
            assert result.stderr.startswith("Error: ") and "has a space or a control character" in result.stderr
    login.unlink(missing_ok=True)
    secrets = [TOKEN, wrong, *malformed.split()]
    for secret in secrets:
        assert not any(secret in output for output in outputs), secret
        for root in (home, cache, config, run, tmp_path):
            for path in root.rglob("*"):
                if path.is_file():
                    assert secret.encode() not in path.read_bytes(), path
    for blob in {blob for repo in hub_users.store.repos.values() for commit in repo.commits
                 for blob in commit.files.values()}:
        assert not any(secret.encode() in hub_users.store.blob_bytes(blob) for secret in secrets)


def test_error_renderer_scrubs_messages_tracebacks_logs_and_warnings(monkeypatch, capsys):
    """What a library prints or raises may quote a request header; handle_errors hides every known token in it."""
    import io
    import logging
    import warnings

    import typer

    from zoo.cli._common import handle_errors, remember_token

    remember_token("hf_zooGivenOnTheCommandLine\n")
    monkeypatch.setenv("HF_TOKEN", TOKEN + "\n")
    secrets = ["hf_zooGivenOnTheCommandLine", TOKEN]
    header = "Illegal header value b'Bearer hf_zooGivenOnTheCommandLine\\n'"   # as the HTTP client quotes it
    stream, logger = io.StringIO(), logging.getLogger("zoo-test-scrub")
    handler = logging.StreamHandler(stream)
    logger.addHandler(handler)
    for debug in ("0", "1"):
        monkeypatch.setenv("ZOO_DEBUG", debug)
        with warnings.catch_warnings(record=True) as caught, pytest.raises(typer.Exit):
            warnings.simplefilter("always")
            with handle_errors():
                logger.warning("request failed: %s", header)
                try:
                    raise ValueError(header)
                except ValueError:
                    logger.exception("with %s", TOKEN)
                warnings.warn(f"token {TOKEN} is deprecated", UserWarning, stacklevel=1)
                raise RuntimeError(header) from ValueError(TOKEN)
        rendered = capsys.readouterr().err
        assert ("Traceback" in rendered) == (debug == "1") and "RuntimeError: Illegal header value" in rendered
        shown = rendered + stream.getvalue() + "".join(str(w.message) for w in caught)
        assert shown.count("[token hidden]") >= 5 and not any(secret in shown for secret in secrets), shown
    logger.removeHandler(handler)


# --- zoo fetch and offline work -----------------------------------------------------------------------------------


def test_fetch_then_every_command_works_offline(hub, datasets, tmp_path):
    env = {"HF_HOME": str(tmp_path / "hf-home"), "ZOO_STORE": str(tmp_path / "runs.sqlite"),
           "XDG_CACHE_HOME": str(tmp_path / "cache")}
    fetched = run_zoo("fetch", "tiny-bert", "test_resnet.r160_in1k", "-r", *REGISTRY, "--json", env=env)
    assert fetched.returncode == 0, fetched.stderr
    results = {r["backbone"]: r for r in json.loads(fetched.stdout)}
    for name, result in results.items():
        assert result["status"] == "fetched" and result["files"] > 0
        assert result["commit"] == hub.store.resolve(FIXTURES[name].source, "main").sha, "the resolved commit"
    assert {f["backbone"] for f in RunStore(tmp_path / "runs.sqlite").list_fetches()} == set(results)

    # No server at all now: a closed port, and offline mode.
    offline = {**env, "HF_HUB_OFFLINE": "1", "HF_ENDPOINT": "http://127.0.0.1:9"}
    run = tmp_path / "run"
    adapt = run_zoo("adapt", "tiny-bert", "--data", str(datasets["text-cls"]), "--output", str(run), "--epochs",
                    "1", "--strategy", "full", "-r", *REGISTRY, "--json", env=offline)
    assert adapt.returncode == 0, adapt.stderr
    image_run = tmp_path / "image-run"
    adapt_image = run_zoo("adapt", "test_resnet.r160_in1k", "--data", str(datasets["image-cls"]), "--output",
                          str(image_run), "--epochs", "1", "--strategy", "linear", "-r", *REGISTRY, env=offline)
    assert adapt_image.returncode == 0, adapt_image.stderr
    for command in (["predict", str(run), "what a lovely film", "--json"],
                    ["bench", "tiny-bert", "-r", *REGISTRY, "--iters", "3", "--warmup", "1", "--batch-sizes", "1",
                     "--json"],
                    ["bench", str(image_run), "--iters", "3", "--warmup", "1", "--batch-sizes", "1", "--json"],
                    ["recommend", "--task", "text-cls", "-r", *REGISTRY, "--json"]):
        result = run_zoo(*command, env=offline)
        assert result.returncode == 0, (command, result.stderr)
        json.loads(result.stdout)
    # Ranking on data offline scores what was fetched, and says how to fetch the rest.
    ranked = run_zoo("recommend", "--task", "text-cls", "--data", str(datasets["text-cls"]), "--candidates",
                     "tiny-bert,distilbert-base-uncased", "--bootstrap", "3", "-r", *REGISTRY,
                     env={**offline, "COLUMNS": "200", "ZOO_FEATURE_CACHE": str(tmp_path / "features")})
    assert ranked.returncode == 0, ranked.stderr
    assert "Next: zoo adapt tiny-bert" in ranked.stdout and "run 'zoo fetch distilbert-base-uncased'" in ranked.stdout


def _pinned_registry(folder: Path, name: str, source: str, revision: str) -> str:
    """A registry file with a copy of fixture entry ``name`` renamed "pinned-NAME", served from ``source`` and
    pinned to ``revision``."""
    blocks = FIXTURE_REGISTRY.read_text().split("[[backbone]]")
    block = next(b for b in blocks if f'name = "{name}"\n' in b)
    block = block.replace(f'name = "{name}"', f'name = "pinned-{name}"').replace(
        f'source = "{FIXTURES[name].source}"', f'source = "{source}"\nrevision = "{revision}"')
    registry = folder / "pinned.toml"
    registry.write_text("[[backbone]]" + block)
    return str(registry)


@pytest.mark.parametrize(("name", "pin"), [("tiny-bert", "commit"), ("test_resnet.r160_in1k", "branch")])
def test_fetch_downloads_the_pinned_revision_and_offline_work_uses_it(name, pin, hub, datasets, tmp_path):
    """The repo moves on after the pin: fetch downloads the pinned files only, and offline commands load them."""
    from tiny_models import TINY_REPOS, seeded

    repo_id = f"zoo-test/pinned-{name}-{pin}"
    build = TINY_REPOS[FIXTURES[name].source]
    shas = []
    for version in (0, 1):
        folder = tmp_path / f"v{version}"
        with seeded(repo_id, salt=version):
            build(folder)
        shas.append(hub.store.add_repo(repo_id, folder, message=f"version {version}"))
        if version == 0 and pin == "branch":
            hub.store.create_branch(repo_id, "v0")
    pinned, head = (hub.store.resolve(repo_id, sha) for sha in shas)
    assert pinned.files["model.safetensors"] != head.files["model.safetensors"], "the versions differ"
    revision = shas[0] if pin == "commit" else "v0"
    registry = _pinned_registry(tmp_path, name, repo_id, revision)
    env = {"HF_HOME": str(tmp_path / "hf-home"), "ZOO_STORE": str(tmp_path / "runs.sqlite")}

    fetched = run_zoo("fetch", f"pinned-{name}", "-r", registry, "--json", env=env)
    assert fetched.returncode == 0, fetched.stderr
    [result] = json.loads(fetched.stdout)
    assert (result["revision"], result["commit"]) == (revision, shas[0])
    snapshots = tmp_path / "hf-home" / "hub" / f"models--{repo_id.replace('/', '--')}" / "snapshots"
    assert [p.name for p in snapshots.iterdir()] == [shas[0]], "only the pinned commit is in the cache"

    offline = {**env, "HF_HUB_OFFLINE": "1", "HF_ENDPOINT": "http://127.0.0.1:9"}
    task = FIXTURES[name].tasks[0]
    run = tmp_path / "run"
    adapt = run_zoo("adapt", f"pinned-{name}", "--data", str(datasets[task]), "--output", str(run), "--epochs", "1",
                    "--strategy", "linear", "-r", registry, env=offline)
    assert adapt.returncode == 0, adapt.stderr
    assert json.loads((run / "zoo_run.json").read_text())["backbone"]["revision"] == revision
    bench = run_zoo("bench", f"pinned-{name}", "-r", registry, "--iters", "3", "--warmup", "1", "--batch-sizes", "1",
                    "--json", env=offline)
    assert bench.returncode == 0, bench.stderr

    # A pin the repo does not have is reported, not silently replaced by the head.
    missing = _pinned_registry(tmp_path, name, repo_id, "f" * 40)
    failed = run_zoo("fetch", f"pinned-{name}", "-r", missing, "--json", env=env)
    assert failed.returncode == 1
    [result] = json.loads(failed.stdout)
    assert result["status"] == "failed" and "revision 'ffff" in result["error"] and "not found" in result["error"]


@pytest.mark.parametrize("command", [
    ["adapt", "tiny-bert", "--data", "{text}", "--epochs", "1"],
    ["bench", "tiny-wav2vec2"],
    ["adapt", "test_vit.r160_in1k", "--data", "{images}", "--epochs", "1"],
], ids=["adapt-text", "bench-audio", "adapt-image"])
def test_offline_without_fetch_says_to_run_zoo_fetch(command, hub, datasets, tmp_path):
    env = {"HF_HOME": str(tmp_path / "empty-hf-home"), "HF_HUB_OFFLINE": "1", "HF_ENDPOINT": "http://127.0.0.1:9"}
    args = [arg.format(text=datasets["text-cls"], images=datasets["image-cls"]) for arg in command]
    result = run_zoo(*args, "-r", *REGISTRY, "--output" if args[0] == "adapt" else "--json",
                     *([str(tmp_path / "run")] if args[0] == "adapt" else []), env=env)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and f"zoo fetch {args[1]}" in lines[0], result.stderr
    assert not (tmp_path / "run").exists()


def test_fetch_errors_are_reported_per_backbone(hub, tmp_path):
    env = {"HF_HOME": str(tmp_path / "hf-home"), "ZOO_STORE": str(tmp_path / "runs.sqlite")}
    # --task adds the top recommendations; those from the core registry are not on the test server: each is
    # reported, and the others are still fetched.
    top = [c.name for c in api.recommend("text-cls", top=3, registry_files=REGISTRY).candidates]
    missing = [name for name in top if name not in FIXTURES]
    assert missing, "the core registry has text backbones the test server does not serve"
    result = run_zoo("fetch", "tiny-bert", "--task", "text-cls", "--top", "3", "-r", *REGISTRY, "--json", env=env)
    assert result.returncode == 1
    rows = {r["backbone"]: r for r in json.loads(result.stdout)}
    assert set(rows) == {"tiny-bert", *top}
    assert rows["tiny-bert"]["status"] == "fetched"
    failed = [r for r in rows.values() if r["status"] == "failed"]
    assert {r["backbone"] for r in failed} == set(missing) and all("not found" in r["error"] for r in failed)
    assert result.stderr.count("\n") == 1 and all(name in result.stderr for name in missing)
    assert run_zoo("fetch", env=env).returncode == 2
    offline = run_zoo("fetch", "tiny-bert", "-r", *REGISTRY, env={**env, "HF_HUB_OFFLINE": "1"})
    assert offline.returncode == 2 and "HF_HUB_OFFLINE" in offline.stderr
    unknown = run_zoo("fetch", "tiny-bertt", "-r", *REGISTRY, env=env)
    assert unknown.returncode != 0 and "tiny-bert" in unknown.stderr
    assert os.environ.get("HF_HUB_OFFLINE") == "0"


def test_wilson_interval_matches_the_textbook_value():
    from zoo.runs.card import wilson_interval

    low, high = wilson_interval(0.5, 8)           # 4 of 8: Wilson 95% is 0.2152 to 0.7848
    assert (round(low, 4), round(high, 4)) == (0.2152, 0.7848)
    low, high = wilson_interval(1.0, 20)          # never above 1, and not degenerate at 100%
    assert high == 1.0 and 0.83 < low < 0.84
