"""`zoo serve` under load: closed-loop clients against dynamic batching, batch 1, the hand-written peer and ONNX.

Nothing downloaded. The model is a text run that learned its task: `benchmarks/quality.py`'s text task (imported,
not copied) on a BERT-mini-shaped encoder (4 layers, 256 wide, 4 heads; the shape of Google's BERT-Mini), pretrained
here on quality.py's source task and adapted with `zoo.api.adapt` and its defaults, then exported with
`zoo.api.export(run)`. A BERT-base-shaped model would take too long per request on a 2-core CPU for these request
counts; a 2-layer, 128-wide one costs less than the HTTP round trip, so it would measure mostly the web stack.

Five servers, each a subprocess on a free 127.0.0.1 port, all started first and stopped with SIGTERM at the end:

- `zoo serve RUN` (dynamic batching, the defaults: --max-batch 32, --max-wait-ms 5);
- `zoo serve RUN --max-batch 1`;
- the peer a user writes by hand: FastAPI on uvicorn around a transformers `pipeline("text-classification",
  model=RUN)`, one request at a time in the handler (`peer_app` below; `--app peer RUN --port N` runs it);
- `zoo serve RUN/onnx` (the run's ONNX export: onnxruntime, dynamic batching, the defaults);
- zoo's app, `zoo.api.serving_app(RUN)` with the defaults, served by `uvicorn.run(app, host, port)` as the peer
  is (`--app zoo RUN --port N`): a check that `zoo serve`'s own server start (its socket bound first, so the URL
  can be printed; `server_note`) costs nothing per request.

Every server computes on the same number of threads (`--threads`, default 1, set as OMP_NUM_THREADS: torch and
zoo's onnxruntime sessions follow it). On a 2-core machine that also runs the clients (and other work), two
compute threads wait on each other at every operator: a batch-1 forward of this model took 5 ms on one thread and
from 26 to 150 ms on two while this was written.

Load: at each concurrency (1, 8, 32), C clients on 127.0.0.1, each with one keep-alive connection, send one text
per request (`POST /predict`, JSON `{"inputs": [text]}`, the target's test texts in turn) and wait for the answer
before sending the next: a closed loop, bounded by a request count and a time limit, after a few warm-up requests.
The servers take turns at each concurrency, so a change in the shared machine's load falls on all of them. Latency
is measured by the client, from sending to the last byte of the answer; an answer other than 200 with labels, a
broken connection or a 30 s wait is an error. zoo's `/metrics` give the batch sizes each level ran.

Targets (issue 15, on CPU): `zoo serve` with dynamic batching ≥ 2× the peer's requests/s at concurrency 32, with
p99 no worse than 3× its own batch-1 p50 (`zoo serve --max-batch 1` at concurrency 1).

    python benchmarks/serve_load.py [--write] [--quick] [--threads 1]

It took about 5 minutes on a 2-core CPU shared with other work. `--quick` is a smoke run of under 2 minutes (tiny
pretraining and training, few requests); its figures mean nothing and --write refuses them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from _report import machine, table, write_section
from pydantic import BaseModel
from quality import QUICK_EPOCHS, TextModality, isolate

LEVELS = (1, 8, 32)                                   # concurrent clients
REQUESTS = {1: 300, 8: 800, 32: 1600}                 # requests per level at most ...
SECONDS = 25.0                                        # ... and seconds per level at most
QUICK_REQUESTS = {1: 20, 8: 60, 32: 120}
QUICK_SECONDS = 5.0
WARMUP = 2                                            # warm-up requests per client, not counted
REQUEST_TIMEOUT = 30.0                                # seconds: a longer wait is an error
START_TIMEOUT = 180.0                                 # seconds for a server to load its model and listen
THROUGHPUT_TARGET = 2.0                               # zoo serve (batching) / peer requests/s at concurrency 32
P99_TARGET = 3.0                                      # its p99 / its own batch-1 p50
TARGET_LEVEL = 32
MODEL_TIMING_CALLS = 20                               # direct timings of the model at batch 1 and the mean batch

SCRIPT = Path(__file__).resolve()                   # before the run moves into its scratch folder
BATCHING, BATCH_1, PEER, ONNX = "zoo serve", "zoo serve --max-batch 1", "peer: FastAPI + pipeline", \
    "zoo serve, ONNX export"
NODELAY = "zoo's app, uvicorn.run"


# --- the model --------------------------------------------------------------------------------------------------

class MiniText(TextModality):
    """quality.py's text task on a larger encoder: BERT-Mini's shape."""

    LAYERS, WIDTH = 4, 256
    PRETRAIN_STEPS = 400               # the source task is learned well before quality.py's 800 at this size


@dataclass
class Model:
    run: Path
    texts: list[str]                   # the target's test texts: what the clients send
    about: str


def build_run(work: Path, *, quick: bool) -> Model:
    """Pretrain the encoder, adapt it with zoo's defaults (seed 0) and export the run to ONNX (RUN/onnx)."""
    from zoo import api
    from zoo.engine.config import AdaptConfig

    modality = MiniText(work / "text", quick=quick)
    print("pretraining the encoder", file=sys.stderr)
    modality.encoder = modality.build_encoder()
    registry = modality.work / "registry.toml"
    registry.write_text(modality.encoder.registry_block)
    target = modality.make_target(0)
    run = work / "run"
    print("adapting and exporting", file=sys.stderr)
    record = api.adapt(modality.encoder.name, target.paths["train"], val=target.paths["val"],
                       test=target.paths["test"], output=run, config=AdaptConfig(
                           seed=0, **({"epochs": QUICK_EPOCHS} if quick else {})),
                       registry_files=[registry], store=False, device="cpu")
    api.export(run)
    test = record["metrics"]["test"]
    pooling = json.loads((run / "config.json").read_text()).get("zoo_pooling") or "the native [CLS] head"
    about = (f"{modality.encoder.summary}. `zoo adapt` with its defaults kept `{record['strategy']}` (pooling: "
             f"{pooling}), test accuracy {test['accuracy']:.3f}, macro-F1 {test['macro_f1']:.3f} on "
             f"{len(target.labels['test'])} test texts of {len(set(target.labels['test'].tolist()))} classes")
    return Model(run, list(target.inputs["test"]), about)


