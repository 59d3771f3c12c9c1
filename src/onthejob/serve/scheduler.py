"""Dynamic batching and adapter routing for ``ojt serve``; no HTTP in here (``server.py`` is that).

    from onthejob.serve.config import ServeConfig
    from onthejob.serve.scheduler import Scheduler
    scheduler = Scheduler.load(ServeConfig(adapters={"support": "runs/support"}))
    job = scheduler.submit(scheduler.model("support"), prompt_ids, [SamplingParams()], emit=print)

One thread owns the model: it moves submitted rows into a ``Batch`` (generate/batch.py, the
engine's one decode loop) and steps it, so
requests that arrive together (or while others run) share forward passes, whatever adapter of
the one base model they ask for. After each step it hands every request's new text to the
``emit`` callback of its job (called on the scheduler thread: it must be quick). Loading or
unloading an adapter takes the same lock as a step, so it happens between two steps.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from onthejob.errors import ModelError, OjtError
from onthejob.generate.constrain import Grammar
from onthejob.generate.engine import Engine
from onthejob.generate.request import BASE, Request
from onthejob.generate.sampling import SamplingParams
from onthejob.serve.config import ServeConfig

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class ServeError(OjtError):
    """A request the scheduler refuses; ``kind`` tells the HTTP layer which status to send."""

    def __init__(self, kind: str, message: str, *, param: str | None = None):
        self.kind, self.param = kind, param  # bad_request, not_found, conflict, queue_full, ...
        super().__init__(message)


@dataclass
class Model:
    """A name the server answers to: the base, one of its adapters, or a RAG collection."""

    name: str
    kind: Literal["base", "adapter", "rag"]
    tokenizer: Any  # the chat template this name answers with
    adapter: str | None = None  # PEFT adapter name (= name) for kind "adapter"
    source: str = ""  # where it came from, for /v1/models
    collection: str | None = None  # for kind "rag"
    created: int = field(default_factory=lambda: int(time.time()))


@dataclass
class Event:
    """New output of one row (``index`` = the choice), handed to a job's ``emit``."""

    index: int
    text: str
    finish: str | None  # "stop", "length" or None while running
    prompt_tokens: int
    completion_tokens: int
    error: str | None = None  # "timeout" or "unloaded": the row was stopped


@dataclass
class Job:
    """One HTTP request's rows (``n`` choices) and where their output goes."""

    model: Model
    requests: list[Request]
    emit: Callable[[Event], None]
    deadline: float


