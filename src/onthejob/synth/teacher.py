"""Teachers: the models that write synthetic data, local or behind an OpenAI-compatible endpoint,
behind one cache that makes a rerun free and a killed run resumable.

    from onthejob.synth.teacher import open_teacher, ask
    teacher = open_teacher(config.teacher)             # TeacherConfig: model, url, key_env, ...
    replies, cached = ask(teacher, config.teacher, prompts, cache=Cache(path))  # a text per prompt (messages)

- ``LocalTeacher``: a model name ``ojt`` knows (the embedded default by default), a local model
  folder or a run, answered by onthejob's own engine in batches (``generate/``).
- ``EndpointTeacher``: ``POST {url}/chat/completions`` with ``concurrency`` requests in flight:
  Ollama, vLLM, llama.cpp's server, a hosted API or ``ojt serve``. The key, if any, is read from
  the environment variable ``key_env`` (never from a flag or a file). Connection failures,
  timeouts, 429 and 5xx are retried ``retries`` times with exponential back-off (0.5 s, 1 s,
  2 s, ... capped at 8 s); a reply that is not JSON, or a 4xx, is an error at once.

The cache is one SQLite file (``ONTHEJOB_HOME/synth/cache.sqlite3`` by default) mapping
sha256(teacher identity, messages, sampling) to the reply. A reply is committed as soon as it
arrives, so a run killed at any point loses only the replies in flight, and a rerun asks the
teacher only for what is missing. Sampling is greedy by default, so a reply depends only on its
prompt: a resumed run writes the same file as an uninterrupted one.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Protocol

from onthejob.errors import ModelError
from onthejob.synth.config import TeacherConfig

MAX_BACKOFF = 8.0
MAX_REPLY_BYTES = 16 * 2**20  # one chat completion; far above any max_tokens
CHUNK = 64  # prompts a local teacher answers between cache commits


class Teacher(Protocol):
    identity: str  # what the cache keys on besides the prompt: which model, where

    def complete(self, prompts: Sequence[list[dict]], done: Callable[[int, str], None]) -> None:
        """Answer every prompt, calling ``done(index, text)`` as each reply arrives."""


def open_teacher(config: TeacherConfig) -> Teacher:
    return EndpointTeacher(config) if config.url else LocalTeacher(config)


class LocalTeacher:
    """A model loaded here on first use (a fully cached rerun never loads it)."""

    def __init__(self, config: TeacherConfig, *, engine=None):
        """``engine``: an Engine already holding the model ``config.model`` names (``ojt train``'s
        base, for ``data.augment``), so it is not loaded twice."""
        from onthejob.models.registry import DEFAULT_MODEL

        self.config = config
        self.name = config.model or DEFAULT_MODEL
        self.identity = f"local:{_model_signature(self.name)}"
        self._engine = engine

    def complete(self, prompts: Sequence[list[dict]], done: Callable[[int, str], None]) -> None:
        from onthejob.generate.sampling import SamplingParams

        engine = self._load()
        params = SamplingParams(max_new_tokens=self.config.max_new_tokens, temperature=self.config.temperature, seed=0)
        for start in range(0, len(prompts), CHUNK):
            part = prompts[start:start + CHUNK]
            for i, c in enumerate(engine.generate(part, params, batch_size=self.config.batch_size)):
                done(start + i, c.text)

    def _load(self):
        if self._engine is None:
            from onthejob.console import say
            from onthejob.generate.engine import Engine
            from onthejob.models.adapters import load_for_inference

            say(f"loading the teacher {self.name} ...")
            loaded = load_for_inference(self.name)
            self._engine = Engine(loaded.model, loaded.tokenizer)
        return self._engine


def _model_signature(name: str) -> str:
    """The model's name or path with the sizes and times of its weight files: a folder whose
    weights change (a run trained further) is a different teacher."""
    path = Path(name).expanduser()
    if not path.exists():
        return name
    files = sorted(f for f in path.rglob("*") if f.suffix in (".safetensors", ".bin", ".gguf", ".pt") and f.is_file())
    stamp = ",".join(f"{f.name}:{f.stat().st_size}:{int(f.stat().st_mtime)}" for f in files)
    return f"{path.resolve()}[{hashlib.sha256(stamp.encode()).hexdigest()[:12]}]"


class EndpointTeacher:
    def __init__(self, config: TeacherConfig):
        self.config = config
        self.url = config.url.rstrip("/")
        key = os.environ.get(config.key_env) if config.key_env else None
        self.headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._model = config.model
        self.identity = f"endpoint:{self.url}|{config.model or '(first)'}"

    def complete(self, prompts: Sequence[list[dict]], done: Callable[[int, str], None]) -> None:
        model = self._model or self._first_model()
        todo = iter(range(len(prompts)))
        with ThreadPoolExecutor(self.config.concurrency) as pool:
            running = {pool.submit(self._one, model, prompts[i]): i
                       for i in (next(todo) for _ in range(min(self.config.concurrency, len(prompts))))}
            while running:
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for f in sorted(finished, key=running.get):
                    i = running.pop(f)
                    try:
                        text = f.result()
                    except BaseException:
                        for other in running:
                            other.cancel()
                        raise
                    done(i, text)
                    nxt = next(todo, None)
                    if nxt is not None:
                        running[pool.submit(self._one, model, prompts[nxt])] = nxt

    def _first_model(self) -> str:
        body = self._request("GET", "/models", None)
        try:
            return body["data"][0]["id"]
        except (KeyError, IndexError, TypeError) as e:
            raise ModelError(f"{self.url}/models lists no model", fix="name one with --teacher-model") from e

    def _one(self, model: str, messages: list[dict]) -> str:
        body = {"model": model, "messages": messages, "max_tokens": self.config.max_new_tokens,
                "temperature": self.config.temperature, "seed": 0}
        reply = self._request("POST", "/chat/completions", body)
        try:
            content = reply["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError) as e:
            raise ModelError(f"{self.url}/chat/completions answered without choices[0].message.content: {json.dumps(reply)[:120]}",
                             fix="point --teacher-url at an OpenAI-compatible /v1 endpoint") from e
        return content if isinstance(content, str) else ""

    def _request(self, method: str, path: str, body: dict | None) -> dict:
        url, last = self.url + path, ""
        data = json.dumps(body).encode() if body is not None else None
        headers = {**self.headers, "Content-Type": "application/json"}
        for attempt in range(self.config.retries + 1):
            if attempt:
                time.sleep(min(MAX_BACKOFF, 0.5 * 2 ** (attempt - 1)))
            request = urllib.request.Request(url, data=data, headers=headers, method=method)
            try:
                with urllib.request.urlopen(request, timeout=self.config.timeout) as r:
                    raw = r.read(MAX_REPLY_BYTES + 1)
            except urllib.error.HTTPError as e:
                text = e.read(2000).decode("utf-8", "replace")
                if e.code == 429 or e.code >= 500:
                    last = f"HTTP {e.code}: {text[:120]}"
                    continue
                raise ModelError(f"the teacher at {url} refused the request: HTTP {e.code}: {_error_text(text)}",
                                 fix=f"check --teacher-model and the key in ${self.config.key_env}") from e
            except (urllib.error.URLError, OSError) as e:  # refused, reset, timed out
                last = str(getattr(e, "reason", e)) or type(e).__name__
                continue
            if len(raw) > MAX_REPLY_BYTES:
                raise ModelError(f"the teacher at {url} sent over {MAX_REPLY_BYTES >> 20} MB for one reply",
                                 fix="lower --max-new-tokens, or check --teacher-url")
            try:
                return json.loads(raw)
            except ValueError as e:
                raise ModelError(f"the teacher at {url} answered with something that is not JSON: {raw[:80].decode('utf-8', 'replace')!r}",
                                 fix="point --teacher-url at an OpenAI-compatible endpoint, e.g. http://HOST:PORT/v1") from e
        raise ModelError(f"the teacher at {url} failed {self.config.retries + 1} times; last: {last}",
                         fix="start it (e.g. ojt serve MODEL) or fix --teacher-url; replies so far are cached, so rerunning resumes")


def _error_text(text: str) -> str:
    try:
        body = json.loads(text)
        err = body.get("error", body) if isinstance(body, dict) else body
        return str(err.get("message", err) if isinstance(err, dict) else err)[:200]
    except ValueError:
        return text[:200]


class Cache:
    """Replies by sha256(teacher, messages, sampling), in one SQLite file; each committed at once."""

    def __init__(self, path: str | Path | None):
        from onthejob.paths import home

        self.path = Path(path) if path else home() / "synth" / "cache.sqlite3"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("CREATE TABLE IF NOT EXISTS replies (key TEXT PRIMARY KEY, teacher TEXT, text TEXT, created REAL)")
        self.db.commit()

    @staticmethod
    def key(teacher: Teacher, messages: list[dict], config: TeacherConfig) -> str:
        payload = [teacher.identity, messages, config.max_new_tokens, config.temperature]
        return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()).hexdigest()

    def get(self, keys: Sequence[str]) -> dict[str, str]:
        out = {}
        for start in range(0, len(keys), 500):
            part = list(keys[start:start + 500])
            q = f"SELECT key, text FROM replies WHERE key IN ({','.join('?' * len(part))})"
            out.update(dict(self.db.execute(q, part).fetchall()))
        return out

    def put(self, key: str, teacher: Teacher, text: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO replies VALUES (?, ?, ?, ?)", (key, teacher.identity, text, time.time()))
        self.db.commit()

    def close(self) -> None:
        self.db.close()


def ask(teacher: Teacher, config: TeacherConfig, prompts: Sequence[list[dict]], *, cache: Cache,
        progress: Callable[[int], None] | None = None) -> tuple[list[str], int]:
    """One reply per prompt, and how many of them the cache held. The teacher is asked only for
    what the cache lacks, each distinct prompt once (a sentence that occurs twice in the documents
    is one question); its replies are cached as they come. ``progress(n)``: n more replies ready."""
    keys = [Cache.key(teacher, p, config) for p in prompts]
    known = cache.get(keys)
    replies: list[str | None] = [known.get(k) for k in keys]
    cached = sum(r is not None for r in replies)
    if progress and cached:
        progress(cached)
    waiting: dict[str, list[int]] = {}  # key -> the prompts it answers
    for i, r in enumerate(replies):
        if r is None:
            waiting.setdefault(keys[i], []).append(i)
    if waiting:
        order = list(waiting)

        def done(j: int, text: str) -> None:
            cache.put(order[j], teacher, text)
            for i in waiting[order[j]]:
                replies[i] = text
            if progress:
                progress(len(waiting[order[j]]))

        teacher.complete([prompts[waiting[k][0]] for k in order], done)
    return [r or "" for r in replies], cached