def model_timings(run: Path, sizes: tuple[int, ...], texts: list[str], threads: int) -> dict[int, float]:
    """Median ms of the run's model alone (zoo's preprocessing done beforehand, then `score_items`) per batch
    size, on ``threads`` threads: what a batch costs without HTTP."""
    import torch

    from zoo.engine.predict import score_items
    from zoo.loading import load_saved
    from zoo.plugins import get_plugin_manager

    torch.set_num_threads(threads)
    classifier = load_saved(run, get_plugin_manager().families)
    items = [classifier.preprocess(text) for text in texts]
    timings = {}
    for size in sizes:
        batch = [items[i % len(items)] for i in range(size)]
        score_items(classifier, batch, precision="fp32")
        samples = []
        for _ in range(MODEL_TIMING_CALLS):
            started = time.perf_counter()
            score_items(classifier, batch, precision="fp32")
            samples.append(1000 * (time.perf_counter() - started))
        timings[size] = float(np.median(samples))
    return timings


# --- the peer ---------------------------------------------------------------------------------------------------

class Texts(BaseModel):
    """The peer's request body (at module level, where FastAPI resolves the handler's annotation)."""

    inputs: list[str]


def peer_app(model: str):
    """What a user writes by hand: FastAPI around a transformers pipeline, answering the same JSON as
    `zoo serve`'s /predict. One request at a time: the handler holds a lock around the pipeline (a pipeline is not
    documented as thread-safe, and two forwards at once only share the same cores); FastAPI runs the plain `def`
    handler in its thread pool, so the server keeps reading requests while one computes."""
    from fastapi import FastAPI
    from transformers import pipeline

    classifier = pipeline("text-classification", model=model, top_k=5, device="cpu")
    lock = threading.Lock()
    app = FastAPI()

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/predict")
    def predict(request: Texts) -> dict[str, Any]:
        with lock:
            answers = classifier(request.inputs)
        return {"predictions": [{"labels": labels} for labels in answers]}

    return app


