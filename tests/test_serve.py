"""zoo serve: /predict and the Open Inference Protocol v2 answer what zoo predict answers, for each task type and both
backends; requests are batched; bad input is a 4xx and never fails its batch-mates; metrics count it all; a real
server answers an OIP client and drains on SIGTERM."""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import SERVE_BACKBONES, val_inputs
from typer.testing import CliRunner

from zoo import api
from zoo.cli import app as cli_app
from zoo.errors import InvalidInputError

fastapi = pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402


def _expected(target: Path, inputs: list[str]) -> list[dict[str, float]]:
    return [{e["label"]: e["score"] for e in p.labels} for p in api.predict(target, inputs, top_k=50)]


def _scores(labels: list[dict]) -> dict[str, float]:
    return {e["label"]: e["score"] for e in labels}


def _b64(path: str) -> str:
    return base64.b64encode(Path(path).read_bytes()).decode()


def _predict_request(task: str, inputs: list[str], *, multipart: bool) -> dict:
    """The /predict request body for ``inputs``: JSON texts, multipart files, or JSON base64 files."""
    if task == "text-cls":
        return {"json": {"inputs": inputs}}
    if multipart:
        return {"files": [("files", (Path(p).name, Path(p).read_bytes())) for p in inputs]}
    return {"json": {"inputs": [{"b64": _b64(p)} for p in inputs]}}


def _v2_request(task: str, inputs: list[str], name: str) -> dict:
    data = inputs if task == "text-cls" else [_b64(p) for p in inputs]
    return {"id": "req-1", "inputs": [{"name": name, "shape": [len(data)], "datatype": "BYTES", "data": data}],
            "parameters": {"top_k": 50}}


@pytest.fixture(scope="module")
def served(serve_runs):
    """A TestClient on each task's run (torch), started on first use and stopped at the end of the module."""
    clients: dict[str, TestClient] = {}

    def client(task: str) -> TestClient:
        if task not in clients:
            clients[task] = TestClient(api.serving_app(serve_runs(task), max_wait_ms=20, max_body_mb=1))
            clients[task].__enter__()
        return clients[task]

    yield client
    for client in clients.values():
        client.__exit__(None, None, None)


@pytest.mark.parametrize("task", sorted(SERVE_BACKBONES))
def test_predict_and_v2_infer_answer_what_zoo_predict_answers(task, serve_runs, served):
    run = serve_runs(task)
    inputs = val_inputs(run)
    expected = _expected(run, inputs)
    client = served(task)
    labels = json.loads((run / "zoo_run.json").read_text())["labels"]
    for multipart in (False, True):
        answer = client.post("/predict?top_k=50", **_predict_request(task, inputs, multipart=multipart))
        assert answer.status_code == 200, answer.text
        got = [_scores(p["labels"]) for p in answer.json()["predictions"]]
        assert [sorted(g) for g in got] == [sorted(labels)] * len(inputs)
        for mine, theirs in zip(got, expected, strict=True):
            assert mine == pytest.approx(theirs, abs=1e-5)
    # The default top-k (5, or every label when there are fewer) and best first.
    default = client.post("/predict", **_predict_request(task, inputs[:1], multipart=False)).json()
    ranked = default["predictions"][0]["labels"]
    assert len(ranked) == min(5, len(labels)) and [e["score"] for e in ranked] == sorted(
        (e["score"] for e in ranked), reverse=True)

    metadata = client.get(f"/v2/models/{run.name}").json()
    input_name = metadata["inputs"][0]["name"]
    assert metadata["inputs"] == [{"name": input_name, "datatype": "BYTES", "shape": [-1]}]
    assert metadata["platform"] == "pytorch" and metadata["parameters"]["labels"] == labels
    assert metadata["parameters"]["backbone"] == SERVE_BACKBONES[task] and metadata["parameters"]["metrics"]
    answer = client.post(f"/v2/models/{run.name}/infer", json=_v2_request(task, inputs, input_name))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["model_name"] == run.name and body["id"] == "req-1"
    outputs = {o["name"]: o for o in body["outputs"]}
    k = len(labels)
    assert outputs["label"]["datatype"] == "BYTES" and outputs["label"]["shape"] == [len(inputs), k]
    assert outputs["score"]["datatype"] == "FP32" and outputs["score"]["shape"] == [len(inputs), k]
    for row, theirs in enumerate(expected):
        names = outputs["label"]["data"][row * k:(row + 1) * k]
        scores = outputs["score"]["data"][row * k:(row + 1) * k]
        assert dict(zip(names, scores, strict=True)) == pytest.approx(theirs, abs=1e-5)


