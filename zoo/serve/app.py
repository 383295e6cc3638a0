"""The ASGI app of `zoo serve` (FastAPI): ``POST /predict``, ``POST /explain``, the Open Inference Protocol v2
subset (health, server and model metadata, infer), ``GET /metrics``; bodies limited in size, bad input answered with
a 4xx JSON ``{"error": "one line"}``; ``GET /`` is a page to try the model in a browser (``page.html``).

Each request is decoded and preprocessed on its own (in a thread, off the event loop) before its items join the
batcher's queue, so an input that cannot be read fails only its own request; the batcher runs the model. An
explanation runs apart from both, one at a time (:mod:`zoo.serve.explainer`).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import html
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from zoo import __version__
from zoo.errors import ZooError, one_line
from zoo.explain.attribute import check_method, check_steps
from zoo.plugins import get_plugin_manager
from zoo.serve.batcher import Batcher, BatchFailedError
from zoo.serve.explainer import MAX_INPUTS as MAX_EXPLAIN_INPUTS
from zoo.serve.explainer import MAX_STEPS as MAX_EXPLAIN_STEPS
from zoo.serve.explainer import Explainer, ExplainerBusyError
from zoo.serve.metrics import ServerMetrics
from zoo.serve.model import ServedModel, load_served
from zoo.serve.options import MAX_INPUTS_IN_BATCHES, OPTIONS_ENV, ServeOptions, decode_for_workers

log = logging.getLogger("zoo.serve")

# The page loads nothing from elsewhere: its script and style are inline, and it talks only to this server.
PAGE_POLICY = ("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; "
               "img-src data: blob:; media-src blob:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


class RequestError(Exception):
    """Bad input: answered with ``status`` and ``{"error": message}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": " ".join(str(message).split())}, status_code=status)


# --- middleware -------------------------------------------------------------------------------------------------


