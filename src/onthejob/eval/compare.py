"""Prompting vs RAG vs fine-tuning vs both, on the same questions with the same decoding.

    ojt compare --data examples/hr/eval.jsonl --arms prompt,rag,ft,ft+rag --run runs/hr-demo --rag hr-demo

The arms: ``prompt`` is the base model with the system prompt; ``rag`` the base model answering
from a collection's passages; ``ft`` the fine-tuned run; ``ft+rag`` the run answering from the
passages. Every arm is scored with the same metrics, then paired-bootstrapped against prompting on
one primary metric (facts_recall when the questions list facts, else token_f1), and the result is
said in one plain sentence. When the run's training files are known, eval questions that resemble
training examples are flagged and the scores are also given without them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from onthejob.errors import ConfigError

ARMS = {"prompt": "prompting", "rag": "RAG", "ft": "fine-tuning", "ft+rag": "fine-tuning + RAG"}
REFERENCE = "prompt"


@dataclass
class CompareResult:
    evals: dict[str, Any]  # arm -> ModelEval
    comparisons: list[dict]  # paired bootstrap of arm vs arm on the primary metric
    primary: str  # the metric the verdict is about
    correct: dict[str, int]  # arm -> questions answered correctly
    verdict: str
    leaks: list = field(default_factory=list)
    clean: dict[str, dict] = field(default_factory=dict)  # arm -> {"mean","low","high","n","correct"} without leaked questions
    paths: dict[str, Path] = field(default_factory=dict)  # the reports written


def compare(
    data,
    *,
    arms=("prompt", "rag", "ft", "ft+rag"),
    run: str | Path | None = None,
    rag: str | None = None,
    base: str | None = None,
    system: str | None = None,
    params=None,
    seed: int = 0,
    out_dir: str | Path,
    retriever=None,
    rag_k: int = 5,
    rag_store: str | None = None,
    batch_size: int = 16,
) -> CompareResult:
    """Run every arm over ``data`` (an eval JSONL path or a list of ``EvalItem``) and write the reports.

    ``retriever``: a ready ``Retriever`` (anything with ``prepare(messages)``) instead of opening
    collection ``rag``. Raises ConfigError, naming the flag to add, when an arm lacks its input."""
    from onthejob.eval.data import read_eval
    from onthejob.eval.report import write_reports
    from onthejob.eval.run import evaluate

    arms = check_arms(arms, run=run, rag=rag or retriever)
    items = read_eval(data) if isinstance(data, (str, Path)) else list(data)
    base = base or default_base(run)
    own = retriever is None and any("rag" in a.split("+") for a in arms)
    if own:
        from onthejob.rag.answer import Retriever

        retriever = Retriever(rag, k=rag_k, store_url=rag_store)
    try:
        evals = {}
        for arm in arms:
            name = str(run) if arm.startswith("ft") else base
            evals[arm] = evaluate(name, items, label=ARMS[arm], params=params, system=system, seed=seed,
                                  rag=retriever if arm.endswith("rag") else None, batch_size=batch_size)
    finally:
        if own:
            retriever.close()
    primary = primary_metric(items)
    comparisons = [_paired(evals, a, b, primary, seed) for a, b in pairs(arms)]
    correct = {arm: count_correct(e.per_example, primary) for arm, e in evals.items()}
    verdict = make_verdict(arms, correct, comparisons, len(items))
    leaks, clean = _leakage(run, data, evals, primary, seed) if run and isinstance(data, (str, Path)) else ([], {})
    tables = [_clean_table(clean, primary)] if clean else []
    _attach_facts(evals, items)
    paths = write_reports(list(evals.values()), out_dir, title=f"Prompting, RAG and fine-tuning on {_source(data)}",
                          verdict=verdict, comparisons=comparisons, leaks=leaks, tables=tables, primary=primary)
    return CompareResult(evals, comparisons, primary, correct, verdict, leaks, clean, paths)


def check_arms(arms, *, run, rag) -> list[str]:
    arms = [a.strip() for a in (arms.split(",") if isinstance(arms, str) else arms) if a.strip()]
    unknown = [a for a in arms if a not in ARMS]
    if unknown or not arms:
        raise ConfigError(f"unknown arm(s): {', '.join(unknown) or '(none given)'}", fix=f"choose from {', '.join(ARMS)}")
    problems = []
    if not run and any(a.startswith("ft") for a in arms):
        problems.append("arms ft and ft+rag need the fine-tuned run: add --run RUN")
    if not rag and any(a.endswith("rag") for a in arms):
        problems.append("arms rag and ft+rag need a document collection: add --rag NAME (make one with ojt rag index)")
    if problems:
        raise ConfigError("missing inputs for the chosen arms", problems, fix="or drop those arms from --arms")
    return list(dict.fromkeys(arms))


def default_base(run) -> str:
    """The run's base model, else the default model."""
    if run:
        from onthejob.models.adapters import locate

        return locate(run).base_name
    from onthejob.models.registry import DEFAULT_MODEL

    return DEFAULT_MODEL


def primary_metric(items) -> str:
    return "facts_recall" if any(item.facts for item in items) else "token_f1"