class Scheduler:
    def __init__(self, engine: Engine, base_name: str, base_path: str, *, config: ServeConfig | None = None):
        self.engine, self.config = engine, config or ServeConfig()
        self.base_path = base_path
        self.models: dict[str, Model] = {base_name: Model(base_name, "base", engine.tokenizer, source=base_path)}
        self.loading: set[str] = set()
        self.batch = engine.new_batch(self.config.max_batch)  # a GGUF's engine brings llama.cpp's
        self.context = getattr(engine.model.config, "max_position_embeddings", None) or 2048
        self._jobs: dict[int, Job] = {}  # id(request) -> job
        self._inbox: list[Request] = []
        self._wake = threading.Condition()
        self._model_lock = threading.Lock()  # held by a step, an adapter load or an unload
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name="ojt-scheduler", daemon=True)

    @classmethod
    def load(cls, config: ServeConfig) -> Scheduler:
        """Load the base model (never an adapter: those come with ``config.adapters``), the
        adapters and the RAG names, and start."""
        from onthejob.errors import ConfigError
        from onthejob.models.adapters import load_for_inference, locate

        from onthejob.generate.llamacpp import LlamaCppEngine
        from onthejob.models.exported import is_gguf

        base = config.model
        if is_gguf(base):
            if config.adapters:
                raise ConfigError(f"--model {base} is an exported GGUF: its adapter is merged in, so it serves no --adapter",
                                  fix="serve the GGUF alone, or serve its base model with the adapters")
            scheduler = cls(LlamaCppEngine(base), Path(base).stem, str(base), config=config)
            for rag_name, collection in config.rag.items():
                scheduler.add_rag(rag_name, collection)
            scheduler.start()
            return scheduler
        found = locate(base)
        if found.adapter is not None:
            raise ConfigError(
                f"--model {base} is a trained adapter, not a base model",
                fix=f"serve its base with --model {found.base_name} and the run with --adapter NAME={base}",
            )
        loaded = load_for_inference(base, device=config.device or _default_device())
        name = Path(base).name if Path(base).is_dir() else str(base)
        scheduler = cls(Engine(loaded.model, loaded.tokenizer), name, found.model, config=config)
        for adapter_name, path in config.adapters.items():
            scheduler.load_adapter(adapter_name, path)
        for rag_name, collection in config.rag.items():
            scheduler.add_rag(rag_name, collection)
        scheduler.start()
        return scheduler

    # --- models -------------------------------------------------------------------------------

    def model(self, name: str) -> Model:
        if name in self.loading:
            raise ServeError("loading", f"model {name!r} is loading; try again shortly", param="model")
        if name not in self.models:
            known = ", ".join(sorted(self.models)) or "none"
            raise ServeError("not_found", f"model {name!r} does not exist (served: {known})", param="model")
        return self.models[name]

    def add_rag(self, name: str, collection: str) -> None:
        _check_name(name, self.models)
        self.models[name] = Model(name, "rag", self.engine.tokenizer, source=collection, collection=collection)

    def load_adapter(self, name: str, path: str | Path) -> Model:
        """Load a LoRA adapter of this base under ``name``; its tokenizer brings its chat template."""
        from onthejob.models.adapters import locate
        from onthejob.models.load import load_tokenizer

        _check_name(name, self.models, self.loading)
        found = locate(path)
        if found.adapter is None or found.method != "lora":
            raise ServeError("bad_request", f"{path} is not a LoRA adapter or a run that trained one", param="path")
        if Path(found.model).resolve() != Path(self.base_path).resolve():
            raise ServeError("bad_request", f"{path} was trained on {found.base_name}, not on this server's base model", param="path")
        tokenizer = load_tokenizer(found.tokenizer)
        if len(tokenizer) > self.engine.model.get_input_embeddings().num_embeddings:
            raise ServeError("bad_request", f"{path} added tokens to the base model; merge it (ojt merge) and serve that", param="path")
        self.loading.add(name)
        try:
            with self._model_lock:
                self._attach(name, found.adapter)
        except (OSError, ValueError, RuntimeError, KeyError) as e:
            raise ModelError(f"cannot load the adapter in {found.adapter}: {e}") from e
        finally:
            self.loading.discard(name)
        self.models[name] = Model(name, "adapter", tokenizer, adapter=name, source=str(found.adapter))
        return self.models[name]

    def unload_adapter(self, name: str) -> None:
        model = self.model(name)
        if model.kind != "adapter":
            raise ServeError("bad_request", f"{name!r} is not an adapter; only adapters can be unloaded", param="name")
        del self.models[name]  # new requests get 404 from here on
        with self._model_lock:
            for job in {id(j): j for j in list(self._jobs.values()) if j.model is model}.values():
                self._stop(job, "unloaded")
            self.batch.prune()  # the stopped rows leave before their adapter goes
            self.engine.model.delete_adapter(name)

    def _attach(self, name: str, folder: Path) -> None:
        model = self.engine.model
        if hasattr(model, "peft_config"):
            model.load_adapter(str(folder), adapter_name=name)
            return
        from peft import PeftModel

        # The first adapter wraps the base in place (same modules), so rows in flight keep their
        # cache; from here on every row names its adapter, "__base__" for none.
        wrapped = PeftModel.from_pretrained(model, str(folder), adapter_name=name)
        self.engine = Engine(wrapped, self.engine.tokenizer)
        self.batch.engine = self.engine

    # --- requests -----------------------------------------------------------------------------

    def chat_prompt(self, model: Model, messages: list[dict[str, Any]], tools: list[dict] | None = None) -> list[int]:
        from onthejob.data.template import tokenize_prompt

        return tokenize_prompt(messages, model.tokenizer, tools=tools)

    def text_prompt(self, model: Model, text: str) -> list[int]:
        return list(model.tokenizer(text)["input_ids"])

    def check_length(self, prompt: list[int], max_tokens: int | None, param: str) -> int:
        """The answer length to use: ``max_tokens`` or what the context leaves; raises past limits."""
        if not prompt:
            raise ServeError("bad_request", "the prompt is empty", param="prompt")
        room = self.context - len(prompt)
        if room < 1:
            raise ServeError("too_long", f"the prompt has {len(prompt)} tokens; this model's context is {self.context}", param="messages")
        if max_tokens is None:
            return min(room, self.config.max_tokens)
        if max_tokens > self.config.max_tokens:
            raise ServeError("too_long", f"{param}={max_tokens} is over this server's limit of {self.config.max_tokens}", param=param)
        if max_tokens > room:
            raise ServeError("too_long", f"{len(prompt)} prompt tokens + {param}={max_tokens} exceed this model's context of {self.context}", param=param)
        return max_tokens

    def submit(self, model: Model, prompt: list[int], params: list[SamplingParams], emit: Callable[[Event], None],
               grammar: Grammar | None = None) -> Job:
        """Queue one row per ``params`` (the choices); output arrives through ``emit``. With
        ``grammar``, every row's text follows it (generate/constrain.py)."""
        if self.queue_depth + len(params) > self.config.max_queue:
            raise ServeError("queue_full", f"the queue is full ({self.config.max_queue} waiting); retry later")
        if grammar is not None and not isinstance(self.engine, Engine):
            raise ServeError("bad_request", "structured output and forced tool calls need a transformers model; this "
                             "server runs a GGUF with llama.cpp (serve the run's base model with --adapter instead)",
                             param="response_format")
        # Every row names its adapter (BASE for none), so base rows stay base once adapters load.
        extra = {"grammar": grammar} if grammar is not None else {}
        requests = [self.engine.request(prompt, p, tokenizer=model.tokenizer, adapter=model.adapter or BASE, **extra)
                    for p in params]
        job = Job(model, requests, emit, time.monotonic() + self.config.timeout)
        with self._wake:
            for r in requests:
                self._jobs[id(r)] = job
            self._inbox.extend(requests)
            self._wake.notify()
        return job

    def cancel(self, job: Job) -> None:
        """Stop a job's rows (its client went away); nothing more is emitted for them."""
        for r in job.requests:
            r.cancelled = True
            self._jobs.pop(id(r), None)

    @property
    def queue_depth(self) -> int:
        return len(self._inbox) + len(self.batch.waiting)

    @property
    def running(self) -> int:
        return len(self.batch.running)

    # --- the loop -----------------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        with self._wake:
            self._stopping = True
            self._wake.notify()
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        while True:
            with self._wake:
                while not (self._stopping or self._inbox or self.batch.running or self.batch.waiting):
                    self._wake.wait()
                if self._stopping:
                    return
            with self._model_lock:
                with self._wake:  # taken only now, so that queue_depth counts them until here
                    arrived, self._inbox = self._inbox, []
                for r in arrived:
                    self.batch.add(r)
                stepped = self.batch.step()
            self._hand_out(stepped)

    def _hand_out(self, stepped: list[Request]) -> None:
        now = time.monotonic()
        for r in stepped:
            job = self._jobs.get(id(r))
            if job is None:  # cancelled meanwhile
                continue
            text = r.ready()
            if text or r.finish:
                job.emit(Event(job.requests.index(r), text, r.finish, r.prompt_tokens, r.generated))
            if r.finish:
                self._jobs.pop(id(r), None)
            elif now > job.deadline:
                self._stop(job, "timeout")

    def _stop(self, job: Job, why: str) -> None:
        self.cancel(job)
        for i, r in enumerate(job.requests):
            job.emit(Event(i, "", None, r.prompt_tokens, r.generated, error=why))


