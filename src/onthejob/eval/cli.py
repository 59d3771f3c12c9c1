"""The ``ojt eval``, ``ojt compare`` and ``ojt data leakage`` commands.

    ojt eval runs/hr-demo --data examples/hr/eval.jsonl            # base vs tuned, reports in runs/hr-demo/eval
    ojt eval runs/hr-demo --data eval.jsonl --general alpaca.json  # ...and did general skills regress?
    ojt compare --data examples/hr/eval.jsonl --arms prompt,rag,ft,ft+rag --run runs/hr-demo --rag hr-demo
    ojt data leakage examples/hr/train.jsonl examples/hr/eval.jsonl

Each command parses its arguments and calls one function of ``onthejob.eval``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from onthejob.errors import ConfigError

SHOW = 8  # questions printed side by side


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _params(args: argparse.Namespace):
    if args.max_new_tokens is None:
        return None  # evaluate's default
    from onthejob.serve.engine import SamplingParams

    return SamplingParams(max_new_tokens=args.max_new_tokens, seed=args.seed)


# ---------------------------------------------------------------------------------- ojt eval


def cmd_eval(args: argparse.Namespace) -> int:
    from onthejob.eval.compare import (
        count_correct,
        leak_line,
        primary_metric,
        training_files,
    )
    from onthejob.eval.data import read_eval
    from onthejob.eval.report import write_reports
    from onthejob.eval.run import evaluate
    from onthejob.models.adapters import locate
    from onthejob.rag.cli import rag_from_args

    if bool(args.judge_url) != bool(args.judge_model):
        raise ConfigError("a judge needs both --judge-url and --judge-model", fix="give both, or neither")
    items = read_eval(args.data)
    found = locate(args.model)
    leaks = _leaks(training_files(found.run) if found.run else [], args.data)
    if args.exclude_leaks:
        if found.run is None:
            raise ConfigError("--exclude-leaks needs a run folder (its config.yaml names the training files)", fix="name the run, not the model")
        leaked = {leak_line(leak) for leak in leaks}
        items = [item for item in items if item.line not in leaked]
        _say(f"left out {len(leaked)} questions that resemble training examples; {len(items)} remain")
        if not items:
            raise ConfigError("every question resembles a training example", fix="drop --exclude-leaks or write new questions")
    with_base = args.vs_base or args.base is not None or found.run is not None or args.general
    base = args.base or found.base_name
    rag = rag_from_args(args)
    kw = {"params": _params(args), "system": args.system, "seed": args.seed, "rag": rag, "batch_size": args.batch_size}
    try:
        evals = ([evaluate(base, items, label="base", **kw)] if with_base else []) + [evaluate(args.model, items, label="tuned", **kw)]
    finally:
        if rag is not None:
            rag.close()
    if args.judge_url:
        for e in evals:
            add_judge(e, items, args.judge_url, args.judge_model, seed=args.seed)
    primary = primary_metric(items)
    comparisons = [_paired(evals[0], evals[1], primary, args.seed)] if with_base else []
    if args.judge_url and with_base:
        comparisons.append(_paired(evals[0], evals[1], "judge", args.seed))
    tables = []
    if args.general:
        general = _general(args, base, kw)
        comparisons += general["comparisons"]
        tables.append(general["table"])
    print_side_by_side(evals, items, primary)
    verdict = _eval_verdict(evals, comparisons, primary, len(items), count_correct)
    if verdict:
        print(verdict)
    out = Path(args.out) if args.out else (found.run / "eval" if found.run else Path("eval-report"))
    for e in evals:
        for row, item in zip(e.per_example, items):
            row.setdefault("facts", item.facts)
    paths = write_reports(evals, out, title=f"{Path(args.model).name} on {Path(args.data).name}", verdict=verdict,
                          comparisons=comparisons, leaks=leaks, tables=tables, primary=primary)
    _say(f"reports: {paths['html']} (also report.md, report.json)")
    return 0


def add_judge(e, items: list, url: str, model: str, *, seed: int = 0) -> None:
    """Grade ``e``'s answers 1-5 with a judge model: per-question ``judge``/``judge_reason`` and an aggregate."""
    from onthejob.eval.judge import judge
    from onthejob.eval.stats import bootstrap_ci

    grades = judge(items, [row["answer"] for row in e.per_example], base_url=url, model=model)
    for row, grade in zip(e.per_example, grades):
        row["judge"], row["judge_reason"] = grade["score"], grade["reason"]
    values = [g["score"] for g in grades]
    n = sum(1 for v in values if v is not None)
    mean, low, high = bootstrap_ci(values, seed=seed) if n else (None, None, None)
    e.aggregates["judge"] = {"mean": mean, "low": low, "high": high, "n": n}