def count_correct(rows: list[dict], primary: str) -> int:
    """Questions answered correctly: every fact stated, or (without facts) an exact match."""
    key = "facts_recall" if primary == "facts_recall" else "exact_match"
    return sum(1 for r in rows if r.get(key) is not None and r[key] >= 1.0)


def pairs(arms: list[str]) -> list[tuple[str, str]]:
    """(arm, against): every arm against prompting (else the first arm), and ft+rag against ft."""
    ref = REFERENCE if REFERENCE in arms else arms[0]
    out = [(a, ref) for a in arms if a != ref]
    if "ft+rag" in arms and "ft" in arms and ref != "ft":
        out.append(("ft+rag", "ft"))
    return out


def _paired(evals, a: str, b: str, metric: str, seed: int) -> dict:
    from onthejob.eval.stats import paired_bootstrap

    xs, ys = _aligned(evals[b].per_example, evals[a].per_example, metric)
    result = paired_bootstrap(xs, ys, seed=seed)  # mean of a - b
    return {"a": a, "b": b, "metric": metric, **result}


def _aligned(rows_a: list[dict], rows_b: list[dict], metric: str) -> tuple[list, list]:
    by_line = {r["line"]: r.get(metric) for r in rows_b}
    keys = [r["line"] for r in rows_a if r["line"] in by_line]
    first = {r["line"]: r.get(metric) for r in rows_a}
    return [first[k] for k in keys], [by_line[k] for k in keys]


def make_verdict(arms: list[str], correct: dict[str, int], comparisons: list[dict], n: int) -> str:
    """One sentence for the best arm against the reference, then one per other comparison."""
    ref = REFERENCE if REFERENCE in arms else arms[0]
    if len(arms) == 1:
        return f"{ARMS[ref]} answers {correct[ref]} of {n} correctly."
    by_pair = {(c["a"], c["b"]): c for c in comparisons}
    best = max((a for a in arms if a != ref), key=lambda a: (by_pair[(a, ref)]["diff"], -arms.index(a)))
    lines = [_sentence(best, ref, correct, by_pair[(best, ref)], n)]
    lines += [_sentence(a, b, correct, c, n) for (a, b), c in by_pair.items() if a != best or b != ref]
    return "\n".join(lines)


def _sentence(a: str, b: str, correct: dict[str, int], c: dict, n: int) -> str:
    head = f"{ARMS[a]} answers {correct[a]} of {n} correctly against {correct[b]} for {ARMS[b]}"
    if c.get("n", 0) == 0 or c["diff"] != c["diff"]:
        return head + f"; no {c['metric']} scores to compare."
    sig = "significant" if c["significant"] else "not significant"
    return f"{head}; {c['metric']} {c['diff']:+.2f}, {sig} (95% CI {c['low']:+.2f} to {c['high']:+.2f})."


def _leakage(run, data, evals, primary: str, seed: int):
    """Leaks between the run's training files and the eval file, and each arm's score without them."""
    from onthejob.eval.leakage import run_leakage
    from onthejob.eval.stats import bootstrap_ci

    leaks = []
    for path in training_files(run):
        found, _ = run_leakage(path, data)
        leaks += found
    if not leaks:
        return [], {}
    leaked = {leak_line(leak) for leak in leaks}
    clean = {}
    for arm, e in evals.items():
        rows = [r for r in e.per_example if r["line"] not in leaked]
        mean, low, high = bootstrap_ci([r.get(primary) for r in rows], seed=seed)
        clean[arm] = {"mean": mean, "low": low, "high": high, "n": len(rows), "correct": count_correct(rows, primary)}
    return leaks, clean


def leak_line(leak) -> int:
    """The eval line of a leak (``Leak.eval_line``; ``line`` in dicts and older callers)."""
    if isinstance(leak, dict):
        return leak.get("eval_line", leak.get("line"))
    return getattr(leak, "eval_line", None) or getattr(leak, "line", None)


def training_files(run) -> list[Path]:
    """The ``data.train`` paths of the run's config.yaml that exist here (relative ones from the cwd)."""
    import yaml

    config = Path(run) / "config.yaml"
    if not config.is_file():
        return []
    train = ((yaml.safe_load(config.read_text(encoding="utf-8")) or {}).get("data") or {}).get("train") or []
    paths = [Path(t["path"] if isinstance(t, dict) else t) for t in train]
    return [p for p in paths if p.is_file()]


def _clean_table(clean: dict[str, dict], primary: str) -> dict:
    return {"title": f"Without the leaked questions ({primary})",
            "columns": ["arm", "questions", "correct", "mean", "95% CI"],
            "rows": [[ARMS[a], c["n"], c["correct"], c["mean"], f"{c['low']:.3f} to {c['high']:.3f}"] for a, c in clean.items()]}


def _attach_facts(evals, items) -> None:
    """Put each question's facts beside its answers, for the per-question table."""
    facts = {item.line: item.facts for item in items}
    for e in evals.values():
        for r in e.per_example:
            r.setdefault("facts", facts.get(r["line"], []))


def _source(data) -> str:
    return Path(data).name if isinstance(data, (str, Path)) else "the given questions"