def run_app(kind: str, model: str, port: int) -> int:
    """Serve the peer, or zoo's own app (`zoo.api.serving_app` with its defaults), with `uvicorn.run(app, host,
    port)`, as a user would (see `server_note`). uvicorn stops on SIGTERM after the requests in flight and the
    app's shutdown."""
    import uvicorn
    from transformers.utils import logging

    logging.set_verbosity_error()
    if kind == "peer":
        app = peer_app(model)
    else:
        from zoo import api

        app = api.serving_app(model)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")
    return 0


# --- the servers ------------------------------------------------------------------------------------------------

@dataclass
class Server:
    name: str
    command: list[str]
    env: dict[str, str]
    zoo: bool                                     # zoo's app: has /metrics with batch sizes
    port: int | None = None                       # chosen here (else zoo serve --port 0 prints it)
    process: subprocess.Popen | None = None
    url: str = ""
    log: Path | None = None
    log_handle: Any = None

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.url.removeprefix("http://").rsplit(":", 1)
        return host, int(port)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(server: Server, work: Path) -> None:
    """Start ``server`` in its own session (a Ctrl-C at the terminal reaches only this script, which stops it);
    its output goes to a log file, read for zoo's URL and shown if it fails to start."""
    server.log = work / f"server-{re.sub(r'[^a-z0-9]+', '-', server.name.lower())}.log"
    server.log_handle = open(server.log, "w")   # noqa: SIM115 (closed in stop())
    server.process = subprocess.Popen(server.command, stdout=server.log_handle, stderr=subprocess.STDOUT,
                                      env=server.env, start_new_session=True)


def wait_ready(server: Server) -> None:
    import urllib.request

    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"{server.name} exited with {server.process.returncode}:\n{server.log.read_text()}")
        if not server.url:
            if server.port is None:
                found = re.search(r"(http://127\.0\.0\.1:\d+)", server.log.read_text())
                server.url = found.group(1) if found else ""
            else:
                server.url = f"http://127.0.0.1:{server.port}"
        if server.url:
            path = "/v2/health/ready" if server.zoo else "/health"
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(server.url + path, timeout=5) as answer:
                    if answer.status == 200:
                        return
        time.sleep(0.5)
    raise RuntimeError(f"{server.name} did not answer within {START_TIMEOUT:.0f} s:\n{server.log.read_text()}")


def stop(server: Server) -> int | None:
    """SIGTERM (the servers drain and exit 0), then SIGKILL if it has not ended after 30 s."""
    process = server.process
    if process is None:
        return None
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    server.log_handle.close()
    return process.returncode


# --- the clients ------------------------------------------------------------------------------------------------

@dataclass
class Load:
    server: str
    concurrency: int
    latencies_ms: list[float] = field(default_factory=list)
    errors: Counter = field(default_factory=Counter)
    seconds: float = 0.0
    batches: dict[str, float] = field(default_factory=dict)     # zoo's /metrics: mean batch size, model calls

    @property
    def done(self) -> int:
        return len(self.latencies_ms)

    @property
    def per_second(self) -> float:
        return self.done / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else float("nan")


def http_request(host: str, port: int, path: str, body: bytes) -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\n\r\n").encode() + body