def test_the_onnx_backend_serves_an_export_as_zoo_predict_runs_it(serve_runs):
    run = serve_runs("text-cls")
    export = api.export(run).directory
    inputs = val_inputs(run)
    expected = _expected(export, inputs)
    for target, backend in ((export, "auto"), (run, "onnx")):
        with TestClient(api.serving_app(target, backend=backend)) as client:
            answer = client.post("/predict?top_k=50", json={"inputs": inputs})
            assert answer.status_code == 200, answer.text
            for mine, theirs in zip(answer.json()["predictions"], expected, strict=True):
                assert _scores(mine["labels"]) == pytest.approx(theirs, abs=1e-5)
            metadata = client.get(f"/v2/models/{run.name}").json()
            assert metadata["platform"] == "onnxruntime_onnx" and metadata["name"] == run.name
            refused = client.post("/explain", json={"inputs": inputs[:1]})
            assert refused.status_code == 400 and "ONNX export" in refused.json()["error"]
    with pytest.raises(InvalidInputError, match="export folder"):
        api.predict(export, inputs[:1], explain=True)


def test_explain_answers_zoo_explain_one_at_a_time_and_bounded(serve_runs, served):
    run = serve_runs("text-cls")
    client = served("text-cls")
    inputs = val_inputs(run, 2)
    answer = client.post("/explain", json={"inputs": inputs})
    assert answer.status_code == 200, answer.text
    served_ones = answer.json()["explanations"]
    expected = api.explain(run, inputs, write=False)
    assert [e["input"] for e in served_ones] == ["inputs[0]", "inputs[1]"]
    for mine, theirs, text in zip(served_ones, expected, inputs, strict=True):
        assert mine["label"] == theirs.label and mine["steps"] == theirs.steps and mine["seconds"] > 0
        assert mine["completeness_error"] == pytest.approx(theirs.completeness_error, abs=1e-3)
        assert [u["name"] for u in mine["units"]] == [u.name for u in theirs.units]
        assert [u["attribution"] for u in mine["units"]] == pytest.approx([u.attribution for u in theirs.units],
                                                                           abs=1e-4)
        assert all(text[int(u["span"][0]):int(u["span"][1])] == u["name"] for u in mine["units"])
        assert mine["top"] == [u.name for u in theirs.top()] and "files" not in mine
    for query, body, word in (("?method=lime", inputs[:1], "method"), ("?steps=1000", inputs[:1], "steps"),
                              ("?target=nope", inputs[:1], "target"), ("", inputs[:1] * 5, "at most 4")):
        refused = client.post("/explain" + query, json={"inputs": body})
        assert refused.status_code == 400 and word in refused.json()["error"], refused.text
    metrics = client.get("/metrics").text
    assert 'zoo_explanations_total{method="ig"} 2.0' in metrics and "zoo_explain_seconds_bucket" in metrics


def test_the_explainer_runs_one_at_a_time_on_its_own_copy_and_refuses_past_its_queue(monkeypatch):
    import asyncio

    from zoo.serve import explainer as module

    running, most, loads = [0], [0], []
    release = threading.Event()

    def slow_explain(classifier, example, *, name, **options):
        running[0] += 1
        most[0] = max(most[0], running[0])
        release.wait(10)
        running[0] -= 1
        return [f"{classifier}:{name}"]

    monkeypatch.setattr(module, "explain_example", slow_explain)

    async def scenario():
        explainer = module.Explainer(lambda: loads.append(1) or "copy")
        explainer.start()
        waiting = [asyncio.create_task(explainer.explain([(f"x{i}", i)], method="ig", target="pred", steps=4))
                   for i in range(module.MAX_QUEUED)]
        await asyncio.sleep(0.05)
        with pytest.raises(module.ExplainerBusyError):
            await explainer.explain([("late", 0)], method="ig", target="pred", steps=4)
        release.set()
        done = await asyncio.gather(*waiting)
        await explainer.close()
        return done

    assert asyncio.run(scenario()) == [[f"copy:x{i}"] for i in range(module.MAX_QUEUED)]
    assert most[0] == 1 and loads == [1]   # one at a time, on one copy loaded once


