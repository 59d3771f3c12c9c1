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
from onthejob.errors import ConfigError, DataError, OjtError

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


@command("train")
def cmd_train(args: argparse.Namespace) -> int:
    from pathlib import Path

    from onthejob.train.loop import resume_config, run

    if args.resume:
        if args.config or args.data:
            raise ConfigError("--resume takes the run folder only", fix="drop CONFIG/--data; add --key value to change settings")
        config = resume_config(Path(args.resume), args.overrides)
    else:
        config = _train_config(args, "train", "nothing to train on")
    run(config, resume=Path(args.resume) if args.resume else None)
    return 0


def _train_config(args: argparse.Namespace, verb: str, nothing: str):
    """The training config ``ojt train`` and ``ojt plan`` build from CONFIG, --data and overrides."""
    from pathlib import Path

    from onthejob.train import config as cfg

    if args.data:
        defaults = {"data": {"train": [{"path": args.data}]}, "output_dir": f"runs/{Path(args.data).stem}"}
        return cfg.load(args.config, args.overrides, defaults=defaults)
    if args.config:
        return cfg.load(args.config, args.overrides)
    raise ConfigError(nothing, fix=f"give a config (ojt {verb} configs/hr-demo.yaml) or a data file (ojt {verb} --data FILE)")


@command("plan")
def cmd_plan(args: argparse.Namespace) -> int:
    from onthejob.train.plan import plan_report

    estimates, text = plan_report(_train_config(args, "plan", "nothing to plan"), args.gpu)
    if args.json:
        print(json.dumps([e.to_dict() for e in estimates], indent=2))
    else:
        print(text)
    return 0


def _sampling(args: argparse.Namespace):
    from onthejob.serve.engine import SamplingParams

    return SamplingParams(max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p, seed=args.seed)


@command("chat")
def cmd_chat(args: argparse.Namespace) -> int:
    from onthejob.rag.cli import rag_from_args
    from onthejob.serve.chat import run_chat

    if args.url:
        from onthejob.serve.client import run_remote_chat

        return run_remote_chat(args.url, args.remote_model or args.model, args.system, _sampling(args), args.api_key)
    if not args.model:
        raise ConfigError("name a model or run to chat with", fix="ojt chat RUN|MODEL, or ojt chat --url http://HOST:PORT/v1")
    return run_chat(args.model, system=args.system, params=_sampling(args), rag=rag_from_args(args))


@command("generate")
def cmd_generate(args: argparse.Namespace) -> int:
    from onthejob.serve.generate import run_generate

    from onthejob.rag.cli import rag_from_args

    n = run_generate(args.model, args.input, args.out, params=_sampling(args), batch_size=args.batch_size, rag=rag_from_args(args))
    _say(f"wrote {n} records to {args.out}")
    return 0


@command("merge")
def cmd_merge(args: argparse.Namespace) -> int:
    from onthejob.models.merge import merge

    out = merge(args.run, args.out)
    _say(f"merged model written to {out} (load it with transformers' AutoModelForCausalLM.from_pretrained)")
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


def _add_sampling_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max-new-tokens", type=int, default=256, help="longest answer in tokens (default: 256)")
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default); higher = more varied")
    p.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass (default: 1.0)")
    p.add_argument("--seed", type=int, help="seed for sampling")