def _leaks(train_files: list[Path], data: str) -> list:
    if not train_files:
        return []
    from onthejob.eval.compare import leak_line
    from onthejob.eval.leakage import run_leakage

    leaks = []
    for path in train_files:
        leaks += run_leakage(path, data)[0]
    if leaks:
        _say(f"warning: {len({leak_line(leak) for leak in leaks})} eval questions resemble training examples "
             f"(see the report; --exclude-leaks leaves them out)")
    return leaks


def _paired(a, b, metric: str, seed: int, *, suffix: str = "") -> dict:
    """b against a on ``metric`` (diff = b - a), by eval line."""
    from onthejob.eval.compare import _aligned
    from onthejob.eval.stats import paired_bootstrap

    xs, ys = _aligned(a.per_example, b.per_example, metric)
    return {"a": b.label + suffix, "b": a.label + suffix, "metric": metric, **paired_bootstrap(xs, ys, seed=seed)}


def print_side_by_side(evals: list, items: list, primary: str) -> None:
    """The first questions with every model's answer, then one summary line per measure.

    The line "fact match on N held-out questions: base X%, tuned Y%" is what scripts/demo.sh shows."""
    width = max(24, 90 // len(evals))
    lines = [f"\n{'question':<48} " + " ".join(f"{e.label:<{width}}" for e in evals)]
    for i, item in enumerate(items[:SHOW]):
        lines.append(_cut(item.question, 48) + " " + " ".join(_cut(e.per_example[i]["answer"], width) for e in evals))
    lines.append("")
    n = len(items)
    if primary == "facts_recall":
        lines.append(f"fact match on {n} held-out questions: " + _each(evals, "facts_recall", "{:.0%}"))
    lines.append(f"token F1 on {n} held-out questions: " + _each(evals, "token_f1", "{:.2f}"))
    lines.append("answers that ended by themselves (end-of-turn): " + _each(evals, "stopped", "{:.0%}"))
    if "judge" in evals[0].aggregates:
        lines.append("judge's grade (1-5): " + _each(evals, "judge", "{:.2f}"))
    print("\n".join(lines))


def _each(evals: list, metric: str, fmt: str) -> str:
    def one(e) -> str:
        mean = e.aggregates.get(metric, {}).get("mean")
        return "–" if mean is None else fmt.format(mean)

    if len(evals) == 1:
        return one(evals[0])
    return ", ".join(f"{e.label} {one(e)}" for e in evals)


def _eval_verdict(evals, comparisons, primary: str, n: int, count_correct) -> str | None:
    if len(evals) < 2:
        return None
    c = comparisons[0]
    base, tuned = count_correct(evals[0].per_example, primary), count_correct(evals[1].per_example, primary)
    head = f"tuned answers {tuned} of {n} correctly against {base} for base"
    if not c.get("n"):
        return head + "."
    sig = "significant" if c["significant"] else "not significant"
    lines = [f"{head}; {primary} {c['diff']:+.2f}, {sig} (95% CI {c['low']:+.2f} to {c['high']:+.2f})."]
    general = [x for x in comparisons[1:] if x["a"].endswith("(general)")]
    if general:
        worse = [x["metric"] for x in general if x["significant"] and x["diff"] < 0]
        lines.append(f"general skills regressed ({', '.join(worse)} significantly lower)." if worse
                     else "general skills: no significant regression (token F1, ROUGE-L).")
    return "\n".join(lines)


def _general(args: argparse.Namespace, base: str, kw: dict) -> dict:
    """Base and tuned on a general instruction set: did fine-tuning cost general skills?"""
    from onthejob.data.readers import read_examples
    from onthejob.eval.data import EvalItem
    from onthejob.eval.run import evaluate

    result = read_examples(args.general)
    items = [EvalItem(line=e.line, messages=e.messages[:-1], reference=str(e.messages[-1].get("content") or ""),
                      facts=[], regex=None, json_schema=None, raw={})
             for e in result.examples if e.messages and e.messages[-1].get("role") == "assistant"]
    if not items:
        raise ConfigError(f"{args.general}: no examples ending in an answer", fix="give an Alpaca/chat file with reference outputs")
    kw = {**kw, "rag": None}
    a = evaluate(base, items, label="base", **kw)
    b = evaluate(args.model, items, label="tuned", **kw)
    comparisons = [_paired(a, b, m, args.seed, suffix=" (general)") for m in ("token_f1", "rouge_l")]
    rows = [[m, a.aggregates[m]["mean"], b.aggregates[m]["mean"], c["diff"], f"{c['low']:+.3f} to {c['high']:+.3f}",
             "regressed" if c["significant"] and c["diff"] < 0 else ("improved" if c["significant"] else "no significant change")]
            for m, c in zip(("token_f1", "rouge_l"), comparisons)]
    for m, base_mean, tuned_mean, diff, ci, word in rows:
        print(f"general skills on {len(items)} questions ({Path(args.general).name}): {m} base {base_mean:.3f}, "
              f"tuned {tuned_mean:.3f} ({diff:+.3f}, 95% CI {ci}): {word}")
    table = {"title": f"General instruction skills ({Path(args.general).name}, {len(items)} questions)",
             "columns": ["metric", "base", "tuned", "difference", "95% CI", ""], "rows": rows}
    return {"comparisons": comparisons, "table": table}


def _cut(text: str, width: int) -> str:
    text = " ".join(str(text).split())
    return (text[: width - 1] + "…") if len(text) > width else text.ljust(width)


# ---------------------------------------------------------------------------------- ojt compare


def cmd_compare(args: argparse.Namespace) -> int:
    from onthejob.eval.compare import ARMS, compare, leak_line

    out = args.out or (str(Path(args.run) / "compare") if args.run else "compare-report")
    result = compare(args.data, arms=args.arms, run=args.run, rag=args.rag, base=args.base, system=args.system,
                     params=_params(args), seed=args.seed, out_dir=out, rag_k=args.rag_k, rag_store=args.rag_store,
                     batch_size=args.batch_size)
    n = len(next(iter(result.evals.values())).per_example)
    print(f"\n{'arm':<20} {'correct':>9} {result.primary:>14} {'token F1':>9} {'latency':>9} {'tokens':>7}")
    for arm, e in result.evals.items():
        agg = e.aggregates
        print(f"{ARMS[arm]:<20} {result.correct[arm]:>4} / {n:<3}"
              f" {_mean(agg, result.primary, '{:.3f}'):>14} {_mean(agg, 'token_f1', '{:.3f}'):>9}"
              f" {_mean(agg, 'latency_s', '{:.2f} s'):>9} {_mean(agg, 'answer_tokens', '{:.0f}'):>7}")
    print("\n" + result.verdict)
    if result.clean:
        _say(f"{len({leak_line(leak) for leak in result.leaks})} questions resemble training examples; "
             "scores without them are in the report")
    _say(f"reports: {result.paths['html']} (also report.md, report.json)")
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


def _common(p: argparse.ArgumentParser) -> None:
    from onthejob.rag.cli import add_rag_option

    p.add_argument("--data", required=True, metavar="EVAL.jsonl", help="chat JSONL whose last message is the reference answer; optional 'facts', 'regex', 'json_schema'")
    p.add_argument("--base", metavar="MODEL", help="the base model (default: the run's base model)")
    p.add_argument("--system", metavar="S", help="system prompt for every question (replaces the data's own)")
    add_rag_option(p)
    p.add_argument("--max-new-tokens", type=int, metavar="N", help="longest answer in tokens (default: 128)")
    p.add_argument("--batch-size", type=int, default=16, metavar="N", help="questions answered at once (default: 16)")
    p.add_argument("--seed", type=int, default=0, help="seed for the bootstrap and any sampling (default: 0)")


def register(sub) -> None:
    """Add ``ojt eval``, ``ojt compare`` and ``ojt data leakage`` to the subparsers of ``ojt``."""
    p = sub.add_parser("eval", help="score a model or run on held-out questions (with the base model side by side)")
    p.add_argument("model", metavar="RUN|MODEL", help="the tuned run (or any model)")
    _common(p)
    p.add_argument("--vs-base", action="store_true", help="also evaluate the base model (the default when RUN is a run folder)")
    p.add_argument("--general", metavar="ALPACA.json", help="also score base and tuned on a general instruction set: did general skills regress?")
    p.add_argument("--judge-url", metavar="URL", help="also grade every answer 1-5 with a judge model on this OpenAI-compatible server")
    p.add_argument("--judge-model", metavar="M", help="the judge model's name on that server")
    p.add_argument("--exclude-leaks", action="store_true", help="leave out eval questions that resemble the run's training examples")
    p.add_argument("--out", metavar="DIR", help="folder for report.html/.md/.json (default: RUN/eval, else ./eval-report)")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("compare", help="prompting vs RAG vs fine-tuning vs both, on the same questions")
    _common(p)
    p.add_argument("--arms", default="prompt,rag,ft,ft+rag", metavar="A,B,...", help="arms to run: prompt, rag, ft, ft+rag (default: all four)")
    p.add_argument("--run", metavar="RUN", help="the fine-tuned run (needed by ft and ft+rag)")
    p.add_argument("--out", metavar="DIR", help="folder for report.html/.md/.json (default: RUN/compare, else ./compare-report)")
    p.set_defaults(func=cmd_compare)

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