def test_health_metadata_and_unknown_models(serve_runs, served):
    client = served("text-cls")
    name = serve_runs("text-cls").name
    assert client.get("/v2/health/live").status_code == 200
    assert client.get("/v2/health/ready").status_code == 200
    assert client.get(f"/v2/models/{name}/ready").status_code == 200
    server = client.get("/v2").json()
    assert server["name"] == "zoo" and "version" in server and server["extensions"] == []
    metadata = client.get(f"/v2/models/{name}").json()
    assert [o["name"] for o in metadata["outputs"]] == ["label", "score"]
    assert metadata["outputs"][1] == {"name": "score", "datatype": "FP32", "shape": [-1, 2]}
    for path in (f"/v2/models/{name}x", f"/v2/models/{name}x/ready"):
        answer = client.get(path)
        assert answer.status_code == 404 and name in answer.json()["error"]
    answer = client.post(f"/v2/models/{name}x/infer", json=_v2_request("text-cls", ["good"], "text"))
    assert answer.status_code == 404 and "error" in answer.json()
    # Only the outputs asked for.
    request = {**_v2_request("text-cls", ["a good film"], "text"), "outputs": [{"name": "label"}]}
    assert [o["name"] for o in client.post(f"/v2/models/{name}/infer", json=request).json()["outputs"]] == ["label"]


def _bad_requests(name: str, limit: int) -> dict[str, tuple[str, dict, int, str]]:
    """(path, request, status, a word the error holds) for each kind of bad input to a text model."""
    v2 = f"/v2/models/{name}/infer"
    return {
        "wrong content type": ("/predict", {"content": b"good", "headers": {"content-type": "text/plain"}}, 415,
                               "content type"),
        "v2 wrong content type": (v2, {"content": b"good", "headers": {"content-type": "text/plain"}}, 415,
                                  "content type"),
        "malformed json": ("/predict", {"content": b"{inputs", "headers": {"content-type": "application/json"}},
                           400, "JSON"),
        "no inputs": ("/predict", {"json": {"texts": ["good"]}}, 422, "inputs"),
        "inputs not a list": ("/predict", {"json": {"inputs": "good"}}, 422, "list"),
        "empty list": ("/predict", {"json": {"inputs": []}}, 400, "at least one"),
        "empty text": ("/predict", {"json": {"inputs": ["good", "  "]}}, 400, "inputs[1]"),
        "a number": ("/predict", {"json": {"inputs": [3]}}, 422, "inputs[0]"),
        "too many": ("/predict", {"json": {"inputs": ["good"] * (limit + 1)}}, 400, str(limit)),
        "bad top_k": ("/predict?top_k=0", {"json": {"inputs": ["good"]}}, 400, "top_k"),
        "v2 malformed": (v2, {"content": b"[", "headers": {"content-type": "application/json"}}, 400, "JSON"),
        "v2 no inputs": (v2, {"json": {"id": "x"}}, 422, "inputs"),
        "v2 wrong input name": (v2, {"json": _v2_request("text-cls", ["good"], "pixels")}, 400, "pixels"),
        "v2 wrong datatype": (v2, {"json": {"inputs": [{"name": "text", "shape": [1], "datatype": "FP32",
                                                        "data": [1.0]}]}}, 400, "FP32"),
        "v2 shape mismatch": (v2, {"json": {"inputs": [{"name": "text", "shape": [2], "datatype": "BYTES",
                                                        "data": ["good"]}]}}, 400, "shape"),
        "v2 empty text": (v2, {"json": _v2_request("text-cls", [""], "text")}, 400, "text[0]"),
        "v2 outputs not a list": (v2, {"json": {**_v2_request("text-cls", ["good"], "text"), "outputs": 3}}, 422,
                                   "outputs"),
        "v2 unknown output": (v2, {"json": {**_v2_request("text-cls", ["good"], "text"),
                                            "outputs": [{"name": "logits"}]}}, 400, "logits"),
    }


def test_bad_input_is_a_4xx_with_one_line(serve_runs, served):
    client = served("text-cls")
    cases = _bad_requests(serve_runs("text-cls").name, limit=32 * 4)
    for case, (path, request, status, word) in cases.items():
        answer = client.post(path, **request)
        assert answer.status_code == status, (case, answer.status_code, answer.text)
        error = answer.json()["error"]
        assert word in error and "\n" not in error, (case, error)


def test_undecodable_files_are_a_400_naming_the_input(serve_runs, served, tmp_path):
    from data_factory import write_corrupt_audio, write_corrupt_image

    for task, broken in (("image-cls", write_corrupt_image(tmp_path / "broken.png", truncate=True)),
                         ("audio-cls", write_corrupt_audio(tmp_path / "broken.wav"))):
        client = served(task)
        good = val_inputs(serve_runs(task), 1)
        answer = client.post("/predict", files=[("files", ("ok" + Path(good[0]).suffix, Path(good[0]).read_bytes())),
                                                ("files", (broken.name, broken.read_bytes()))])
        assert answer.status_code == 400 and "files[1] (broken" in answer.json()["error"], answer.text
        answer = client.post("/predict", json={"inputs": [{"b64": "not base64!"}]})
        assert answer.status_code == 400 and "inputs[0]" in answer.json()["error"]
        answer = client.post("/predict", json={"inputs": ["a text to an image model"]})
        assert answer.status_code == 400 and "bytes" in answer.json()["error"]


