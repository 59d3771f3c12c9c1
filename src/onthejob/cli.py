"""The ``ojt`` command. Every command parses its arguments and calls one function of the package.

    ojt --help
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from onthejob import __version__
from onthejob import config as cfg
from onthejob.console import say as _say
from onthejob.console import use_color as _color
from onthejob.errors import ConfigError, DataError, OjtError, from_os_error



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


def cmd_models(args: argparse.Namespace) -> int:
    from onthejob.models.listing import format_models, list_models

    rows = list_models()
    print(json.dumps(rows, indent=2) if args.json else format_models(rows))
    return 0


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


def cmd_data_convert(args: argparse.Namespace) -> int:
    from onthejob.data.readers import convert

    n = convert(args.file, args.out, **_read_args(args))
    _say(f"wrote {n} examples to {args.out}")
    return 0


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


def cmd_data_split(args: argparse.Namespace) -> int:
    from onthejob.data.split import split_file

    if not 0 <= args.eval_split < 1:
        raise ConfigError(f"--eval-split {args.eval_split}: the fraction held out must be at least 0 and below 1", fix="e.g. --eval-split 0.1")
    n_train, n_eval = split_file(args.file, train_out=args.train_out, eval_out=args.eval_out,
                                 eval_fraction=args.eval_split, seed=args.seed, **_read_args(args))
    _say(f"{n_train} training examples -> {args.train_out}; {n_eval} eval examples -> {args.eval_out}")
    return 0


def cmd_data_from_feedback(args: argparse.Namespace) -> int:
    from onthejob.data.feedback import from_feedback

    counts = from_feedback(args.db, args.out, args.pairs_out)
    _say(f"{counts['examples']} examples ({counts['corrected']} corrected, {counts['rated_good']} rated good) -> {args.out}"
         + (f"; {counts['pairs']} preference pairs -> {args.pairs_out}" if args.pairs_out else ""))
    _say(f"{counts['answers']} answers judged; {counts['skipped']} skipped (rated bad without a correction, or notes only)"
         + (f"; {counts['invalid']} left out: their stored conversation is not valid chat data" if counts["invalid"] else ""))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from onthejob.train.loop import resume_config, run

    if args.resume and args.overwrite:
        raise ConfigError("--resume continues a run and --overwrite replaces it", fix="give one of them")
    if args.resume:
        if cfg.config_file(args) or args.data:
            raise ConfigError("--resume takes the run folder only", fix="drop CONFIG/--data; add --key value to change settings")
        config = resume_config(Path(args.resume), cfg.overrides(args))
    else:
        config = _train_config(args, "train", "nothing to train on")
    run(config, resume=Path(args.resume) if args.resume else None, overwrite=args.overwrite)
    return 0


def _train_config(args: argparse.Namespace, verb: str, nothing: str):
    """The training config ``ojt train`` and ``ojt plan`` build from CONFIG, --data and flags."""
    from onthejob.train import config as train_config

    path, overrides = cfg.config_file(args), cfg.overrides(args)
    if args.data:
        defaults = {"data": {"train": [{"path": args.data}]}, "output_dir": f"runs/{Path(args.data).stem}"}
        return train_config.load(path, overrides, defaults=defaults)
    if path:
        return train_config.load(path, overrides)
    raise ConfigError(nothing, fix=f"give a config (ojt {verb} configs/hr-demo.yaml) or a data file (ojt {verb} --data FILE)")


def cmd_plan(args: argparse.Namespace) -> int:
    from onthejob.train.plan import plan_report

    estimates, text = plan_report(_train_config(args, "plan", "nothing to plan"), args.gpu)
    if args.json:
        print(json.dumps([e.to_dict() for e in estimates], indent=2))
    else:
        print(text)
    return 0


def cmd_chat(args: argparse.Namespace) -> int:
    from onthejob.generate.config import ChatConfig

    config = cfg.load(ChatConfig, cfg.config_file(args), cfg.overrides(args, {"model": "model"}))
    if config.url:
        from onthejob.serve.client import run_remote_chat

        if config.rag.collection:
            raise ConfigError("--rag answers with a local model; a server answers from documents itself",
                              fix=f"serve the collection under a name (ojt serve --rag NAME={config.rag.collection}) and chat with --model NAME")
        return run_remote_chat(config)
    if not config.model:
        raise ConfigError("name a model or run to chat with", fix="ojt chat RUN|MODEL, or ojt chat --url http://HOST:PORT/v1")
    from onthejob.generate.chat import run

    return run(config)


def cmd_generate(args: argparse.Namespace) -> int:
    from onthejob.generate.config import GenerateConfig
    from onthejob.generate.files import run

    config = cfg.load(GenerateConfig, cfg.config_file(args), cfg.overrides(args, {"model": "model"}))
    n = run(config)
    _say(f"wrote {n} records to {config.out}")
    return 0


def cmd_merge(args: argparse.Namespace) -> int:
    from onthejob.models.merge import merge

    out = merge(args.run, args.out)
    _say(f"merged model written to {out} (load it with transformers' AutoModelForCausalLM.from_pretrained)")
    return 0


# ---------------------------------------------------------------------------------- parser


def _add_read_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", help="input format (default: detected): chat, alpaca, sharegpt, prompt_completion, preference, csv")
    p.add_argument("--map", action="append", metavar="COLUMN=ROLE", help="CSV/TSV column to role, e.g. --map question=user (repeatable)")
    p.add_argument("--system", help="a fixed system prompt added to every CSV/TSV example")


def _add_model_options(p: argparse.ArgumentParser) -> None:
    from onthejob.models.registry import DEFAULT_MODEL

    p.add_argument("--model", default=DEFAULT_MODEL, help=f"model whose tokenizer and chat template to use (default: {DEFAULT_MODEL})")
    p.add_argument("--train-on", default="all", choices=["all", "last", "sequence"], help="which tokens are supervised: all assistant turns (default), the last one, or the whole sequence")


def _add_answer_options(p: argparse.ArgumentParser, model) -> None:
    """The flags of a generation stage's config ``model`` (``--max-new-tokens``, ``--rag NAME``
    ... and every ``--section.key``), and ``--config FILE``."""
    from onthejob.generate.config import METAVARS, RAG_FLAGS, RAG_SKIP, SAMPLING_FLAGS

    cfg.add_options(p, model, aliases={**SAMPLING_FLAGS, **RAG_FLAGS, "sampling.seed": "--seed"}, metavars=METAVARS,
                    skip=RAG_SKIP)
    cfg.add_config_file(p, what="settings (docs/config.md)")


def build_parser() -> argparse.ArgumentParser:
    from onthejob.eval import cli as eval_cli
    from onthejob.rag import cli as rag_cli
    from onthejob.serve import cli as serve_cli
    from onthejob.export import cli as export_cli
    from onthejob.studio import cli as studio_cli
    from onthejob.synth import cli as synth_cli

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

    p = data.add_parser("from-feedback", help="turn judgements of served answers into training examples and preference pairs")
    p.add_argument("db", metavar="DB", help="the feedback database ojt serve records its answers and their feedback in (its feedback_db)")
    p.add_argument("--out", required=True, help="training examples: corrections and answers rated good, chat JSONL (written atomically)")
    p.add_argument("--pairs-out", help="also write preference pairs (OpenAI's DPO JSONL): corrections and good answers over bad ones")
    p.set_defaults(func=cmd_data_from_feedback)

    from onthejob.generate.config import ChatConfig, GenerateConfig

    p = sub.add_parser("chat", help="talk to a model or a trained run (streaming, multi-turn)")
    p.add_argument("model", metavar="RUN|MODEL", nargs="?", help="a run folder, an adapter or model folder, or a model name (with --url: the served model)")
    _add_answer_options(p, ChatConfig)
    p.set_defaults(func=cmd_chat, settings=True)

    p = sub.add_parser("generate", help="answer every conversation of a JSONL file, in batches")
    p.add_argument("model", metavar="RUN|MODEL", nargs="?", help="a run folder, an adapter or model folder, or a model name")
    _add_answer_options(p, GenerateConfig)
    p.set_defaults(func=cmd_generate, settings=True)

    p = sub.add_parser("merge", help="merge a run's adapter into its base model and save a plain model")
    p.add_argument("run", metavar="RUN", help="a run folder or adapter folder")
    p.add_argument("--out", required=True, help="output folder (safetensors model with tokenizer)")
    p.set_defaults(func=cmd_merge)

    from onthejob.train.config import TrainConfig

    p = sub.add_parser(
        "train",
        help="fine-tune a model (LoRA by default)",
        description="Fine-tune a model. Every config key can be set on the command line as --section.key VALUE, e.g. --optim.lr 1e-4 --lora.r 8.",
    )
    cfg.add_config_file(p, positional=True, what="training settings (see configs/)")
    p.add_argument("--data", help="train on this file with the default settings (a config, if given, still applies)")
    p.add_argument("--resume", metavar="RUN", help="continue a run folder from its last complete checkpoint")
    p.add_argument("--overwrite", action="store_true", help="replace the run already in output_dir (a new run never mixes with another's files)")
    cfg.add_options(p, TrainConfig)
    p.set_defaults(func=cmd_train, settings=True)

    p = sub.add_parser(
        "plan",
        help="estimate peak memory and time per epoch of a training config, here and on GPUs",
        description="Estimate, before training, the peak memory and time per epoch of a config on this machine and on named GPUs. Config keys can be set as in ojt train (--micro_batch_size 4).",
    )
    cfg.add_config_file(p, positional=True, what="training settings (see configs/)")
    p.add_argument("--data", help="plan training on this file with the default settings")
    p.add_argument("--gpu", action="append", metavar="NAME", help="also estimate for this GPU (repeatable): H100, A100, RTX 4090, L4, T4, ...; default H100, A100, RTX 4090")
    p.add_argument("--json", action="store_true", help="print the estimates as JSON")
    cfg.add_options(p, TrainConfig)
    p.set_defaults(func=cmd_plan, settings=True)

    eval_cli.register(sub)
    synth_cli.register(eval_cli._subcommands(sub.choices["data"]))
    rag_cli.register(sub)
    serve_cli.register(sub)
    export_cli.register(sub)
    studio_cli.register(sub)
    _no_abbreviations(parser)
    return parser


def _no_abbreviations(parser: argparse.ArgumentParser) -> None:
    """argparse takes ``--data`` for ``--data.eval`` when the command has no ``--data`` of its
    own; every flag must be spelled out."""
    parser.allow_abbrev = False
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _no_abbreviations(sub)


def stage_configs() -> list[tuple[str, str, type]]:
    """(heading, how it is given, config model) of every stage's config, in the order of the job:
    what docs/config.md documents."""
    from onthejob.eval.config import CompareConfig, EvalConfig
    from onthejob.generate.config import ChatConfig, GenerateConfig
    from onthejob.generate.sampling import SamplingParams
    from onthejob.rag.config import IndexConfig, RetrievalConfig
    from onthejob.export.config import ExportConfig
    from onthejob.serve.config import ServeConfig
    from onthejob.studio.config import StudioConfig
    from onthejob.synth.config import AugmentConfig, SynthConfig
    from onthejob.train.config import TrainConfig

    answering = "chat, generate, eval and compare"
    return [
        ("Writing examples from documents", "`ojt data synth --config FILE`", SynthConfig),
        ("Rewording examples", "`ojt data augment --config FILE`", AugmentConfig),
        ("Training", "`ojt train CONFIG.yaml`, `ojt plan CONFIG.yaml`", TrainConfig),
        ("Sampling", f"the `sampling:` section of {answering} (`--max-new-tokens`, `--temperature`, ...)", SamplingParams),
        ("Retrieval", f"`ojt rag query --config FILE`, and the `rag:` section of {answering} (`--rag NAME`, `--rag-k`, ...)", RetrievalConfig),
        ("Indexing documents", "`ojt rag index --config FILE`", IndexConfig),
        ("Chat", "`ojt chat --config FILE`", ChatConfig),
        ("Batch generation", "`ojt generate --config FILE`", GenerateConfig),
        ("Evaluation", "`ojt eval --config FILE`", EvalConfig),
        ("Comparing prompting, RAG and fine-tuning", "`ojt compare CONFIG.yaml`", CompareConfig),
        ("Serving", "`ojt serve CONFIG.yaml`", ServeConfig),
        ("Exporting", "`ojt export RUN --config FILE`", ExportConfig),
        ("Studio", "`ojt studio CONFIG.yaml`", StudioConfig),
    ]


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
    argv, unknown = cfg.split_unknown(parser, list(sys.argv[1:] if argv is None else argv))
    args = parser.parse_args(argv)
    args.unknown_settings = unknown
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
    except OSError as e:  # a full or read-only disk, a permission: the path and what to do
        if args.debug:
            raise
        error = from_os_error(e)
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    except Exception as e:  # noqa: BLE001 - the last line of defence: one line, not a traceback
        if args.debug:
            raise
        print(f"internal error: {type(e).__name__}: {e} (rerun with --debug for the traceback)", file=sys.stderr)
        return 70