class _BodyLimit:
    """Refuses a body over ``limit`` bytes with 413: by its Content-Length before reading it, and by counting what
    arrives otherwise (a chunked body has no length). The body is read here, whole, and handed on."""

    def __init__(self, app, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        too_large = _error(413, f"the request body is over the limit of {self.limit / 2**20:g} MB; send fewer or "
                                "smaller inputs per request")
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                await _error(400, "Content-Length is not a number")(scope, receive, send)
                return
            if declared > self.limit:
                await too_large(scope, receive, send)
                return
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                await too_large(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        delivered = False

        async def replay():
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


class _Metrics:
    """Counts every answer by route template (never the raw path, which would grow without bound) and status."""

    def __init__(self, app, metrics: ServerMetrics, routes: Callable[[], Sequence[Any]]) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = routes

    def _route(self, scope) -> str:
        route = scope.get("route")
        if route is None:   # answered before routing (a 413): find the route it was for
            route = next((r for r in self.routes() if r.matches(scope)[0] == Match.FULL), None)
        return getattr(route, "path", None) or "other"

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def counting_send(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        finally:
            self.metrics.observe(route=self._route(scope), method=scope["method"], code=status,
                                 seconds=time.perf_counter() - start)


# --- reading requests -------------------------------------------------------------------------------------------


def _json_body(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RequestError(400, f"the body is not valid JSON ({one_line(exc)})") from None


def _b64(value: Any, name: str) -> bytes:
    if not isinstance(value, str):
        raise RequestError(400, f"{name}: expected a base64 string, got {type(value).__name__}")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(400, f"{name}: not valid base64") from None


def _check_count(count: int, options: ServeOptions) -> None:
    if count == 0:
        raise RequestError(400, "no inputs: send at least one")
    if count > options.max_inputs:
        raise RequestError(400, f"{count} inputs in one request; at most {options.max_inputs} "
                                f"({MAX_INPUTS_IN_BATCHES} × --max-batch {options.max_batch}): split it")


def _top_k(value: Any, where: str) -> int | None:
    if value is None:
        return None
    try:
        top_k = int(value)
    except (TypeError, ValueError):
        top_k = 0
    if isinstance(value, bool) or top_k < 1 or str(top_k) != str(value).strip():
        raise RequestError(400, f"{where} must be a whole number of at least 1, got {value!r}")
    return top_k


async def _predict_inputs(request: Request, model: ServedModel, options: ServeOptions) -> list[tuple[str, Any]]:
    """(name, text or file bytes) of each input of a ``/predict`` request."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/json":
        payload = _json_body(await request.body())
        if not isinstance(payload, dict) or "inputs" not in payload:
            raise RequestError(422, 'expected a JSON object {"inputs": [...]}')
        inputs = payload["inputs"]
        if not isinstance(inputs, list):
            raise RequestError(422, f'"inputs" must be a list, got {type(inputs).__name__}')
        _check_count(len(inputs), options)
        named = []
        for index, value in enumerate(inputs):
            name = f"inputs[{index}]"
            if isinstance(value, dict) and set(value) == {"b64"}:
                named.append((name, _b64(value["b64"], name)))
            elif isinstance(value, str):
                named.append((name, value))
            else:
                raise RequestError(422, f'{name}: expected a text or {{"b64": "..."}} (a file\'s bytes in base64), '
                                        f"got {type(value).__name__}")
        return named
    if content_type == "multipart/form-data":
        async with request.form(max_files=options.max_inputs + 1, max_fields=options.max_inputs + 1) as form:
            files = form.getlist("files")
            _check_count(len(files), options)
            named = []
            for index, upload in enumerate(files):
                if isinstance(upload, str):
                    raise RequestError(422, f"files[{index}]: a form field, not a file; send files under 'files'")
                name = f"files[{index}]" + (f" ({upload.filename})" if upload.filename else "")
                named.append((name, await upload.read()))
            return named
    kind = model.task.input_kind
    how = ('JSON {"inputs": ["text", ...]}' if kind == "text" else
           f'multipart/form-data with {kind} files under "files", or JSON {{"inputs": [{{"b64": "..."}}]}}')
    raise RequestError(415, f"content type {content_type or 'missing'!r} is not accepted; send {how}")


def _v2_inputs(payload: Any, model: ServedModel, options: ServeOptions) -> list[tuple[str, Any]]:
    """(name, text or file bytes) of each element of an OIP v2 inference request's one BYTES input."""
    if not isinstance(payload, dict) or not isinstance(payload.get("inputs"), list):
        raise RequestError(422, 'expected an inference request {"inputs": [{"name", "shape", "datatype", "data"}]}')
    expected = model.task.input_kind
    if len(payload["inputs"]) != 1:
        raise RequestError(422, f"the model takes one input, {expected!r}; got {len(payload['inputs'])}")
    tensor = payload["inputs"][0]
    if not isinstance(tensor, dict) or not {"name", "shape", "datatype", "data"} <= set(tensor):
        raise RequestError(422, 'an input needs "name", "shape", "datatype" and "data"')
    if tensor["name"] != expected:
        raise RequestError(400, f"unknown input {tensor['name']!r}; the model's input is {expected!r}")
    if tensor["datatype"] != "BYTES":
        raise RequestError(400, f"input {expected!r} is BYTES, got datatype {tensor['datatype']!r}")
    data = _flatten(tensor["data"])
    shape = tensor["shape"]
    if not (isinstance(shape, list) and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                            for d in shape)):
        raise RequestError(422, f"shape must be a list of whole numbers, got {shape!r}")
    count = 1
    for dim in shape:
        count *= dim
    if count != len(data):
        raise RequestError(400, f"shape {shape} holds {count} elements, and data has {len(data)}")
    _check_count(len(data), options)
    named = []
    for index, value in enumerate(data):
        name = f"{expected}[{index}]"
        if expected == "text":
            if not isinstance(value, str):
                raise RequestError(400, f"{name}: expected a string, got {type(value).__name__}")
            named.append((name, value))
        else:
            named.append((name, _b64(value, name)))
    return named


def _flatten(data: Any) -> list[Any]:
    if not isinstance(data, list):
        raise RequestError(422, f'"data" must be a list, got {type(data).__name__}')
    flat: list[Any] = []
    for value in data:
        flat.extend(_flatten(value) if isinstance(value, list) else [value])
    return flat


def _prepare(model: ServedModel, named: list[tuple[str, Any]], *, raw: bool = False) -> list[Any]:
    """Every input decoded and preprocessed (in a worker thread), or the first that cannot be, as a 400. With
    ``raw``, the inputs as read, before preprocessing (what an explanation takes), each still preprocessed once
    here so that one the family cannot take is a 400 too."""
    items = []
    for name, value in named:
        try:
            example = model.example(value, name=name)
            item = model.classifier.preprocess(example)
            items.append(example if raw else item)
        except ZooError as exc:
            raise RequestError(400, str(exc)) from None
        except Exception as exc:   # a family's preprocessing tripping on an odd input is still the input's fault
            log.warning("%s could not be preprocessed", name, exc_info=True)
            raise RequestError(400, f"{name}: could not be prepared for the model ({type(exc).__name__}: "
                                    f"{one_line(exc)})") from None
    return items


def _explain_options(query) -> tuple[str, int | str, str]:
    """``method``, ``steps`` and ``target`` of an ``/explain`` request's query, checked (a 400 otherwise)."""
    try:
        method = check_method(query.get("method", "ig"), option="method")
        steps = check_steps(query.get("steps", "auto"), option="steps", most=MAX_EXPLAIN_STEPS)
    except ZooError as exc:
        raise RequestError(400, str(exc)) from None
    return method, steps, query.get("target", "pred")


def page_html(name: str) -> str:
    """The page at ``/`` for the model ``name``: ``page.html`` (shipped in the package) with the name, escaped,
    where it says ``{{model}}``. The page reads everything else from ``/v2/models/NAME``, ``/predict`` and
    ``/explain``."""
    template = resources.files("zoo.serve").joinpath("page.html").read_text(encoding="utf-8")
    return template.replace("{{model}}", html.escape(name, quote=True))


# --- the app ----------------------------------------------------------------------------------------------------


def create_app(model: ServedModel, options: ServeOptions | None = None) -> FastAPI:
    """The server for ``model``: routes, batcher (started and drained by the app's lifespan), metrics."""
    options = options or ServeOptions()
    metrics = ServerMetrics.create(options.max_batch)

    def on_batch(size: int) -> None:
        metrics.batch_size.observe(size)
        metrics.inputs.inc(size)

    batcher = Batcher(model.score, max_batch=options.max_batch, max_wait_ms=options.max_wait_ms,
                      on_batch=on_batch, on_depth=metrics.queue_depth.set)
    explainer = (Explainer(model.load_copy, on_explained=metrics.explained) if model.load_copy is not None
                 else None)
    state = {"ready": False}

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await batcher.start()
        if explainer is not None:
            explainer.start()
        state["ready"] = True
        try:
            yield
        finally:
            # uvicorn has stopped accepting and finished its in-flight requests; whatever is queued is scored.
            state["ready"] = False
            await batcher.close()
            if explainer is not None:
                await explainer.close()

    app = FastAPI(title=f"zoo serve: {model.name}", version=__version__, lifespan=lifespan, docs_url=None,
                  redoc_url=None, openapi_url=None)
    app.state.model = model
    app.state.metrics = metrics
    app.state.batcher = batcher

    @app.exception_handler(RequestError)
    async def request_error(request: Request, exc: RequestError):
        return _error(exc.status, exc.message)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        return _error(exc.status_code, exc.detail if isinstance(exc.detail, str) else "bad request")

    @app.exception_handler(Exception)
    async def server_error(request: Request, exc: Exception):
        # A bug, not bad input: one line for the client; Starlette re-raises it after this, so it is logged.
        return _error(500, f"internal error ({type(exc).__name__}: {one_line(exc)})")

    async def scores(named: list[tuple[str, Any]], top_k: int) -> list[list[dict[str, Any]]]:
        if not state["ready"]:
            raise RequestError(503, "the server is shutting down")
        items = await asyncio.to_thread(_prepare, model, named)
        try:
            rows = await batcher.submit(items)
        except BatchFailedError as exc:
            raise RequestError(500, str(exc)) from None
        return [model.top_labels(row, top_k) for row in rows]

    def known(name: str) -> None:
        if name != model.name:
            raise RequestError(404, f"unknown model {name!r}; this server serves {model.name!r}")

    def output_k(top_k: int) -> int:
        return min(top_k, len(model.labels))

    page = page_html(model.name)

    @app.get("/", response_class=HTMLResponse)
    async def try_it():
        return HTMLResponse(page, headers={"content-security-policy": PAGE_POLICY, "cache-control": "no-cache"})

    @app.post("/predict")
    async def predict(request: Request):
        top_k = _top_k(request.query_params.get("top_k"), "top_k") or options.top_k
        answers = await scores(await _predict_inputs(request, model, options), top_k)
        return {"predictions": [{"labels": labels} for labels in answers]}

    @app.post("/explain")
    async def explain(request: Request):
        if explainer is None:
            raise RequestError(400, model.no_explain)
        method, steps, target = _explain_options(request.query_params)
        if target != "pred" and target not in model.labels:
            raise RequestError(400, f"target {target!r} is not a label of this model; give pred or one of "
                                    f"{', '.join(model.labels)}")
        named = await _predict_inputs(request, model, options)
        if len(named) > MAX_EXPLAIN_INPUTS:
            raise RequestError(400, f"{len(named)} inputs to explain in one request; at most "
                                    f"{MAX_EXPLAIN_INPUTS} (an explanation takes seconds): split it")
        if not state["ready"]:
            raise RequestError(503, "the server is shutting down")
        examples = await asyncio.to_thread(_prepare, model, named, raw=True)
        try:
            found = await explainer.explain([(name, example) for (name, _), example in zip(named, examples,
                                                                                              strict=True)],
                                            method=method, target=target, steps=steps)
        except ExplainerBusyError as exc:
            raise RequestError(429, str(exc)) from None
        except ZooError as exc:
            raise RequestError(400, str(exc)) from None
        return {"explanations": [{key: value for key, value in explanation.to_dict().items() if key != "files"}
                                 for explanation in found]}

    @app.get("/v2/health/live")
    async def live():
        return {"live": True}

    @app.get("/v2/health/ready")
    async def ready():
        if not state["ready"]:
            return _error(503, "not ready")
        return {"ready": True}

    @app.get("/v2")
    async def server_metadata():
        return {"name": "zoo", "version": __version__, "extensions": []}

    @app.get("/v2/models/{name}")
    async def model_metadata(name: str):
        known(name)
        k = output_k(options.top_k)
        return {
            "name": model.name,
            "versions": [],
            "platform": "onnxruntime_onnx" if model.target.backend == "onnx" else "pytorch",
            "inputs": [{"name": model.task.input_kind, "datatype": "BYTES", "shape": [-1]}],
            "outputs": [{"name": "label", "datatype": "BYTES", "shape": [-1, k]},
                        {"name": "score", "datatype": "FP32", "shape": [-1, k]}],
            "parameters": {**model.facts(), "top_k": k},
        }

    @app.get("/v2/models/{name}/ready")
    async def model_ready(name: str):
        known(name)
        if not state["ready"]:
            return _error(503, "not ready")
        return {"name": model.name, "ready": True}

    @app.post("/v2/models/{name}/infer")
    async def infer(name: str, request: Request):
        known(name)
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type not in ("", "application/json"):
            raise RequestError(415, f"content type {content_type!r} is not accepted; send a JSON inference request")
        if "inference-header-content-length" in request.headers:
            raise RequestError(400, "the binary tensor data extension is not supported; send the inputs as JSON "
                                    "(tritonclient: binary_data=False)")
        payload = _json_body(await request.body())
        named = _v2_inputs(payload, model, options)
        parameters = payload.get("parameters") if isinstance(payload.get("parameters"), dict) else {}
        top_k = _top_k(parameters.get("top_k"), 'parameters "top_k"') or options.top_k
        requested = payload.get("outputs") or []
        if not isinstance(requested, list) or not all(isinstance(o, dict) and "name" in o for o in requested):
            raise RequestError(422, '"outputs" must be a list of {"name": ...}')
        wanted = [output["name"] for output in requested]
        for output in wanted:
            if output not in ("label", "score"):
                raise RequestError(400, f"unknown output {output!r}; the model's outputs are 'label' and 'score'")
        answers = await scores(named, top_k)
        k = output_k(top_k)
        outputs = [
            {"name": "label", "datatype": "BYTES", "shape": [len(answers), k],
             "data": [entry["label"] for labels in answers for entry in labels]},
            {"name": "score", "datatype": "FP32", "shape": [len(answers), k],
             "data": [entry["score"] for labels in answers for entry in labels]},
        ]
        answer: dict[str, Any] = {"model_name": model.name,
                                  "outputs": [o for o in outputs if not wanted or o["name"] in wanted]}
        if "id" in payload:
            answer["id"] = payload["id"]
        return answer

    @app.get("/metrics")
    async def prometheus():
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    # Outermost first: every answer is counted, a 413 included.
    app.add_middleware(_BodyLimit, limit=options.max_body_bytes)
    app.add_middleware(_Metrics, metrics=metrics, routes=lambda: app.router.routes)
    return app


def app_from_environment() -> FastAPI:
    """The app a uvicorn worker process builds (``--workers N``): the model is loaded in each process."""
    target, options = decode_for_workers(os.environ[OPTIONS_ENV])
    return create_app(load_served(target, families=get_plugin_manager().families), options)
