"""The tool-calling example's client loop: the model asks for a function, this script runs it, sends
the result back, and prints the answer the model writes from it. Any OpenAI client does the same.

    ojt train configs/tools-train.yaml
    ojt serve --adapter tools=runs/tools &
    python examples/tools/client.py "Where is my order 12345?"
    python examples/tools/client.py --stream "Please cancel order 12345, I ordered the wrong size."

The two functions answer from a made-up order book (any 5-digit number is an order).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import openai

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_data import SYSTEM, TOOLS  # noqa: E402 - the example's own tool definitions

MAX_ROUNDS = 4  # calls the model may make before it must answer


def get_order_status(order_id: str) -> dict:
    states = ["processing", "in_transit", "delivered"]
    n = sum(map(ord, order_id))
    return {"order_id": order_id, "status": states[n % 3], "date": f"2026-12-{3 + n % 25:02d}"}


def cancel_order(order_id: str, reason: str) -> dict:
    shipped = get_order_status(order_id)["status"] != "processing"
    return {"order_id": order_id, "cancelled": not shipped} | ({"error": "already shipped"} if shipped else {})


FUNCTIONS = {"get_order_status": get_order_status, "cancel_order": cancel_order}


def ask(client, model: str, question: str, *, stream: bool) -> str:
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}]
    for _ in range(MAX_ROUNDS):
        content, calls, finish = (_streamed if stream else _whole)(client, model, messages)
        if finish != "tool_calls":
            return content
        messages.append({"role": "assistant", "content": content, "tool_calls": calls})
        for call in calls:
            args = json.loads(call["function"]["arguments"])
            result = FUNCTIONS[call["function"]["name"]](**args)
            print(f"  -> {call['function']['name']}({args}) = {result}", file=sys.stderr)
            messages.append({"role": "tool", "tool_call_id": call["id"], "content": json.dumps(result)})
    return f"(no answer after {MAX_ROUNDS} rounds of tool calls)"


def _whole(client, model, messages):
    reply = client.chat.completions.create(model=model, messages=messages, tools=TOOLS, temperature=0, max_tokens=128)
    choice = reply.choices[0]
    calls = [c.model_dump() for c in choice.message.tool_calls or []]
    return choice.message.content, calls, choice.finish_reason


def _streamed(client, model, messages):
    content, calls, finish = "", {}, None
    for chunk in client.chat.completions.create(model=model, messages=messages, tools=TOOLS, temperature=0,
                                                max_tokens=128, stream=True):
        delta = chunk.choices[0].delta
        content += delta.content or ""
        for piece in delta.tool_calls or []:  # arguments may come in parts: join them by index
            call = calls.setdefault(piece.index, {"id": piece.id, "type": "function",
                                                  "function": {"name": "", "arguments": ""}})
            call["function"]["name"] += piece.function.name or ""
            call["function"]["arguments"] += piece.function.arguments or ""
        finish = chunk.choices[0].finish_reason or finish
    return content or None, [calls[i] for i in sorted(calls)], finish


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("question")
    parser.add_argument("--model", default="tools")
    parser.add_argument("--url", default="http://127.0.0.1:8000/v1")
    parser.add_argument("--stream", action="store_true")
    args = parser.parse_args()
    client = openai.OpenAI(base_url=args.url, api_key=os.environ.get("ONTHEJOB_API_KEY", "none"))
    print(ask(client, args.model, args.question, stream=args.stream))
    return 0


if __name__ == "__main__":
    sys.exit(main())
