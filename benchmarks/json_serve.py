"""Structured output through the API: JSON-schema requests to ``ojt serve`` on the default model,
sent by the official ``openai`` client, and how many answers parse and validate.

    python benchmarks/json_serve.py                       # 50 requests, 8 at a time
    python benchmarks/json_serve.py --requests 20 --concurrency 4 --max-tokens 256

A server runs in this process on a loopback port (what ``ojt serve`` runs, without adapters).
Each request asks for a leave request (benchmarks/json_decoding.py's questions) with
``response_format: {"type": "json_schema", ...}``, greedily, under two schemas:

- ``bounded``: a nested object, an enum and a required array, with the limits an application
  writes (names at most 40 characters, at most 10 dates, 1 to 30 days);
- ``unbounded``: the same without the limits. The 135M model repeats itself inside an open
  array (``"dates": ["2022-01-01", "2022-01-02", ...``) until the length limit; such an answer
  ends with ``finish_reason: "length"``, as OpenAI's API returns it, and its JSON is cut.

Printed per schema: answers that parse, that validate, that hit max_tokens, and the time taken.
Not a test: the counts are the default model's, the times the machine's.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import copy
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from json_decoding import LEAVE, questions  # noqa: E402 - the same schema and questions

BOUNDED = copy.deepcopy(LEAVE)
BOUNDED["properties"]["employee"]["properties"] = {"name": {"type": "string", "maxLength": 40},
                                                   "team": {"type": "string", "maxLength": 40}}
BOUNDED["properties"]["days"] = {"type": "integer", "minimum": 1, "maximum": 30}
BOUNDED["properties"]["dates"] = {"type": "array", "items": {"type": "string", "maxLength": 10}, "minItems": 1,
                                  "maxItems": 10}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=256)
    args = parser.parse_args()

    import jsonschema
    import openai

    from onthejob.serve.config import ServeConfig
    from onthejob.serve.server import create_app
    from tests.serve.server_helpers import ServerThread

    with tempfile.TemporaryDirectory() as tmp:
        server = ServerThread(create_app(ServeConfig(max_batch=args.concurrency, feedback_db=Path(tmp) / "fb.sqlite")))
        server.wait_ready(seconds=300)
        client = openai.OpenAI(base_url=server.url, api_key="none", max_retries=0)
        model = client.models.list().data[0].id
        asks = questions(args.requests)
        print(f"{args.requests} requests to {model}, {args.concurrency} at a time, greedy, max_tokens {args.max_tokens}\n")
        print("| schema | answers | parse | validate | hit max_tokens | seconds |")
        print("|---|---|---|---|---|---|")
        examples = {}
        for name, schema in (("bounded", BOUNDED), ("unbounded", LEAVE)):
            fmt = {"type": "json_schema", "json_schema": {"name": "leave_request", "schema": schema, "strict": True}}

            def ask(messages):
                reply = client.chat.completions.create(model=model, messages=messages, response_format=fmt,
                                                       temperature=0, max_tokens=args.max_tokens)
                return reply.choices[0]

            start = time.perf_counter()
            with concurrent.futures.ThreadPoolExecutor(args.concurrency) as pool:
                choices = list(pool.map(ask, asks))
            seconds = time.perf_counter() - start
            parsed = valid = 0
            for choice in choices:
                try:
                    value = json.loads(choice.message.content)
                except ValueError:
                    continue
                parsed += 1
                valid += jsonschema.Draft202012Validator(schema).is_valid(value)
            capped = sum(c.finish_reason == "length" for c in choices)
            print(f"| {name} | {len(choices)} | {parsed} | {valid} | {capped} | {seconds:.0f} |")
            examples[name] = choices[0].message.content
        server.stop()
    for name, text in examples.items():
        print(f"\nfirst {name} answer: {text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
