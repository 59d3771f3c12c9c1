"""The ``ojt eval``, ``ojt compare`` and ``ojt data leakage`` commands.

    ojt eval runs/hr-demo --data examples/hr/eval.jsonl            # base vs tuned, reports in runs/hr-demo/eval
    ojt eval runs/hr-demo --data eval.jsonl --general none          # without the general-skills probe
    ojt compare --data examples/hr/eval.jsonl --arms prompt,few-shot,rag,ft,ft+rag --run runs/hr-demo --rag hr
    ojt compare compare.yaml --rag-k 3
    ojt data leakage examples/hr/train.jsonl examples/hr/eval.jsonl

Each command loads its config (``onthejob.eval.config``: a YAML file and/or flags) and calls one
function of ``onthejob.eval.compare``: ``ojt eval`` is the comparison with two arms.
"""

from __future__ import annotations

import argparse

from onthejob.console import say
from onthejob.generate.config import METAVARS as ANSWER_METAVARS
from onthejob.generate.config import RAG_FLAGS, RAG_SKIP, SAMPLING_FLAGS

SHOW = 8  # questions printed side by side
FLAGS = {**SAMPLING_FLAGS, **RAG_FLAGS, "judge.url": "--judge-url", "judge.model": "--judge-model",
         "few_shot.data": "--shots", "few_shot.k": "--shots-k"}
METAVARS = {**ANSWER_METAVARS, "data": "EVAL.jsonl", "judge.url": "URL", "judge.model": "M", "general": "builtin|FILE|none",
            "out": "DIR", "base": "MODEL", "run": "RUN", "arms": "A,B,...", "uncovered": "EVAL.jsonl",
            "few_shot.data": "FILE", "few_shot.k": "K"}


# ---------------------------------------------------------------------------------- ojt eval


def cmd_eval(args: argparse.Namespace) -> int:
    from onthejob import config as cfg
    from onthejob.eval.compare import evaluate_model
    from onthejob.eval.config import EvalConfig

    config = cfg.load(EvalConfig, cfg.config_file(args), cfg.overrides(args, {"model": "model"}))
    result = evaluate_model(config)
    evals = list(result.evals.values())
    print_side_by_side(evals, result.primary)
    if result.general:
        print_general(result.general)
    if len(evals) > 1:
        print(result.verdict)
    say(f"reports: {result.paths['html']} (also report.md, report.json)")
    return 0


