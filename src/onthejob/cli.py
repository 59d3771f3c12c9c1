"""The ``ojt`` command. Every command parses its arguments and calls one function of the package.

    ojt --help
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable

from onthejob import __version__
from onthejob.errors import DataError, OjtError

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}


def command(name: str):
    def register(fn):
        COMMANDS[name] = fn
        return fn

    return register


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _color(stream) -> bool:
    return stream.isatty() and os.environ.get("NO_COLOR") is None and os.environ.get("TERM") != "dumb"


def _mapping(pairs: list[str] | None) -> dict[str, str] | None:
    if not pairs:
        return None
    out = {}
    for pair in pairs:
        column, sep, role = pair.partition("=")
        if not sep or not column or not role:
            raise DataError(f"--map {pair!r} is not COLUMN=ROLE", fix="write e.g. --map question=user --map answer=assistant")
        out[column] = role
    return out


def _read_args(args: argparse.Namespace) -> dict:
    return {"format": args.format, "mapping": _mapping(args.map), "system": args.system}


# ---------------------------------------------------------------------------------- commands


@command("models")
def cmd_models(args: argparse.Namespace) -> int:
    from onthejob.models.listing import format_models, list_models

    rows = list_models()
    print(json.dumps(rows, indent=2) if args.json else format_models(rows))
    return 0


@command("data check")
def cmd_data_check(args: argparse.Namespace) -> int:
    from onthejob.data.check import check_file, format_report, report_to_json
    from onthejob.models.load import load_tokenizer

    tokenizer = None if args.no_stats else load_tokenizer(args.model, on_convert=_say)
    report = check_file(
        args.file, tokenizer=tokenizer, max_seq_len=args.max_seq_len, train_on=args.train_on, **_read_args(args)
    )
    if args.json:
        print(json.dumps(report_to_json(report), indent=2))
    else:
        print(format_report(report, color=_color(sys.stdout)))
    return 0 if report.ok else DataError.exit_code


@command("data convert")
def cmd_data_convert(args: argparse.Namespace) -> int:
    from onthejob.data.readers import convert

    n = convert(args.file, args.out, **_read_args(args))
    _say(f"wrote {n} examples to {args.out}")
    return 0


@command("data preview")
def cmd_data_preview(args: argparse.Namespace) -> int:
    from onthejob.data.preview import render_preview
    from onthejob.data.readers import read_examples
    from onthejob.models.load import load_tokenizer

    result = read_examples(args.file, **_read_args(args))
    tokenizer = load_tokenizer(args.model, on_convert=_say)
    color = _color(sys.stdout)
    for example in result.examples[: args.n]:
        print(f"── {example.where}")
        print(render_preview(example, tokenizer, train_on=args.train_on, color=color))
    return 0


@command("data split")
def cmd_data_split(args: argparse.Namespace) -> int:
    from onthejob.data.readers import read_examples
    from onthejob.data.split import split_examples
    from onthejob.fsutil import write_jsonl

    result = read_examples(args.file, **_read_args(args))
    if result.errors:
        raise DataError(
            f"{args.file} has {len(result.errors)} errors; first: {result.errors[0]}",
            fix=f"run: ojt data check {args.file}",
        )
    train, held = split_examples(result.examples, eval_fraction=args.eval_split, seed=args.seed)
    write_jsonl(args.train_out, (e.to_record() for e in train))
    write_jsonl(args.eval_out, (e.to_record() for e in held))
    _say(f"{len(train)} training examples -> {args.train_out}; {len(held)} eval examples -> {args.eval_out}")
    return 0


# ---------------------------------------------------------------------------------- parser


def _add_read_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", help="input format (default: detected): chat, alpaca, sharegpt, prompt_completion, csv")
    p.add_argument("--map", action="append", metavar="COLUMN=ROLE", help="CSV/TSV column to role, e.g. --map question=user (repeatable)")
    p.add_argument("--system", help="a fixed system prompt added to every CSV/TSV example")


def _add_model_options(p: argparse.ArgumentParser) -> None:
    from onthejob.models.registry import DEFAULT_MODEL

    p.add_argument("--model", default=DEFAULT_MODEL, help=f"model whose tokenizer and chat template to use (default: {DEFAULT_MODEL})")
    p.add_argument("--train-on", default="all", choices=["all", "last", "sequence"], help="which tokens are supervised: all assistant turns (default), the last one, or the whole sequence")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ojt", description="onthejob: fine-tune language models on your own examples.")
    parser.add_argument("--version", action="version", version=f"onthejob {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and library logs")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("models", help="list known and cached models")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_models)

    data = sub.add_parser("data", help="prepare and validate training data").add_subparsers(dest="data_command", metavar="COMMAND")
    p = data.add_parser("check", help="validate a data file and show token statistics")
    p.add_argument("file")
    _add_read_options(p)
    _add_model_options(p)
    p.add_argument("--max-seq-len", type=int, default=2048, help="longest example, in tokens after templating (default: 2048)")
    p.add_argument("--no-stats", action="store_true", help="skip tokenizer statistics (no model needed)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_data_check)

    p = data.add_parser("convert", help="write any supported format as canonical chat JSONL")
    p.add_argument("file")
    p.add_argument("--out", required=True, help="output .jsonl (written atomically)")
    _add_read_options(p)
    p.set_defaults(func=cmd_data_convert)

    p = data.add_parser("preview", help="render examples through the chat template, marking supervised tokens")
    p.add_argument("file")
    p.add_argument("-n", type=int, default=3, help="how many examples (default: 3)")
    _add_read_options(p)
    _add_model_options(p)
    p.set_defaults(func=cmd_data_preview)

    p = data.add_parser("split", help="split a data file into training and eval files, deterministically")
    p.add_argument("file")
    p.add_argument("--eval-split", type=float, required=True, metavar="FRACTION", help="fraction held out, e.g. 0.1")
    p.add_argument("--seed", type=int, default=0, help="split seed (default: 0)")
    p.add_argument("--train-out", required=True, help="training output .jsonl")
    p.add_argument("--eval-out", required=True, help="eval output .jsonl")
    _add_read_options(p)
    p.set_defaults(func=cmd_data_split)
    return parser


def _quiet_libraries() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        if not args.debug:
            _quiet_libraries()
        return args.func(args)
    except OjtError as e:
        if args.debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - the last line of defence: one line, not a traceback
        if args.debug:
            raise
        print(f"internal error: {type(e).__name__}: {e} (rerun with --debug for the traceback)", file=sys.stderr)
        return 70
