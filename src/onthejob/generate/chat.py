"""Talk to a model or a trained run in the terminal, with the answer streamed as it is written.

    ojt chat runs/support --system "You answer printer questions." --temperature 0.7

The conversation is kept, so later turns see earlier ones. ``/reset`` starts over (the system
prompt stays), ``/exit``, end of input (Ctrl-D) or Ctrl-C leave.
"""

from __future__ import annotations

import builtins
import contextlib
import sys
from collections.abc import Callable
from typing import TextIO

from onthejob.generate.engine import Engine, load_engine
from onthejob.generate.sampling import SamplingParams

HELP = "/reset starts over, /exit quits"
PROMPT = "you> "


def run(config) -> int:
    """``ojt chat``: chat with ``config.model`` (a ``ChatConfig``) in the terminal."""
    from onthejob.rag.answer import opened_retriever

    with opened_retriever(config.rag) as rag:
        return run_chat(config.model, system=config.system, params=config.sampling, rag=rag)


def run_chat(
    model_name: str,
    *,
    system: str | None = None,
    params: SamplingParams | None = None,
    input: TextIO | None = None,  # noqa: A002 - None = sys.stdin, looked up at call time
    output: TextIO | None = None,  # None = sys.stdout
    rag=None,  # an onthejob.rag.answer.Retriever: answer from its documents, with citations
) -> int:
    """Chat until /exit or end of input; returns the exit code (0)."""
    input, output = input or sys.stdin, output or sys.stdout  # noqa: A001

    engine, loaded = load_engine(model_name)
    params = params or SamplingParams()
    output.write(f"chatting with {loaded.description} ({HELP})\n")
    if system is None and loaded.system_prompt:
        system = loaded.system_prompt  # what the run was trained with; --system overrides it
        output.write(f"system prompt from training: {system}\n")
    return converse(lambda history: _reply(engine, history, params, output, rag), system=system, input=input, output=output)


def converse(reply: Callable[[list[dict]], str | None], *, system: str | None, input: TextIO, output: TextIO) -> int:  # noqa: A002
    """The terminal conversation loop shared by local and remote chat. ``reply(history)`` answers
    the last user turn (and prints it), or returns None to drop that turn."""
    start = [{"role": "system", "content": system}] if system else []
    history = list(start)
    try:
        while True:
            line = _ask(input, output)
            if line is None or line.strip() == "/exit":
                break
            text = line.strip()
            if text == "/reset":
                history = list(start)
                output.write("(conversation cleared)\n")
                continue
            if not text:
                continue
            history.append({"role": "user", "content": text})
            answer = reply(history)
            if answer is None:
                history.pop()
                continue
            history.append({"role": "assistant", "content": answer})
    except KeyboardInterrupt:
        output.write("\n")  # leave the terminal on a fresh line
    output.flush()
    return 0


def _ask(input: TextIO, output: TextIO) -> str | None:  # noqa: A002
    """The next line from the user, or None at end of input."""
    if input is sys.stdin and output is sys.stdout and sys.stdin.isatty():
        with contextlib.suppress(ImportError):
            import readline  # noqa: F401 - gives input() line editing and history
        try:
            return builtins.input(PROMPT)
        except EOFError:
            output.write("\n")
            return None
    output.write(PROMPT)
    output.flush()
    line = input.readline()
    if not line:
        output.write("\n")
        return None
    return line


def _reply(engine: Engine, history: list[dict], params: SamplingParams, output: TextIO, rag) -> str:
    """The assistant's reply; with RAG the passages go into this turn's prompt only, so history
    keeps the plain question and old passages do not pile up."""
    if rag is None:
        return _answer(engine, history, params, output)
    from onthejob.rag.answer import NOT_COVERED, cited, format_sources

    prompt, sources = rag.prepare(history)
    if prompt is None:
        output.write(NOT_COVERED + "\n")
        return NOT_COVERED
    reply = _answer(engine, prompt, params, output)
    used = cited(reply, sources) or sources
    output.write(format_sources(used) + "\n")
    return reply


def _answer(engine: Engine, history: list[dict], params: SamplingParams, output: TextIO) -> str:
    parts = []
    for delta in engine.stream(history, params):
        parts.append(delta)
        output.write(delta)
        output.flush()
    output.write("\n")
    return "".join(parts)