def test_bodies_over_the_limit_are_refused_with_413(served):
    client = served("text-cls")   # served with max_body_mb=1
    big = {"inputs": ["good " * 300_000]}
    answer = client.post("/predict", json=big)
    assert answer.status_code == 413 and "limit" in answer.json()["error"]

    def chunks():   # no Content-Length: the bytes are counted as they arrive
        for _ in range(40):
            yield b"x" * 65536

    answer = client.post("/predict", content=chunks(), headers={"content-type": "application/json"})
    assert answer.status_code == 413 and "limit" in answer.json()["error"]


def test_concurrent_requests_are_batched_and_bad_ones_fail_alone(serve_runs):
    run = serve_runs("text-cls")
    texts = val_inputs(run, 8)
    expected = {text: scores for text, scores in zip(texts, _expected(run, texts), strict=True)}
    with TestClient(api.serving_app(run, max_batch=16, max_wait_ms=30)) as client:
        def one(i: int):
            if i % 5 == 0:   # every fifth is bad: an empty text next to a good one
                return i, client.post("/predict?top_k=50", json={"inputs": [texts[i % 8], ""]})
            return i, client.post("/predict?top_k=50", json={"inputs": [texts[i % 8]]})

        start = time.monotonic()
        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(one, range(200), timeout=120))
        assert time.monotonic() - start < 120
        for i, answer in answers:
            if i % 5 == 0:
                assert answer.status_code == 400 and "inputs[1]" in answer.json()["error"], answer.text
            else:
                assert answer.status_code == 200, answer.text
                assert _scores(answer.json()["predictions"][0]["labels"]) == pytest.approx(expected[texts[i % 8]],
                                                                                           abs=1e-5)
        metrics = client.get("/metrics").text
    assert _sample(metrics, "zoo_requests_total", route="/predict", code="200") == 160
    assert _sample(metrics, "zoo_requests_total", route="/predict", code="400") == 40
    assert _sample(metrics, "zoo_errors_total", code="400") == 40
    assert _sample(metrics, "zoo_request_seconds_count", route="/predict") == 200
    assert _sample(metrics, "zoo_inputs_total") == 160
    batches = _sample(metrics, "zoo_batch_size_count")
    assert batches < 160, "overlapping requests were not batched"
    assert _sample(metrics, "zoo_batch_size_bucket", le="1.0") < batches, "no batch held more than one input"
    assert "zoo_queue_depth" in metrics


def _sample(text: str, name: str, **labels: str) -> float:
    """The value of the Prometheus sample ``name`` whose labels include ``labels``."""
    for line in text.splitlines():
        match = re.match(rf"{name}(?:{{(.*)}})? (\S+)$", line)
        if match:
            have = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1) or ""))
            if all(have.get(key) == value for key, value in labels.items()):
                return float(match.group(2))
    raise AssertionError(f"no sample {name} {labels} in:\n{text}")


def test_a_model_failure_is_a_500_for_its_batch_only(serve_runs, served):
    client = served("text-cls")
    batcher = client.app.state.batcher
    score = batcher.score
    calls = []

    def failing_once(items):
        calls.append(len(items))
        if len(calls) == 1:
            raise RuntimeError("out of memory, say\nsecond line")
        return score(items)

    batcher.score = failing_once
    try:
        answer = client.post("/predict", json={"inputs": ["a good film"]})
        assert answer.status_code == 500 and "RuntimeError" in answer.json()["error"]
        assert "\n" not in answer.json()["error"]
        assert client.post("/predict", json={"inputs": ["a good film"]}).status_code == 200
    finally:
        batcher.score = score
    assert client.get("/v2/health/ready").status_code == 200


def test_print_config_kserve(serve_runs):
    yaml = pytest.importorskip("yaml")
    run = serve_runs("text-cls")
    result = CliRunner().invoke(cli_app, ["serve", str(run), "--print-config", "kserve", "--max-batch", "8"])
    assert result.exit_code == 0, result.output
    runtime, service = list(yaml.safe_load_all(result.stdout))
    assert runtime["kind"] == "ServingRuntime" and runtime["spec"]["protocolVersions"] == ["v2"]
    container = runtime["spec"]["containers"][0]
    assert container["command"] == ["zoo"] and container["args"][:2] == ["serve", "/mnt/models"]
    assert "--max-batch" in container["args"] and "8" in container["args"]
    assert container["args"][container["args"].index("--port") + 1] == "8080"
    assert container["args"][container["args"].index("--host") + 1] == "0.0.0.0"
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert service["kind"] == "InferenceService"
    assert service["spec"]["predictor"]["model"]["protocolVersion"] == "v2"
    assert service["spec"]["predictor"]["model"]["runtime"] == runtime["metadata"]["name"]
    assert container["args"][container["args"].index("--name") + 1] == service["metadata"]["name"]
    as_json = CliRunner().invoke(cli_app, ["serve", str(run), "--print-config", "kserve", "--max-batch", "8",
                                           "--json"])
    assert json.loads(as_json.stdout) == [runtime, service]


