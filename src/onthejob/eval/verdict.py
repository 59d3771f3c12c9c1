"""The verdict of a comparison: sentences that name a winner only when the data says so.

    from onthejob.eval.verdict import verdict
    print(verdict(evals, labels, "facts_recall", seed=0))

The first sentence is about the best arm by the primary metric's mean. It is called best only when
a paired bootstrap puts it ahead of every other arm (the 95% interval of the difference excludes
0); otherwise it names the arms that cannot be told apart from it, and which arms, if any, they
beat. Every sentence names the metric and the number of questions; under 30 questions it adds that
the intervals are wide. Then one sentence per standard comparison (each arm against prompting,
fine-tuning + RAG against fine-tuning) and, for arms that retrieve or abstain, the grounded figures.
"""

from __future__ import annotations

FEW = 30  # below this many questions a verdict says its intervals are wide


def verdict(evals: dict, labels: dict[str, str], primary: str, *, seed: int = 0, correct: dict[str, int] | None = None,
            comparisons: list[dict] = ()) -> str:
    """The whole verdict: the headline, a sentence for each of ``comparisons`` (``paired``'s
    results on the primary metric, as the report lists them), the grounded lines."""
    keys = list(evals)
    n = scored(evals[keys[0]], primary)
    correct = correct or {}
    lines = [headline(evals, labels, primary, seed=seed, correct=correct)]
    lines += [_pair_sentence(labels, correct, c, n) for c in comparisons]
    lines += [g for key in keys if (g := grounded_sentence(labels[key], evals[key].aggregates))]
    return "\n".join(lines)


def scored(e, metric: str) -> int:
    return sum(1 for r in e.per_example if r.get(metric) is not None)


def headline(evals: dict, labels: dict[str, str], primary: str, *, seed: int = 0, correct: dict[str, int] | None = None) -> str:
    keys = list(evals)
    means = {k: evals[k].aggregates.get(primary, {}).get("mean") for k in keys}
    n = scored(evals[keys[0]], primary)
    wide = f" With only {n} questions the intervals are wide: add questions for a firmer verdict." if n < FEW else ""
    if n == 0 or any(m is None for m in means.values()):
        return f"No {primary} scores to compare: the questions give none." + wide
    best = max(keys, key=lambda k: (means[k], -keys.index(k)))
    if len(keys) == 1:
        return f"{labels[best]}: {primary} {means[best]:.2f} over {n} questions{_correct(correct, best, n)}.{wide}"
    vs = {k: paired(evals, best, k, primary, seed) for k in keys if k != best}
    tied = [k for k in keys if k in vs and not vs[k]["significant"]]
    beaten = [k for k in keys if k in vs and vs[k]["significant"]]
    if not tied:
        closest = max(beaten, key=lambda k: means[k])
        c = vs[closest]
        ahead = "every other arm" if len(keys) > 2 else labels[closest]
        text = (f"{labels[best]} wins on {primary} over {n} questions: {means[best]:.2f}{_correct(correct, best, n)}, "
                f"significantly ahead of {ahead} ({labels[closest]} {means[closest]:.2f}: {c['diff']:+.2f}, "
                f"95% CI {c['low']:+.2f} to {c['high']:+.2f}).")
        return text + wide
    group = [best, *tied]
    widest = max(tied, key=lambda k: abs(vs[k]["diff"]))
    c = vs[widest]
    text = (f"No arm wins on {primary} over {n} questions: {_join([f'{labels[k]} ({means[k]:.2f})' for k in group])} "
            f"are indistinguishable (the largest gap, {labels[best]} vs {labels[widest]}, is {c['diff']:+.2f}, "
            f"95% CI {c['low']:+.2f} to {c['high']:+.2f}, not significant)")
    if beaten:
        text += f"; {'both are' if len(group) == 2 else 'all are'} significantly ahead of {_join([labels[k] for k in beaten])}"
    return text + "." + wide


def _pair_sentence(labels: dict[str, str], correct: dict[str, int], c: dict, n: int) -> str:
    a, b = c["a"], c["b"]
    head = f"{labels[a]} against {labels[b]}"
    if a in correct and b in correct:
        head += f": {correct[a]} vs {correct[b]} of {n} correct"
    if c.get("n", 0) == 0 or c["diff"] != c["diff"]:
        return head + f"; no {c['metric']} scores to compare."
    sig = "significant" if c["significant"] else "not significant"
    return f"{head}; {c['metric']} {c['diff']:+.2f}, {sig} (95% CI {c['low']:+.2f} to {c['high']:+.2f}, {c['n']} questions)."


def grounded_sentence(label: str, aggregates: dict) -> str | None:
    """"RAG: citation precision 0.80 (12 answers cite), answer support 0.74, abstains on 9 of 12
    uncovered questions, confidently wrong on 14 of 62." — None when the arm has none of them."""
    def agg(name):
        a = aggregates.get(name) or {}
        return (a.get("mean"), a.get("n") or 0) if a.get("mean") is not None else (None, 0)

    parts = []
    precision, n_cited = agg("citation_precision")
    if precision is not None:
        parts.append(f"citation precision {precision:.2f} ({n_cited} answers cite a passage)")
    support, _ = agg("answer_support")
    if precision is None and support is not None:
        parts.append("no answer cites a passage as [n]")  # it retrieved: say so, or precision looks forgotten
    if support is not None:
        parts.append(f"answer support {support:.2f}")
    abstain, n_uncovered = agg("abstained")
    if abstain is not None:
        parts.append(f"abstains on {round(abstain * n_uncovered)} of {n_uncovered} questions the documents do not cover")
    wrong, n_wrong = agg("confidently_wrong")
    if wrong is not None and (parts or n_uncovered):
        parts.append(f"confidently wrong on {round(wrong * n_wrong)} of {n_wrong}")
    return f"{label}: " + ", ".join(parts) + "." if parts else None


def paired(evals: dict, a: str, b: str, metric: str, seed: int, *, suffix: str = "") -> dict:
    """Arm ``a`` against arm ``b`` on ``metric`` (diff = a - b), question by question."""
    from onthejob.eval.stats import paired_bootstrap

    xs, ys = _aligned(evals[b].per_example, evals[a].per_example, metric)
    return {"a": a + suffix, "b": b + suffix, "metric": metric, **paired_bootstrap(xs, ys, seed=seed)}


def _aligned(rows_a: list[dict], rows_b: list[dict], metric: str) -> tuple[list, list]:
    by_line = {r["line"]: r.get(metric) for r in rows_b}
    keys = [r["line"] for r in rows_a if r["line"] in by_line]
    first = {r["line"]: r.get(metric) for r in rows_a}
    return [first[k] for k in keys], [by_line[k] for k in keys]


def _correct(correct: dict[str, int], key: str, n: int) -> str:
    return f" ({correct[key]} of {n} correct)" if key in correct else ""


def _join(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