class EngineView:
    """``Engine.generate`` through the scheduler, for code written against an engine (RAG answers):
    its rows are batched with everyone else's. Call it from any thread but the scheduler's."""

    def __init__(self, scheduler: Scheduler, model: Model):
        self.scheduler, self.model = scheduler, model
        self.tokenizer = model.tokenizer

    def generate(self, conversations, params: SamplingParams | None = None, **_ignored) -> list:
        params = params or SamplingParams()
        done: list[threading.Event] = []
        jobs = []
        for conversation in conversations:
            prompt = self.scheduler.chat_prompt(self.model, conversation)
            self.scheduler.check_length(prompt, params.max_new_tokens, "max_tokens")
            event = threading.Event()
            errors: list[str] = []
            jobs.append((self.scheduler.submit(self.model, prompt, [params], _finish_on(event, errors)), errors))
            done.append(event)
        for event, (job, errors) in zip(done, jobs):
            if not event.wait(self.scheduler.config.timeout + 5) or errors:
                raise ServeError("timeout", f"generation stopped: {errors[0] if errors else 'timeout'}")
        return [job.requests[0].completion() for job, _ in jobs]


def _finish_on(event: threading.Event, errors: list[str]) -> Callable[[Event], None]:
    def emit(e: Event) -> None:
        if e.error:
            errors.append(e.error)
        if e.error or e.finish:
            event.set()

    return emit


def _check_name(name: str, *taken) -> None:
    if not isinstance(name, str) or not NAME.match(name) or ".." in name:
        raise ServeError("bad_request", f"model name {name!r}: use letters, digits, '.', '_' and '-' (at most 64)", param="name")
    if any(name in t for t in taken):
        raise ServeError("conflict", f"model name {name!r} is already in use", param="name")


def inside(path: str, folders: list[Path]) -> Path:
    """``path`` (relative to a folder, or absolute) resolved, if it lies inside one of ``folders``.

    Resolving follows symlinks and ``..`` first, so neither can lead outside."""
    if not isinstance(path, str) or not path or "\x00" in path:
        raise ServeError("bad_request", "path must be a non-empty string", param="path")
    for folder in folders:
        root = folder.resolve()
        try:
            candidate = (root / path).resolve()  # an absolute path replaces root here
            if candidate.is_relative_to(root) and candidate.exists():
                return candidate
        except OSError:  # a name too long for the file system, a symlink loop: not an adapter here
            continue
    allowed = ", ".join(str(f) for f in folders)
    raise ServeError("bad_request", f"path {path!r} is not an adapter inside the adapter folders ({allowed})", param="path")


def _default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