# --- a real server ----------------------------------------------------------------------------------------------


class _Server:
    """`zoo serve` in a subprocess on a free port, with the URL it printed."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen([sys.executable, "-m", "zoo", "serve", *args, "--port", "0"],
                                        stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                        env={**os.environ, "ZOO_DEBUG": "1"})
        self.url = None
        deadline = time.monotonic() + 120
        lines: list[str] = []
        while self.url is None:
            line = self.process.stderr.readline()
            if not line or time.monotonic() > deadline:
                self.process.kill()
                raise AssertionError("zoo serve did not start:\n" + "".join(lines) + self.process.stderr.read())
            lines.append(line)
            found = re.search(r"(http://127\.0\.0\.1:\d+)", line)
            self.url = found.group(1) if found else None
        self._drain = threading.Thread(target=self.process.stderr.read, daemon=True)   # keep the pipe flowing
        self._drain.start()

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=60)


def test_a_real_server_answers_an_oip_client(serve_runs):
    httpclient = pytest.importorskip("tritonclient.http")
    np = pytest.importorskip("numpy")
    run = serve_runs("text-cls")
    texts = val_inputs(run, 3)
    expected = _expected(run, texts)
    server = _Server(str(run), "--json")
    try:
        printed = ""
        while not printed.endswith("}\n"):
            printed += server.process.stdout.readline()
        assert json.loads(printed) == {"url": server.url, "target": str(run)}
        client = httpclient.InferenceServerClient(server.url.removeprefix("http://"))
        assert client.is_server_live() and client.is_server_ready() and client.is_model_ready(run.name)
        metadata = client.get_model_metadata(run.name)
        assert metadata["inputs"][0]["name"] == "text"
        text = httpclient.InferInput("text", [len(texts)], "BYTES")
        text.set_data_from_numpy(np.array([t.encode() for t in texts], dtype=object), binary_data=False)
        outputs = [httpclient.InferRequestedOutput(name, binary_data=False) for name in ("label", "score")]
        result = client.infer(run.name, [text], outputs=outputs, request_id="7")
        labels, scores = result.as_numpy("label"), result.as_numpy("score")
        assert labels.shape == scores.shape == (len(texts), 2) and result.get_response()["id"] == "7"
        for row, theirs in enumerate(expected):
            names = [v.decode() if isinstance(v, bytes) else v for v in labels[row]]
            assert dict(zip(names, scores[row].tolist(), strict=True)) == pytest.approx(theirs, abs=1e-5)
        client.close()
    finally:
        code = server.stop()
    assert code == 0


def test_sigterm_under_load_finishes_every_accepted_request(serve_runs):
    import httpx

    run = serve_runs("text-cls")
    texts = val_inputs(run, 8)
    expected = {text: scores for text, scores in zip(texts, _expected(run, texts), strict=True)}
    # A long batching window keeps requests waiting in the queue when the signal comes.
    server = _Server(str(run), "--max-wait-ms", "300", "--max-batch", "64")
    sent = threading.Barrier(25)

    def one(i: int):
        with httpx.Client(base_url=server.url, timeout=60) as client:
            sent.wait(timeout=30)
            try:
                return client.post("/predict?top_k=50", json={"inputs": [texts[i % 8]]}), i
            except httpx.TransportError as exc:   # not accepted: the server had stopped listening
                return exc, i

    with ThreadPoolExecutor(24) as pool:
        futures = [pool.submit(one, i) for i in range(24)]
        sent.wait(timeout=30)
        time.sleep(0.15)
        code = server.stop()
        results = [future.result(timeout=60) for future in futures]
    assert code == 0
    answered = [(answer, i) for answer, i in results if isinstance(answer, httpx.Response)]
    assert answered, "no request was in flight when the signal came"
    for answer, i in answered:
        assert answer.status_code == 200, answer.text
        assert _scores(answer.json()["predictions"][0]["labels"]) == pytest.approx(expected[texts[i % 8]], abs=1e-5)
