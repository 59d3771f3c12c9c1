"""The forgetting guard: did fine-tuning cost the model its general skills?

    from onthejob.eval.general import general_skills
    general = general_skills([("base", "base", "smollm2-135m-instruct"), ("tuned", "tuned", "runs/hr-demo")], config)
    general["sentence"]  # "general skills: tuned lost 3 / gained 1 of 100 items against base (McNemar p = 0.62, ...)"

``ojt eval`` and ``ojt compare`` score every model they compare on a general-skills probe
(``general: builtin``, the default): 100 items written for this project and shipped in the
package (``general.jsonl``: arithmetic, units, dates, common knowledge, following a format
instruction, refusing a harmful request), each with a check a reader would accept — facts
(matched as ``eval.facts`` matches them), a regex, a JSON schema or ``refuse: true``. Each item is
passed or failed; the tuned model against the base is then the questions it *lost* (the base
passed, it fails) and *gained*, with the exact McNemar test on those discordant items, which is the
paired test for right/wrong outcomes.

Every model gets the same system prompt on the probe: the run's training prompt when the run had
one (as ``ojt chat`` would use it), so a difference is the weights', not the prompt's. A file of
your own works the same way (``general: FILE``, eval JSONL with checks); a file in a training
format without checks (Alpaca, chat) is compared by token F1 and ROUGE-L against its answers instead.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from onthejob.errors import ConfigError, DataError
from onthejob.eval.config import BUILTIN, Evaluation

PROBE = Path(__file__).with_name("general.jsonl")
MAX_NEW_TOKENS = 64  # every probe answer fits in a sentence or a short list (the checks were read at 64)
F1_METRICS = ("token_f1", "rouge_l")


def read_general(path: str) -> list:
    """The probe items: the shipped set, an eval JSONL file, or any training format (no checks)."""
    from onthejob.eval.data import EvalItem, read_eval

    if path == BUILTIN:
        return read_eval(PROBE)
    try:
        return read_eval(path)
    except DataError:
        if str(path).endswith(".jsonl") and not Path(path).is_file():
            raise
    from onthejob.data.readers import read_examples

    result = read_examples(path)
    items = [EvalItem(line=e.line, messages=e.messages[:-1], reference=str(e.messages[-1].get("content") or ""))
             for e in result.examples if e.messages and e.messages[-1].get("role") == "assistant"]
    if not items:
        raise ConfigError(f"{path}: no examples ending in an answer", fix="give an eval JSONL or an Alpaca/chat file with reference outputs")
    return items


def general_skills(models: list[tuple[str, str, str]], config: Evaluation, *, system: str | None = None,
                   items: list | None = None) -> dict:
    """Score each ``(key, label, model)`` on the probe; the first is the reference (the base).

    ``system``: the prompt every model gets (default: the run's training prompt, if any model is a
    run that had one). ``items``: the probe as ``read_general`` read it (default: read it now)."""
    from onthejob.eval.run import evaluate
    from onthejob.models.adapters import trained_system_prompt

    items = items if items is not None else read_general(config.general)
    if system is None:
        system = next((s for _, _, m in models if (s := trained_system_prompt(m))), None)
    params = config.sampling.model_copy(update={"max_new_tokens": min(config.sampling.max_new_tokens, MAX_NEW_TOKENS)})
    evals = {key: evaluate(model, items, label=f"{label} (general)", params=params, system=system, seed=config.seed,
                           batch_size=config.batch_size, with_loss=False) for key, label, model in models}
    labels = {key: label for key, label, _ in models}
    checked = any(e.aggregates["passed"]["n"] for e in evals.values())
    name = "the builtin probe" if config.general == BUILTIN else Path(config.general).name
    result = (_by_checks if checked else _by_f1)(evals, labels, items, config.seed)
    result.update(n=len(items), name=name, system=system, evals=evals)
    return result


def _by_checks(evals: dict, labels: dict[str, str], items: list, seed: int) -> dict:
    from onthejob.eval.stats import mcnemar

    skills = {item.line: item.raw.get("skill", "other") for item in items}
    passed = {key: {r["line"]: r["passed"] for r in e.per_example if r.get("passed") is not None} for key, e in evals.items()}
    keys = list(evals)
    ref = keys[0]
    n = len(passed[ref])
    rows, changes, sentences = [], [], []
    for key in keys:
        per_skill = Counter(skills[line] for line, ok in passed[key].items() if ok)
        rows.append([labels[key], f"{sum(1 for ok in passed[key].values() if ok)} of {n}",
                     ", ".join(f"{s} {per_skill[s]}/{c}" for s, c in sorted(Counter(skills[x] for x in passed[key]).items()))])
    for key in keys[1:]:
        lost = sorted(line for line, ok in passed[key].items() if passed[ref].get(line) and not ok)
        gained = sorted(line for line, ok in passed[key].items() if ok and passed[ref].get(line) == 0.0)
        p = mcnemar(len(lost), len(gained))
        change = {"a": labels[key], "b": labels[ref], "lost": lost, "gained": gained, "n": n, "p_value": p,
                  "significant": p < 0.05, "lost_skills": dict(Counter(skills[x] for x in lost))}
        changes.append(change)
        sentences.append(sentence(change))
    table = {"title": f"General skills ({n} items, passed per skill)", "columns": ["model", "passed", "by skill"], "rows": rows}
    return {"changes": changes, "sentence": " ".join(sentences) or _one_model(rows), "table": table, "comparisons": []}


def sentence(change: dict) -> str:
    """"general skills: tuned lost 3 / gained 1 of 100 items against base (McNemar p = 0.62, not significant)."."""
    sig = "significant: it lost general skills" if change["significant"] and len(change["lost"]) > len(change["gained"]) else (
        "significant" if change["significant"] else "not significant")
    where = ""
    if change["lost_skills"]:
        where = "; lost in " + ", ".join(f"{s} {c}" for s, c in sorted(change["lost_skills"].items(), key=lambda x: -x[1]))
    return (f"general skills: {change['a']} lost {len(change['lost'])} / gained {len(change['gained'])} of {change['n']} "
            f"items against {change['b']} (McNemar p = {change['p_value']:.2f}, {sig}){where}.")


def _one_model(rows: list) -> str:
    return "general skills: " + "; ".join(f"{label} passes {passed}" for label, passed, _ in rows) + "."


def _by_f1(evals: dict, labels: dict[str, str], items: list, seed: int) -> dict:
    """Without checks: each model's token F1 and ROUGE-L against the reference model's, paired."""
    from onthejob.eval.verdict import paired

    keys = list(evals)
    ref = keys[0]
    comparisons, rows = [], []
    for key in keys[1:]:
        for metric in F1_METRICS:
            c = {**paired(evals, key, ref, metric, seed), "a": f"{labels[key]} (general)", "b": f"{labels[ref]} (general)"}
            comparisons.append(c)
            word = "regressed" if c["significant"] and c["diff"] < 0 else ("improved" if c["significant"] else "no significant change")
            rows.append([metric, labels[ref], evals[ref].aggregates[metric]["mean"], labels[key],
                         evals[key].aggregates[metric]["mean"], c["diff"], f"{c['low']:+.3f} to {c['high']:+.3f}", word])
    worse = sorted({c["metric"] for c in comparisons if c["significant"] and c["diff"] < 0})
    text = (f"general skills regressed ({', '.join(worse)} significantly lower)." if worse
            else "general skills: no significant regression (token F1, ROUGE-L).")
    table = {"title": f"General instruction skills ({len(items)} questions)",
             "columns": ["metric", "reference", "score", "model", "score", "difference", "95% CI", ""], "rows": rows}
    return {"changes": [], "sentence": text, "table": table, "comparisons": comparisons}
