"""A request's body, read and checked before any handler sees it: JSON that every later stage takes.

    req = await read_json(request, protocol.ChatRequest, limit=config.max_request_bytes)

Every refusal is an OpenAI-shaped ``APIError``, never a 500: 413 past ``limit`` (counted as the
body arrives), 400 when it is not JSON (including nesting so deep that the parser recurses out,
and numbers past Python's 4300 digits), when it nests deeper than ``MAX_DEPTH``, when a string
holds a lone UTF-16 surrogate (``"\\ud800"`` is valid JSON, but no tokenizer and no UTF-8
encoder takes it), and when it fails ``schema``.
"""

from __future__ import annotations

import json
import re
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import ClientDisconnect, Request

from onthejob.serve import protocol as api

M = TypeVar("M", bound=BaseModel)
MAX_DEPTH = 64  # the deepest plain field (messages.0.content.0.text) is 5 levels down; JSON schemas in tools nest more
SURROGATE = re.compile("[\ud800-\udfff]")


async def read_json(request: Request, schema: type[M], *, limit: int) -> M:
    """The body as ``schema``, or the ``APIError`` that tells the client what is wrong with it."""
    data = _decode(await _read(request, limit))
    if not isinstance(data, dict):
        raise api.APIError(400, "the body must be a JSON object", code="invalid_json")
    _check(data)
    try:
        return schema.model_validate(data)
    except ValidationError as e:
        raise api.validation_error(e) from e


async def _read(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise api.APIError(413, f"request body of {declared} bytes is over the limit of {limit}", code="request_too_large")
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise api.APIError(413, f"request body is over the limit of {limit} bytes", code="request_too_large")
    except ClientDisconnect:  # gone mid-upload (or dropped for being slow): nobody reads the answer
        raise api.APIError(400, "the client went away before its body arrived", code="incomplete_body") from None
    return bytes(body)


def _decode(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise api.APIError(400, f"the body is not valid JSON: {e}", code="invalid_json") from e
    except RecursionError:
        raise api.APIError(400, f"the body nests deeper than {MAX_DEPTH} levels", code="invalid_json") from None
    except ValueError:  # the only other one: an integer of more digits than int() converts
        raise api.APIError(400, "the body holds a number with too many digits", code="invalid_json") from None


def _check(data: dict) -> None:
    """Refuse what ``json.loads`` accepts but later stages cannot take: deep nesting, lone surrogates.

    Iterative, so that no depth the parser allowed can make this recurse out."""
    stack: list[tuple[tuple, Any]] = [((), data)]
    while stack:
        path, value = stack.pop()
        if len(path) > MAX_DEPTH:
            raise api.APIError(400, f"the body nests deeper than {MAX_DEPTH} levels", code="invalid_json")
        if isinstance(value, dict):
            for key in value:
                if SURROGATE.search(key):
                    _surrogate((*path, key))
            stack.extend(((*path, k), v) for k, v in reversed(value.items()))
        elif isinstance(value, list):
            stack.extend(((*path, i), v) for i, v in reversed(list(enumerate(value))))
        elif isinstance(value, str) and SURROGATE.search(value):
            _surrogate(path)


def _surrogate(path: tuple) -> None:
    dotted = ".".join(str(p) for p in path).encode("utf-8", "backslashreplace").decode()  # a key may hold it
    raise api.APIError(400, f"{dotted}: holds a lone UTF-16 surrogate (\\ud800-\\udfff), which is not text; send valid Unicode",
                       param=dotted, code="invalid_value")
