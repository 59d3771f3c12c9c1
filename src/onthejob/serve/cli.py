"""The ``ojt serve`` command: parse its options and call ``server.serve``.

    ojt serve --adapter support=runs/support --api-key "$KEY" --port 8000

``register(sub)`` adds the subcommand to ``ojt``'s parser; ``python -m onthejob.serve.cli ...``
runs it alone (the benchmark does).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from onthejob.errors import ConfigError


def _pairs(values: list[str] | None, flag: str, what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for value in values or []:
        name, sep, target = value.partition("=")
        if not sep or not name or not target:
            raise ConfigError(f"{flag} {value!r} is not NAME={what}", fix=f"write e.g. {flag} support={'runs/support' if what == 'RUN' else 'docs'}")
        if name in out:
            raise ConfigError(f"{flag}: the name {name!r} is given twice")
        out[name] = target
    return out


def cmd_serve(args: argparse.Namespace) -> int:
    from onthejob.serve.scheduler import Limits
    from onthejob.serve.server import ServeConfig, serve

    problems = [f"--{k.replace('_', '-')}: {v} (must be at least 1)"
                for k, v in (("max_batch", args.max_batch), ("max_queue", args.max_queue), ("max_tokens", args.max_tokens),
                             ("max_request_bytes", args.max_request_bytes)) if v < 1]
    if args.timeout <= 0:
        problems.append(f"--timeout: {args.timeout} (must be positive)")
    if problems:
        raise ConfigError("invalid serve options", problems)
    config = ServeConfig(
        model=args.model,
        adapters=_pairs(args.adapter, "--adapter", "RUN"),
        rag=_pairs(args.rag, "--rag", "COLLECTION"),
        adapter_dirs=[Path(d) for d in (args.adapter_dir or ["runs"])],
        api_key=args.api_key or os.environ.get("ONTHEJOB_API_KEY") or None,
        limits=Limits(max_batch=args.max_batch, max_queue=args.max_queue, max_tokens=args.max_tokens, timeout=args.timeout),
        max_request_bytes=args.max_request_bytes,
        device=args.device,
    )
    return serve(config, host=args.host, port=args.port)


def register(sub) -> argparse.ArgumentParser:
    """Add ``serve`` to ``ojt``'s subcommands (``sub`` is argparse's subparsers object)."""
    from onthejob.models.registry import DEFAULT_MODEL

    p = sub.add_parser("serve", help="serve the base model and its adapters over an OpenAI-compatible HTTP API",
                       description="Serve a base model and LoRA adapters trained on it (OpenAI-compatible API, /v1).")
    p.add_argument("--model", default=DEFAULT_MODEL, help=f"the base model (default: {DEFAULT_MODEL})")
    p.add_argument("--adapter", action="append", metavar="NAME=RUN", help="serve a trained run under NAME (repeatable)")
    p.add_argument("--rag", action="append", metavar="NAME=COLLECTION", help="answer NAME with retrieval from a RAG collection (repeatable)")
    p.add_argument("--adapter-dir", action="append", metavar="DIR", help="folder that POST /admin/adapters may load from (repeatable; default: runs)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    p.add_argument("--api-key", help="require this key (Authorization: Bearer KEY); default: $ONTHEJOB_API_KEY; needed for /admin")
    p.add_argument("--max-batch", type=int, default=32, help="answers generated together (default: 32)")
    p.add_argument("--max-queue", type=int, default=64, help="answers waiting beyond the batch before 429 (default: 64)")
    p.add_argument("--max-tokens", type=int, default=2048, help="the most tokens one answer may ask for (default: 2048)")
    p.add_argument("--max-request-bytes", type=int, default=1_000_000, help="largest request body before 413 (default: 1000000)")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds one request may take (default: 600)")
    p.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda when there is one)")
    p.set_defaults(func=cmd_serve)
    return p


def main(argv: list[str] | None = None) -> int:
    from onthejob.cli import _quiet_libraries
    from onthejob.errors import OjtError

    parser = argparse.ArgumentParser(prog="ojt")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["serve", *(sys.argv[1:] if argv is None else argv)])
    _quiet_libraries()
    try:
        return args.func(args)
    except OjtError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code


if __name__ == "__main__":
    sys.exit(main())
