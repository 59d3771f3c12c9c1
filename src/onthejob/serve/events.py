"""Scheduler output into a request's event loop: one answer's events as they come, or all answers.

    channel = Channel()
    job = scheduler.submit(model, prompt, params, channel.emit)
    answers = await collect(state, request, job, channel, n, started)     # None: the client left
    async for event in events(state, job, channel, n, started): ...       # a stream

Every surface (chat, completions, Responses) reads its rows through these two, so a timeout, an
unloaded adapter or a client that goes away is handled once; ``chat_stream`` and
``response_stream`` turn them into each surface's server-sent events.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from onthejob.generate.tools import ToolStream
from onthejob.serve import protocol as api
from onthejob.serve.scheduler import Event

POLL_SECONDS = 0.5  # how often a plain request checks that its client is still there


@dataclass
class Answer:
    text: str
    finish: str
    tokens: int  # completion tokens


class Channel:
    """Scheduler events (from its thread) into this request's event loop."""

    def __init__(self):
        self.loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue[Event] = asyncio.Queue()

    def emit(self, event: Event) -> None:
        self.loop.call_soon_threadsafe(self.queue.put_nowait, event)


def error_for(event: Event) -> api.APIError:
    """The error a stopped row's client gets."""
    if event.error == "timeout":
        return api.APIError(504, "the request took longer than the server's --timeout", type="server_error", code="timeout")
    return api.APIError(503, "the model was unloaded while answering", type="server_error", code="model_unloaded")


async def events(state, job, channel: Channel, n: int, started: float,
                 request=None) -> AsyncIterator[Event | api.APIError | None]:
    """The rows' events until all ``n`` have finished; a stopped row ends it with an ``APIError``.
    With ``request``, its connection is checked every ``POLL_SECONDS`` while no event comes, and
    a closed one ends it with None (a stream needs no check: Starlette stops it)."""
    finished, first = 0, True
    while finished < n:
        if request is None:
            event = await channel.queue.get()
        else:
            try:
                event = await asyncio.wait_for(channel.queue.get(), POLL_SECONDS)
            except asyncio.TimeoutError:
                if await request.is_disconnected():
                    yield None
                    return
                continue
        if event.error:
            yield error_for(event)
            return
        if first and event.text:
            state.metrics.time_to_first_token(time.perf_counter() - started)
            first = False
        finished += event.finish is not None
        yield event


async def collect(state, request, job, channel: Channel, n: int, started: float) -> list[Answer] | None:
    """All ``n`` answers whole; None when the client went away (the rows are stopped)."""
    texts, finishes, counts = [""] * n, [None] * n, [0] * n
    try:
        async for event in events(state, job, channel, n, started, request):
            if event is None:
                return None
            if isinstance(event, api.APIError):
                raise event
            texts[event.index] += event.text
            finishes[event.index], counts[event.index] = event.finish, event.completion_tokens
    finally:
        state.scheduler.cancel(job)
    return [Answer(t, f, c) for t, f, c in zip(texts, finishes, counts)]


async def chat_stream(state, job, channel, rid, model, n, chat, include_usage, started, shape, keep) -> AsyncIterator[str]:
    """Server-sent events of chat or text completions; tool calls come as ``delta.tool_calls``
    once complete, and ``keep(outcomes)`` stores the chat answers for feedback."""
    created, counts, prompt = int(time.time()), [0] * n, len(job.requests[0].prompt)
    tools = [ToolStream(shape.syntax) if shape and shape.syntax else None for _ in range(n)]
    texts, outcomes = [""] * n, [None] * n

    def chunk(index, text, finish, role=False, calls=None):
        if chat:
            delta = {"role": "assistant", "content": ""} if role else ({"content": text} if text else {})
            if calls:
                delta = {"tool_calls": [{"index": j, **c} for j, c in enumerate(calls)]}
            body = api.chat_chunk(rid, model, created, index, delta, finish)
        else:
            body = api.completion_chunk(rid, model, created, index, text, finish)
        if include_usage:
            body["usage"] = None
        return f"data: {json.dumps(body)}\n\n"

    try:
        if chat:
            for i in range(n):
                yield chunk(i, "", None, role=True)
        async for event in events(state, job, channel, n, started):
            if isinstance(event, api.APIError):
                yield f"data: {json.dumps(event.body())}\n\n"
                return
            i = event.index
            counts[i], texts[i] = event.completion_tokens, texts[i] + event.text
            held = tools[i]
            text = held.push(event.text) if held else event.text
            if event.finish is None:
                if text:
                    yield chunk(i, text, None)
                continue
            content, calls, finish = shape.outcome(texts[i], event.finish) if shape else (texts[i], [], event.finish)
            outcomes[i] = (content, calls, finish)
            if held:
                text += held.rest(called=bool(calls))
            if text:
                yield chunk(i, text, None)
            if calls:
                yield chunk(i, "", None, calls=calls)
            yield chunk(i, "", finish)
        if chat:
            keep(outcomes)
        if include_usage:
            body = api.chat_chunk(rid, model, created, 0, {}, None) if chat else api.completion_chunk(rid, model, created, 0, "", None)
            body["choices"], body["usage"] = [], api.usage(prompt, sum(counts))
            yield f"data: {json.dumps(body)}\n\n"
        yield "data: [DONE]\n\n"
    finally:  # normal end, error, or the client went away (Starlette cancels us)
        state.scheduler.cancel(job)
        state.metrics.tokens(prompt, sum(counts))


async def response_stream(state, job, channel, reply, keep, started) -> AsyncIterator[str]:
    """The Responses API's server-sent events for one answer (serve/responses.py builds them)."""
    held = ToolStream(reply.shape.syntax) if reply.shape.syntax else None
    text, tokens = "", 0
    try:
        for line in reply.opening():
            yield line
        async for event in events(state, job, channel, 1, started):
            if isinstance(event, api.APIError):
                yield reply.failed(event)
                return
            text, tokens = text + event.text, event.completion_tokens
            delta = held.push(event.text) if held else event.text
            outcome = None if event.finish is None else reply.shape.outcome(text, event.finish)
            if outcome is not None and held:
                delta += held.rest(called=bool(outcome[1]))
            for line in reply.text_delta(delta):
                yield line
            if outcome is not None:
                keep([outcome])
                for line in reply.closing(outcome, tokens):
                    yield line
    finally:
        state.scheduler.cancel(job)
        state.metrics.tokens(reply.prompt_tokens, tokens)