async def read_answer(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """Status and body of one HTTP/1.1 answer with a Content-Length (as both servers send JSON)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length = next((int(line.split(":", 1)[1]) for line in lines[1:] if line.lower().startswith("content-length:")),
                  None)
    if length is None:
        raise ValueError("an answer without Content-Length")
    return status, await reader.readexactly(length)


async def closed_loop(server: Server, texts: list[str], *, concurrency: int, requests: int, seconds: float) -> Load:
    """``concurrency`` clients, each sending the next text once its previous answer came, until ``requests``
    have been sent or ``seconds`` have passed; after WARMUP requests per client that are not counted."""
    host, port = server.address
    bodies = [http_request(host, port, "/predict", json.dumps({"inputs": [text]}).encode()) for text in texts]
    load = Load(server.name, concurrency)
    sent = 0

    async def client(k: int, *, count: int | None, deadline: float | None, record: bool) -> None:
        nonlocal sent
        reader, writer = await asyncio.open_connection(host, port)
        done = 0
        try:
            while True:
                if count is not None and done >= count:
                    break
                if count is None and (sent >= requests or time.monotonic() >= deadline):
                    break
                i = (k * 7919 + sent + done) % len(bodies)
                done += 1
                if count is None:
                    sent += 1
                started = time.perf_counter()
                try:
                    writer.write(bodies[i])
                    status, body = await asyncio.wait_for(read_answer(reader), REQUEST_TIMEOUT)
                except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError,
                        ValueError) as exc:
                    load.errors[type(exc).__name__] += record
                    writer.close()
                    try:
                        reader, writer = await asyncio.open_connection(host, port)
                    except OSError:          # the server is gone: this client stops
                        load.errors["refused"] += record
                        return
                    continue
                if not record:
                    continue
                if status != 200 or b'"labels"' not in body:
                    load.errors[str(status)] += 1
                else:
                    load.latencies_ms.append(1000 * (time.perf_counter() - started))
        finally:
            writer.close()

    await asyncio.gather(*(client(k, count=WARMUP, deadline=None, record=False) for k in range(concurrency)))
    before = batch_metrics(server) if server.zoo else None
    started = time.monotonic()
    deadline = started + seconds
    await asyncio.gather(*(client(k, count=None, deadline=deadline, record=True) for k in range(concurrency)))
    load.seconds = time.monotonic() - started
    if before is not None:
        after = batch_metrics(server)
        calls = after["count"] - before["count"]
        load.batches = {"calls": calls, "mean": (after["sum"] - before["sum"]) / calls if calls else 0.0}
    return load


def batch_metrics(server: Server) -> dict[str, float]:
    """zoo_batch_size from /metrics: model calls so far, and the inputs in them."""
    import urllib.request

    with urllib.request.urlopen(server.url + "/metrics", timeout=10) as answer:
        text = answer.read().decode()
    value = {name: float(number) for name, number in
             re.findall(r"^zoo_batch_size_(count|sum) ([0-9.e+]+)$", text, re.M)}
    return {"count": value.get("count", 0.0), "sum": value.get("sum", 0.0)}


# --- the report -------------------------------------------------------------------------------------------------

def verdict(ok: bool) -> str:
    return "met" if ok else "**not met**"


def find(loads: list[Load], server: str, concurrency: int) -> Load:
    return next(load for load in loads if (load.server, load.concurrency) == (server, concurrency))


def rows(loads: list[Load]) -> list[list[str]]:
    peer_one = find(loads, PEER, 1).percentile(50)
    out = []
    for load in loads:
        # Batch 1 of the same server: `zoo serve --max-batch 1` for the zoo serve rows, the others' own.
        own_one = find(loads, load.server if load.server in (PEER, NODELAY) else BATCH_1, 1).percentile(50)
        peer = find(loads, PEER, load.concurrency)
        errors = ", ".join(f"{n} × {kind}" for kind, n in load.errors.items() if n) or "0"
        batches = f"{load.batches['mean']:.1f} ({load.batches['calls']:.0f} calls)" if load.batches else ""
        out.append([load.server, str(load.concurrency), str(load.done), f"{load.per_second:.1f}",
                    f"{load.percentile(50):.1f}", f"{load.percentile(95):.1f}", f"{load.percentile(99):.1f}",
                    errors, f"{load.per_second / peer.per_second:.2f}×",
                    f"{load.percentile(99) / own_one:.1f}×", f"{load.percentile(99) / peer_one:.1f}×", batches])
    return out


def server_note(loads: list[Load]) -> str:
    """`zoo serve`'s server against the same app under `uvicorn.run`: what binding the socket first costs."""
    shipped, app, peer = (find(loads, name, 1).percentile(50) for name in (BATCHING, NODELAY, PEER))
    return (
        f"At concurrency 1, `zoo serve` answers in {shipped:.1f} ms (p50, dynamic batching, so including the "
        f"5 ms batching window), the same app under `uvicorn.run(app, host, port)` in {app:.1f} ms, "
        f"and the peer in {peer:.1f} ms. `zoo serve` binds its socket itself, to print the URL it got, and sets "
        "TCP_NODELAY on it: without that, asyncio leaves Nagle's algorithm on for the connections it accepts "
        "from a socket of protocol 0, and each answer waited about 40 ms for the client's delayed ACK (found by "
        "this benchmark and fixed).")


def explanation(loads: list[Load], timings: dict[int, float], threads: int) -> str:
    """Why the latency target is (or is not) reachable: Little's law for a closed loop, and what the model alone
    costs at the batch sizes the server ran."""
    app = find(loads, BATCHING, TARGET_LEVEL)
    one = find(loads, BATCH_1, 1).percentile(50)
    needed = TARGET_LEVEL / (P99_TARGET * one / 1000)
    largest = max(timings)
    return (
        f"In a closed loop, C clients each wait for their answer, so the mean latency is C / (requests/s) "
        f"(Little's law): at concurrency {TARGET_LEVEL}, a p99 within {P99_TARGET:g}× a batch-1 p50 of "
        f"{one:.1f} ms (`--max-batch 1`, concurrency 1) needs at least {needed:.0f} requests/s "
        f"even if every request took the mean; it served {app.per_second:.0f}, in batches of "
        f"{app.batches.get('mean', 0.0):.1f} inputs on average ({app.batches.get('calls', 0):.0f} model calls). "
        f"The model alone (zoo's preprocessing done beforehand, `score_items` on {threads} "
        f"thread{'s' if threads > 1 else ''}, median of {MODEL_TIMING_CALLS} calls) takes "
        + ", ".join(f"{ms:.1f} ms at batch {size}" for size, ms in sorted(timings.items()))
        + f": a batch of {largest} costs {timings[largest] / timings[1]:.1f}× a batch of 1 in compute alone, so "
        f"{TARGET_LEVEL} waiting requests cannot all be answered within {P99_TARGET:g} single-request latencies "
        "on this CPU however they are batched. Batching shares the model's work, not the HTTP, JSON and "
        "tokenization work of each request, which the one event loop and the clients do on the same 2 cores.")


def report(model: Model, loads: list[Load], timings: dict[int, float], *, fingerprint: str, threads: int,
           load_avg: tuple[float, float], total_s: float, quick: bool, counts: dict[int, int],
           seconds: float, exits: dict[str, int | None], agreement: str) -> tuple[str, list[list[str]]]:
    import fastapi
    import transformers
    import uvicorn

    peer = find(loads, PEER, TARGET_LEVEL)
    def speed(name: str) -> float:
        return find(loads, name, TARGET_LEVEL).per_second / peer.per_second

    batching = find(loads, BATCHING, TARGET_LEVEL)
    own_one = find(loads, BATCH_1, 1).percentile(50)
    p99_ratio = batching.percentile(99) / own_one
    targets = [
        [f"`zoo serve` (dynamic batching) ≥ {THROUGHPUT_TARGET:g}× the peer's requests/s at concurrency "
         f"{TARGET_LEVEL}", f"{speed(BATCHING):.2f}× ({batching.per_second:.0f} against {peer.per_second:.0f} "
         f"requests/s); its ONNX export {speed(ONNX):.2f}×; zoo's app under `uvicorn.run` "
         f"{speed(NODELAY):.2f}×", verdict(speed(BATCHING) >= THROUGHPUT_TARGET)],
        [f"its p99 at concurrency {TARGET_LEVEL} ≤ {P99_TARGET:g}× its own batch-1 p50 (concurrency 1, "
         "`--max-batch 1`)", f"{p99_ratio:.1f}× ({batching.percentile(99):.0f} ms against {own_one:.1f} ms)",
         verdict(p99_ratio <= P99_TARGET) + ("" if p99_ratio <= P99_TARGET else
                                             ": the model's compute for a batch of 32 alone exceeds it (below)")],
    ]
    header = ["server", "concurrency", "answered", "requests/s", "p50 ms", "p95 ms", "p99 ms", "errors",
              "requests/s vs peer", "p99 / own batch-1 p50", "p99 / peer batch-1 p50", "mean batch (model calls)"]
    stopped = ", ".join(f"{name} {code}" for name, code in exits.items())
    lines = [
        "## `zoo serve` under load: dynamic batching against the hand-written peer", "",
        f"Machine: {fingerprint}; device cpu; every server computing on {threads} thread"
        f"{'s' if threads > 1 else ''} (OMP_NUM_THREADS); uvicorn {uvicorn.__version__}, FastAPI "
        f"{fastapi.__version__}, transformers {transformers.__version__}. Load average {load_avg[0]:.1f} at the "
        f"start and {load_avg[1]:.1f} at the end (the machine is shared: other work ran beside this, and the "
        f"clients ran on the same 2 cores as the servers). Reproduce: `.venv/bin/python benchmarks/serve_load.py "
        f"--write` ({total_s / 60:.0f} min here)." + (" **--quick: these figures mean nothing.**" if quick else ""),
        "",
        table(["target", "measured", ""], targets), "",
        f"The model: {model.about}. The servers: `zoo serve RUN` (dynamic batching: --max-batch 32, --max-wait-ms "
        "5), the same with `--max-batch 1`, the peer (FastAPI on uvicorn around transformers' "
        "`pipeline(\"text-classification\", model=RUN, top_k=5)`, one request at a time behind a lock in a plain "
        "`def` handler, the same JSON in and out; `peer_app` in the script), `zoo serve RUN/onnx` (the run's "
        "fp32 ONNX export on onnxruntime, dynamic batching), and zoo's app (`zoo.api.serving_app(RUN)`, the "
        f"defaults) served by `uvicorn.run`, as the peer is. {agreement}", "",
        f"Each level: C closed-loop clients on 127.0.0.1, one keep-alive connection each, one text per request, "
        f"after {WARMUP} warm-up requests per client; at most {counts[1]}, {counts[8]} and {counts[32]} requests "
        f"at concurrency 1, 8 and 32, and at most {seconds:g} s. The servers took turns at each level. Latency is "
        "the client's, from sending to the answer's last byte. Ratios: requests/s against the peer's at the same "
        "concurrency; p99 against the p50 at concurrency 1 of the same server at batch 1 (`zoo serve "
        "--max-batch 1` for the `zoo serve` rows; the peer's and zoo's app's own) and of the peer. Mean batch: "
        "inputs per model call at that level, from zoo's `/metrics` (`zoo_batch_size`).", "",
        table(header, rows(loads)), "",
        server_note(loads), "",
        explanation(loads, timings, threads), "",
        f"Exit status of each server after SIGTERM: {stopped} (uvicorn.run raises the signal again after its "
        "graceful shutdown, so those two die of it: -15).",
    ]
    glance = [[f"`zoo serve` (`benchmarks/serve_load.py`): {row[0]}", row[1], row[2]] for row in targets]
    return "\n".join(lines), glance


def agreement_line(servers: list[Server], texts: list[str]) -> str:
    """Whether the four servers answer the same top label for the first texts (a sanity check of what was timed)."""
    import urllib.request

    tops: dict[str, list[str]] = {}
    for server in servers:
        tops[server.name] = []
        for text in texts:
            request = urllib.request.Request(server.url + "/predict", json.dumps({"inputs": [text]}).encode(),
                                             {"content-type": "application/json"})
            try:
                with urllib.request.urlopen(request, timeout=30) as answer:
                    tops[server.name].append(json.loads(answer.read())["predictions"][0]["labels"][0]["label"])
            except urllib.error.HTTPError as exc:
                raise RuntimeError(f"{server.name} answered {exc.code}: {exc.read().decode()}") from exc
    reference = tops[BATCHING]
    same = {name: sum(a == b for a, b in zip(labels, reference, strict=True)) for name, labels in tops.items()}
    return (f"Top label on the first {len(texts)} test texts, the same as `zoo serve`'s: "
            + ", ".join(f"{name} {n}/{len(texts)}" for name, n in same.items() if name != BATCHING) + ".")


# --- main -------------------------------------------------------------------------------------------------------

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="write the section into docs/performance.md")
    parser.add_argument("--quick", action="store_true", help="a smoke run: tiny pretraining and training, few "
                        "requests; its figures mean nothing and --write is refused")
    parser.add_argument("--threads", type=int, default=1, help="compute threads of every server")
    # Internal: serve the peer or zoo's app with uvicorn.run (the script starts itself this way).
    parser.add_argument("--app", nargs=2, metavar=("peer|zoo", "RUN"), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.app:
        return run_app(args.app[0], args.app[1], args.port)
    if args.quick and args.write:
        parser.error("--quick figures mean nothing: they are not written")

    import torch
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()
    fingerprint = machine()
    torch.set_num_threads(args.threads)
    counts, seconds = (QUICK_REQUESTS, QUICK_SECONDS) if args.quick else (REQUESTS, SECONDS)
    started, load_start = time.monotonic(), os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="zoo-serve-load-") as tmp, contextlib.chdir(tmp):
        work = Path(tmp)
        isolate(work)
        model = build_run(work, quick=args.quick)
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads),
               "TOKENIZERS_PARALLELISM": "false"}
        zoo = [sys.executable, "-m", "zoo", "serve"]
        script = [sys.executable, str(SCRIPT)]
        peer_port, app_port = free_port(), free_port()
        servers = [Server(BATCHING, [*zoo, str(model.run), "--port", "0"], env, True),
                   Server(BATCH_1, [*zoo, str(model.run), "--port", "0", "--max-batch", "1"], env, True),
                   Server(PEER, [*script, "--app", "peer", str(model.run), "--port", str(peer_port)], env, False,
                          peer_port),
                   Server(ONNX, [*zoo, str(model.run / "onnx"), "--port", "0"], env, True),
                   Server(NODELAY, [*script, "--app", "zoo", str(model.run), "--port", str(app_port)], env, True,
                          app_port)]
        loads: list[Load] = []
        exits: dict[str, int | None] = {}
        try:
            print("starting the servers", file=sys.stderr)
            for server in servers:
                start(server, work)
            for server in servers:
                wait_ready(server)
            agreement = agreement_line(servers, model.texts[:20])
            for concurrency in LEVELS:
                for server in servers:
                    load = asyncio.run(closed_loop(server, model.texts, concurrency=concurrency,
                                                   requests=counts[concurrency], seconds=seconds))
                    loads.append(load)
                    print(f"  {server.name}, concurrency {concurrency}: {load.done} answered, "
                          f"{load.per_second:.1f}/s, p50 {load.percentile(50):.1f} ms, p99 "
                          f"{load.percentile(99):.1f} ms, errors {dict(load.errors)}, batches {load.batches}",
                          file=sys.stderr)
        finally:   # also on Ctrl-C or a failure: no server outlives the script
            for server in servers:
                exits[server.name] = stop(server)
        print("timing the model alone", file=sys.stderr)
        mean = find(loads, BATCHING, TARGET_LEVEL).batches.get("mean", 1.0)
        timings = model_timings(model.run, tuple(sorted({1, max(1, round(mean)), TARGET_LEVEL})), model.texts,
                                args.threads)
        body, glance = report(model, loads, timings, fingerprint=fingerprint, threads=args.threads,
                              load_avg=(load_start, os.getloadavg()[0]), total_s=time.monotonic() - started,
                              quick=args.quick, counts=counts, seconds=seconds, exits=exits, agreement=agreement)
    print(body)
    if args.write:
        write_section("serve_load", body)
    for row in glance:
        print(" | ".join(row), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
