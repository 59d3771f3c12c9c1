"""``ojt chat --url``: the same terminal chat, talking to a running ``ojt serve`` (or any
OpenAI-compatible server) through the official ``openai`` client, with the answer streamed.

    ojt chat --url http://127.0.0.1:8000/v1 --model support
"""

from __future__ import annotations

import os
import sys
from typing import TextIO

from onthejob.errors import ModelError
from onthejob.generate.chat import HELP, converse
from onthejob.generate.sampling import SamplingParams


def run_remote_chat(
    config,  # a ChatConfig whose url is set
    *,
    input: TextIO | None = None,  # noqa: A002 - None = sys.stdin
    output: TextIO | None = None,
) -> int:
    """Chat with ``config.model`` (default: the server's first) at ``config.url`` until /exit;
    returns 0. Passages (``config.rag``) are the server's business: serve a RAG name instead."""
    import openai

    input, output = input or sys.stdin, output or sys.stdout  # noqa: A001
    url, model, system, params = config.url, config.model, config.system, config.sampling
    key = config.api_key or os.environ.get("ONTHEJOB_API_KEY") or "none"  # the client insists on one
    client = openai.OpenAI(base_url=url, api_key=key, max_retries=1)
    try:
        model = model or client.models.list().data[0].id
    except openai.APIConnectionError as e:
        raise ModelError(f"cannot reach a server at {url}: {e}", fix="start one with: ojt serve") from e
    except openai.APIStatusError as e:
        raise ModelError(f"{url}: {_message(e)}") from e
    output.write(f"chatting with {model} at {url} ({HELP})\n")

    def reply(history: list[dict]) -> str | None:
        try:
            return _answer(client, model, history, params, output)
        except openai.APIStatusError as e:
            output.write(f"\n(error from the server: {_message(e)})\n")
            return None
        except openai.APIConnectionError as e:
            raise ModelError(f"lost the server at {url}: {e}") from e

    return converse(reply, system=system, input=input, output=output)


def _answer(client, model: str, history: list[dict], params: SamplingParams, output: TextIO) -> str:
    stream = client.chat.completions.create(
        model=model, messages=history, stream=True, max_tokens=params.max_new_tokens,
        temperature=params.temperature, top_p=params.top_p, seed=params.seed, stop=params.stop or None,
    )
    parts = []
    for chunk in stream:
        for choice in chunk.choices:
            if choice.delta.content:
                parts.append(choice.delta.content)
                output.write(choice.delta.content)
                output.flush()
    output.write("\n")
    return "".join(parts)


def _message(e) -> str:
    body = e.body if isinstance(e.body, dict) else {}
    error = body.get("error", body) if isinstance(body, dict) else {}
    return f"{e.status_code}: {error.get('message') if isinstance(error, dict) else e.message}"
