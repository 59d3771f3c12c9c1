"""How well a served model uses the example's tools: the held-out conversations of eval.jsonl,
asked through the API with tool_choice auto, streamed and not.

    ojt serve --adapter tools=runs/tools &
    python examples/tools/check.py --model tools               # the tuned run
    python examples/tools/check.py --model smollm2-135m-instruct  # its base, for comparison

For each conversation: did the model call the function the reference calls, with the same
arguments (turn one); given the reference's tool result, does its answer state what the
reference answer states (turn two: the order number and the status word or date); and for the
questions that need no tool, did it answer without calling one. Printed as counts.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path

import openai

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from client import _streamed, _whole  # noqa: E402 - the client loop's two ways of asking


def facts(answer: str) -> list[str]:
    """What a correct answer must state: order numbers, dates and the outcome's key word."""
    words = re.findall(r"\b\d{5}\b|\d{4}-\d{2}-\d{2}|cancelled|cannot be cancelled|on its way|delivered|prepared", answer)
    return words or [answer.split(".")[0]]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tools")
    parser.add_argument("--url", default="http://127.0.0.1:8000/v1")
    parser.add_argument("--data", default=str(HERE / "eval.jsonl"))
    args = parser.parse_args()
    client = openai.OpenAI(base_url=args.url, api_key=os.environ.get("ONTHEJOB_API_KEY", "none"))
    records = [json.loads(line) for line in Path(args.data).read_text(encoding="utf-8").splitlines()]
    for stream in (False, True):
        ask = _streamed if stream else _whole
        counts = {"right call": 0, "right arguments": 0, "answer from result": 0, "no call when none needed": 0}
        needing = sum(len(r["messages"]) == 5 for r in records)
        for record in records:
            messages = record["messages"]
            content, calls, finish = ask(client, args.model, messages[:2])
            if len(messages) == 3:  # a question without a tool
                counts["no call when none needed"] += finish != "tool_calls"
                continue
            reference = messages[2]["tool_calls"][0]["function"]
            if calls and calls[0]["function"]["name"] == reference["name"]:
                counts["right call"] += 1
                try:
                    same = json.loads(calls[0]["function"]["arguments"]) == json.loads(reference["arguments"])
                except ValueError:
                    same = False
                counts["right arguments"] += same
            answer, _, _ = ask(client, args.model, messages[:4])  # the reference's call and result
            counts["answer from result"] += all(f in (answer or "") for f in facts(messages[4]["content"]))
        print(f"{args.model}, {'streamed' if stream else 'not streamed'}: "
              + ", ".join(f"{k} {v}/{needing if k != 'no call when none needed' else len(records) - needing}"
                          for k, v in counts.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