def build_parser() -> argparse.ArgumentParser:
    from onthejob.eval import cli as eval_cli
    from onthejob.rag import cli as rag_cli
    from onthejob.rag.cli import add_rag_option
    from onthejob.serve import cli as serve_cli

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

    p = sub.add_parser("chat", help="talk to a model or a trained run (streaming, multi-turn)")
    p.add_argument("model", metavar="RUN|MODEL", nargs="?", help="a run folder, an adapter or model folder, or a model name")
    p.add_argument("--system", help="system prompt for the conversation (default: the one the run was trained with)")
    p.add_argument("--url", help="talk to a running `ojt serve` (or any OpenAI-compatible API) instead, e.g. http://127.0.0.1:8000/v1")
    p.add_argument("--model", dest="remote_model", help="with --url: the served model name")
    p.add_argument("--api-key", help="with --url: the API key (default: $ONTHEJOB_API_KEY)")
    _add_sampling_options(p)
    add_rag_option(p)
    p.set_defaults(func=cmd_chat)

    p = sub.add_parser("generate", help="answer every conversation of a JSONL file, in batches")
    p.add_argument("model", metavar="RUN|MODEL", help="a run folder, an adapter or model folder, or a model name")
    p.add_argument("--input", required=True, help="chat JSONL: conversations without their final answer")
    p.add_argument("--out", required=True, help="output JSONL: the same records with the answer appended (written atomically)")
    p.add_argument("--batch-size", type=int, default=8, help="conversations per batch (default: 8)")
    _add_sampling_options(p)
    add_rag_option(p)
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("merge", help="merge a run's adapter into its base model and save a plain model")
    p.add_argument("run", metavar="RUN", help="a run folder or adapter folder")
    p.add_argument("--out", required=True, help="output folder (safetensors model with tokenizer)")
    p.set_defaults(func=cmd_merge)

    p = sub.add_parser(
        "train",
        help="fine-tune a model (LoRA by default)",
        description="Fine-tune a model. Any config key can be set on the command line as --section.key VALUE, e.g. --optim.lr 1e-4 --lora.r 8.",
    )
    p.add_argument("config", nargs="?", help="a training config (YAML); see configs/")
    p.add_argument("--data", help="train on this file with the default settings (a config, if given, still applies)")
    p.add_argument("--resume", metavar="RUN", help="continue a run folder from its last complete checkpoint")
    p.set_defaults(func=cmd_train, overrides=[])

    p = sub.add_parser(
        "plan",
        help="estimate peak memory and time per epoch of a training config, here and on GPUs",
        description="Estimate, before training, the peak memory and time per epoch of a config on this machine and on named GPUs. Config keys can be overridden as in ojt train (--micro_batch_size 4).",
    )
    p.add_argument("config", nargs="?", help="a training config (YAML)")
    p.add_argument("--data", help="plan training on this file with the default settings")
    p.add_argument("--gpu", action="append", metavar="NAME", help="also estimate for this GPU (repeatable): H100, A100, RTX 4090, L4, T4, ...; default H100, A100, RTX 4090")
    p.add_argument("--json", action="store_true", help="print the estimates as JSON")
    p.set_defaults(func=cmd_plan, overrides=[])

    eval_cli.register(sub)
    rag_cli.register(sub)
    serve_cli.register(sub)
    return parser


def _split_overrides(argv: list[str]) -> tuple[list[str], list[str]]:
    """Take ``--section.key VALUE`` config overrides out of ``ojt train``'s and ``ojt plan``'s arguments."""
    command = next((i for i, a in enumerate(argv) if not a.startswith("-")), None)
    if command is None or argv[command] not in ("train", "plan"):
        return argv, []
    at = command + 1
    own, overrides, rest = argv[:at], [], argv[at:]
    while rest:
        token = rest.pop(0)
        if token in ("--data", "--resume", "--gpu"):
            own += [token] + rest[:1]
            rest = rest[1:]
        elif token.startswith("--") and token not in ("--help", "--debug", "--json") and not token.startswith(("--data=", "--resume=", "--gpu=")):
            overrides.append(token)
            if "=" not in token and rest:
                overrides.append(rest.pop(0))
        else:
            own.append(token)
    return own, overrides


def _quiet_libraries() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module="torch")
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv, overrides = _split_overrides(list(sys.argv[1:] if argv is None else argv))
    args = parser.parse_args(argv)
    args.overrides = overrides
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    if args.debug:
        logging.getLogger("onthejob").setLevel(logging.DEBUG)
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