def print_side_by_side(evals: list, primary: str) -> None:
    """The first questions with every model's answer, then one summary line per measure.

    The line "fact match on N held-out questions: base X%, tuned Y%" is what scripts/demo.sh shows."""
    width = max(24, 90 // len(evals))
    rows = evals[0].per_example
    lines = [f"\n{'question':<48} " + " ".join(f"{e.label:<{width}}" for e in evals)]
    for i, row in enumerate(rows[:SHOW]):
        lines.append(_cut(row["question"], 48) + " " + " ".join(_cut(e.per_example[i]["answer"], width) for e in evals))
    lines.append("")
    n = len(rows)
    if primary == "facts_recall":
        lines.append(f"fact match on {n} held-out questions: " + _each(evals, "facts_recall", "{:.0%}"))
    lines.append(f"token F1 on {n} held-out questions: " + _each(evals, "token_f1", "{:.2f}"))
    lines.append("answers that ended by themselves (end-of-turn): " + _each(evals, "stopped", "{:.0%}"))
    if "judge" in evals[0].aggregates:
        lines.append("judge's score (correct 1, partly 0.5): " + _each(evals, "judge", "{:.2f}"))
    print("\n".join(lines))


def print_general(general: dict) -> None:
    """The probe's one line per model, e.g. ``general skills (100 items): base 61, tuned 58 passed``."""
    passed = ", ".join(f"{e.label.removesuffix(' (general)')} {_passed(e)}" for e in general["evals"].values())
    print(f"general skills ({general['name']}, {general['n']} items): {passed}")


def _passed(e) -> str:
    agg = e.aggregates.get("passed") or {}
    if agg.get("n"):
        return f"{round(agg['mean'] * agg['n'])} passed"
    return f"token F1 {_mean(e.aggregates, 'token_f1', '{:.3f}')}"


def _each(evals: list, metric: str, fmt: str) -> str:
    def one(e) -> str:
        mean = e.aggregates.get(metric, {}).get("mean")
        return "–" if mean is None else fmt.format(mean)

    if len(evals) == 1:
        return one(evals[0])
    return ", ".join(f"{e.label} {one(e)}" for e in evals)


def _cut(text: str, width: int) -> str:
    text = " ".join(str(text).split())
    return (text[: width - 1] + "…") if len(text) > width else text.ljust(width)


# ---------------------------------------------------------------------------------- ojt compare


def cmd_compare(args: argparse.Namespace) -> int:
    from onthejob import config as cfg
    from onthejob.eval.compare import compare, leak_line
    from onthejob.eval.config import CompareConfig

    config = cfg.load(CompareConfig, cfg.config_file(args), cfg.overrides(args))
    result = compare(config)
    print(f"\n{'arm':<20} {'correct':>9} {result.primary:>14} {'token F1':>9} {'support':>8} {'abstain':>8}"
          f" {'conf. wrong':>11} {'latency':>9} {'tokens':>7}")
    for arm, e in result.evals.items():
        agg = e.aggregates
        print(f"{result.labels[arm]:<20} {result.correct[arm]:>4} / {result.n:<3}"
              f" {_mean(agg, result.primary, '{:.3f}'):>14} {_mean(agg, 'token_f1', '{:.3f}'):>9}"
              f" {_mean(agg, 'answer_support', '{:.2f}'):>8} {_mean(agg, 'abstained', '{:.2f}'):>8}"
              f" {_mean(agg, 'confidently_wrong', '{:.2f}'):>11}"
              f" {_mean(agg, 'latency_s', '{:.2f} s'):>9} {_mean(agg, 'answer_tokens', '{:.0f}'):>7}")
    if result.general:
        print_general(result.general)
    print("\n" + result.verdict)
    if result.clean:
        say(f"{len({leak_line(leak) for leak in result.leaks})} questions resemble training examples; "
            "scores without them are in the report")
    say(f"reports: {result.paths['html']} (also report.md, report.json)")
    return 0


def _mean(agg: dict, metric: str, fmt: str) -> str:
    mean = (agg.get(metric) or {}).get("mean")
    return "–" if mean is None else fmt.format(mean)


# ---------------------------------------------------------------------------------- ojt data leakage


def cmd_leakage(args: argparse.Namespace) -> int:
    from onthejob.eval.leakage import run_leakage

    _, text = run_leakage(args.train, args.eval, embed=args.embed)
    print(text)
    return 0


# ---------------------------------------------------------------------------------- parser


def register(sub) -> None:
    """Add ``ojt eval``, ``ojt compare`` and ``ojt data leakage`` to the subparsers of ``ojt``."""
    from onthejob import config as cfg
    from onthejob.eval.config import CompareConfig, EvalConfig

    p = sub.add_parser("eval", help="score a model or run on held-out questions (with the base model side by side)",
                       description="Score a tuned run (or any model) on held-out questions, with its base model beside it: "
                                   "ojt compare with two arms. Settings come from --config FILE and flags.")
    p.add_argument("model", metavar="RUN|MODEL", nargs="?", help="the tuned run (or any model)")
    cfg.add_config_file(p, what="eval settings (docs/config.md)")
    cfg.add_options(p, EvalConfig, aliases=FLAGS, metavars=METAVARS, skip=("model", *RAG_SKIP))
    p.set_defaults(func=cmd_eval, settings=True)

    p = sub.add_parser("compare", help="prompting vs few-shot vs RAG vs fine-tuning vs both, on the same questions",
                       description="Answer the same questions by prompting, few-shot, RAG, fine-tuning and both; say which "
                                   "wins and whether it is significant. Settings come from CONFIG and flags.")
    cfg.add_config_file(p, positional=True, what="compare settings (docs/config.md)")
    cfg.add_options(p, CompareConfig, aliases=FLAGS, metavars=METAVARS, skip=RAG_SKIP)
    p.set_defaults(func=cmd_compare, settings=True)

    data = _subcommands(sub.choices["data"])
    p = data.add_parser("leakage", help="find eval questions that repeat or paraphrase training examples")
    p.add_argument("train", metavar="TRAIN", help="training data file")
    p.add_argument("eval", metavar="EVAL", help="eval data file")
    p.add_argument("--embed", action="store_true", help="also compare sentence embeddings (catches paraphrases; slower)")
    p.set_defaults(func=cmd_leakage)


def _subcommands(parser: argparse.ArgumentParser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    raise RuntimeError(f"{parser.prog} has no subcommands")  # a wiring bug, not a user error
