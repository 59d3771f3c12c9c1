"""The one comparison behind ``ojt compare`` (its arms) and ``ojt eval`` (base vs tuned).

    from onthejob.eval.compare import compare
    result = compare(CompareConfig(data="examples/hr/eval.jsonl", run="runs/hr-demo", rag={"collection": "hr"}))
    print(result.verdict)

An *arm* is a model answering the questions, with or without passages from a collection.
``ojt compare``'s arms are ``prompt`` (the base model with the system prompt), ``few-shot`` (the
base model shown the most similar training examples first), ``rag`` (the base model answering
from passages), ``ft`` (the fine-tuned run) and ``ft+rag`` (the run answering from passages);
``ojt eval``'s are ``base`` and ``tuned``. Every arm gets the same questions, decoding and metrics;
each arm is paired-bootstrapped against the reference arm (prompting, else the first) on one
primary metric (facts_recall when the questions list facts, else token_f1), and the verdict
(``verdict.py``) names a winner only when the difference is significant. Besides, in one place
for both commands:

- leakage: when the run's training files are known, eval questions that resemble training
  examples are flagged before anything runs; ``exclude_leaks`` leaves them out, otherwise the
  scores are also given without them;
- questions the documents do not cover (``covered: false``, or the file ``uncovered``) measure
  abstention and the confidently-wrong rate (``metrics.py``);
- a judge model grades every answer (optional) on a fixed rubric, compared arm against arm like
  the metric, and set beside the facts;
- the general-skills probe (``general.py``, on by default) asks whether fine-tuning cost the
  model its general skills.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from onthejob.console import say
from onthejob.errors import ConfigError
from onthejob.eval.config import ARMS, CompareConfig, EvalConfig, Evaluation
from onthejob.eval.verdict import paired

REFERENCE = "prompt"


@dataclass(frozen=True)
class Arm:
    key: str  # "prompt", "ft", ..., "base", "tuned"
    label: str  # how tables and verdicts call it
    model: str  # the run or model that answers
    rag: bool = False  # answer from the collection's passages
    few_shot: bool = False  # the most similar training examples come first as earlier turns


@dataclass
class CompareResult:
    evals: dict[str, Any]  # arm key -> ModelEval
    comparisons: list[dict]  # paired bootstrap of arm vs arm: the primary metric, then the judge's grade
    primary: str  # the metric the verdict is about
    correct: dict[str, int]  # arm -> questions answered correctly
    verdict: str
    labels: dict[str, str] = field(default_factory=dict)  # arm key -> label
    leaks: list = field(default_factory=list)
    clean: dict[str, dict] = field(default_factory=dict)  # arm -> {"mean","low","high","n","correct"} without leaked questions
    general: dict | None = None  # the general-skills probe: {"sentence", "changes", "table", ...}
    paths: dict[str, Path] = field(default_factory=dict)  # the reports written
    n: int = 0  # questions with a primary score


def compare(config: CompareConfig, *, retriever=None) -> CompareResult:
    """``ojt compare``: every arm of ``config.arms`` over the same questions, reports written.

    ``retriever``: a ready ``Retriever`` (anything with ``prepare(messages)``) instead of opening
    ``config.rag``; the caller closes it."""
    base = config.base or default_base(config.run)
    arms = [Arm(a, ARMS[a], str(config.run) if a.startswith("ft") else base, a.endswith("rag"), a == "few-shot")
            for a in config.arms]
    out = config.out or (str(Path(config.run) / "compare") if config.run else "compare-report")
    if config.run and "ft+rag" in config.arms:
        rag_as_trained(config.run, config.rag)
    return run_arms(arms, config, run=config.run, retriever=retriever, out_dir=out,
                    title=f"Prompting, few-shot, RAG and fine-tuning on {Path(config.data).name}")


def evaluate_model(config: EvalConfig, *, retriever=None) -> CompareResult:
    """``ojt eval``: the tuned model, and its base beside it when it is a run or an exported GGUF
    whose export.json names its base (or when asked for)."""
    from onthejob.models.adapters import locate

    found = locate(config.model)
    exported = found.method == "gguf" and found.base_name != str(config.model)
    with_base = config.vs_base or config.base is not None or found.run is not None or exported
    rag = bool(config.rag.collection) or retriever is not None
    arms = ([Arm("base", "base", config.base or found.base_name, rag)] if with_base else [])
    arms.append(Arm("tuned", "tuned", str(config.model), rag))
    out = config.out or (str(found.run / "eval") if found.run else "eval-report")
    return run_arms(arms, config, run=found.run, retriever=retriever, out_dir=out,
                    title=f"{Path(config.model).name} on {Path(config.data).name}")


def run_arms(arms: list[Arm], config: Evaluation, *, run, retriever, out_dir, title: str) -> CompareResult:
    """Evaluate every arm on ``config.data``, compare them, write the reports."""
    from onthejob.eval.general import read_general
    from onthejob.eval.judge import agreement_sentence
    from onthejob.eval.report import write_reports
    from onthejob.eval.run import Ask, evaluate_arms
    from onthejob.eval.verdict import verdict

    items = read_items(config)
    probe = read_general(config.general) if config.general else None  # a bad file fails now, not after every arm
    leaks = find_leaks(run, config.data)
    if run:
        chose_final(run, config.data)
    if config.exclude_leaks:
        items = drop_leaked(items, leaks, run)
    shots = few_shot(config, run) if any(a.few_shot for a in arms) else None
    evals = {}
    with _opened(retriever, config, any(a.rag for a in arms)) as rag:
        for model, group in model_groups(arms, run):
            asks = [Ask(arm.label, rag if arm.rag else None, shots if arm.few_shot else None, base=base) for arm, base in group]
            results = evaluate_arms(model, asks, items, params=config.sampling, system=config.system, seed=config.seed,
                                    batch_size=config.batch_size, constrain_json=config.constrain_json)
            evals.update({arm.key: e for (arm, _), e in zip(group, results)})
        evals = {arm.key: evals[arm.key] for arm in arms}  # in the arms' order
    labels = {arm.key: arm.label for arm in arms}
    keys = list(evals)
    primary = primary_metric(items)
    comparisons = [paired(evals, a, b, primary, config.seed) for a, b in pairs(keys)]
    agreement = {}
    if config.judge.url:
        for key, e in evals.items():
            agreement[key] = add_judge(e, items, config.judge.url, config.judge.model, seed=config.seed)
        comparisons += [paired(evals, a, b, "judge_score", config.seed) for a, b in pairs(keys)]
    correct = {key: count_correct(e.per_example, primary) for key, e in evals.items()}
    general = general_check(arms, config, probe) if probe is not None else None
    text = verdict(evals, labels, primary, seed=config.seed, correct=correct,
                   comparisons=[x for x in comparisons if x["metric"] == primary])
    text += "".join("\n" + agreement_sentence(labels[k], a) for k, a in agreement.items() if a)
    if general:
        text += "\n" + general["sentence"]
    clean = {} if config.exclude_leaks else scores_without(leaks, evals, primary, config.seed)
    tables = ([_clean_table(clean, primary, labels)] if clean else []) + ([general["table"]] if general else [])
    _attach_facts(evals, items)
    paths = write_reports(list(evals.values()), out_dir, title=title, verdict=text,
                          comparisons=comparisons + (general["comparisons"] if general else []),
                          leaks=leaks, tables=tables, primary=primary,
                          extra={"judge": _judge_doc(agreement, labels) if config.judge.url else None,
                                 "general": _general_doc(general)})
    return CompareResult(evals, comparisons, primary, correct, text, labels, leaks, clean, general, paths,
                         sum(1 for r in evals[keys[0]].per_example if r.get(primary) is not None))


def model_groups(arms: list[Arm], run) -> list[tuple[str, list[tuple[Arm, bool]]]]:
    """The arms grouped by the model that loads for them, each arm with whether it answers with
    the run's adapter switched off: the base model's arms join the run's when the run is an
    adapter on that very base with the same chat template, so one loaded model and one batch
    answer them all; otherwise each model is loaded for its own arms."""
    groups: dict[str, list[tuple[Arm, bool]]] = {}
    shared = run is not None and any(a.model == str(run) for a in arms) and all(
        a.model == str(run) or adapter_on(run, a.model) for a in arms)
    for arm in arms:
        base = shared and arm.model != str(run)
        groups.setdefault(str(run) if base else arm.model, []).append((arm, base))
    return list(groups.items())


def adapter_on(run, base: str) -> bool:
    """Is ``run`` an adapter on ``base`` whose tokenizer and chat template are the base's?"""
    from onthejob.models.adapters import locate
    from onthejob.models.load import load_tokenizer

    found, plain = locate(run), locate(base)
    if found.adapter is None or found.model != plain.model or plain.adapter is not None:
        return False
    if found.tokenizer == plain.tokenizer:
        return True
    a, b = load_tokenizer(found.tokenizer), load_tokenizer(plain.tokenizer)
    return a.chat_template == b.chat_template and a.get_vocab() == b.get_vocab()


def read_items(config: Evaluation) -> list:
    """The eval questions, then ``config.uncovered``'s as questions the documents do not cover
    (numbered on after the last line of ``config.data``, so every question keeps one number)."""
    from onthejob.eval.data import read_eval

    items = read_eval(config.data)
    if config.uncovered:
        offset = max(item.line for item in items)
        for item in read_eval(config.uncovered):
            item.line += offset
            item.covered = False
            items.append(item)
    return items


def few_shot(config: CompareConfig, run):
    """The few-shot arm's demonstrations (an arm of ``ojt compare`` only): ``few_shot.data``, else
    the run's training files."""
    from onthejob.eval.fewshot import Shots

    paths = [config.few_shot.data] if config.few_shot.data else [str(p) for p in training_files(run)] if run else []
    if not paths:
        raise ConfigError("arm few-shot has no examples: the run's training files are not here",
                          fix="add --shots FILE (any training format)")
    shots = Shots.from_files(paths, k=config.few_shot.k)
    say(f"few-shot: {shots.k} of {len(shots.pairs)} examples from {', '.join(paths)} before each question")
    return shots


def general_check(arms: list[Arm], config: Evaluation, probe: list) -> dict:
    """The general-skills probe once for each distinct model of the arms, the base model first."""
    from onthejob.eval.general import general_skills

    def tuned(arm: Arm) -> bool:
        return arm.key.startswith("ft") or arm.key == "tuned"

    models: dict[str, tuple[str, str, str]] = {}
    for arm in sorted(arms, key=tuned):  # stable: the base model's arms first
        label = ("fine-tuned" if arm.key.startswith("ft") else arm.label) if tuned(arm) else "base"
        models.setdefault(arm.model, (arm.key, label, arm.model))
    return general_skills(list(models.values()), config, items=probe)


def _judge_doc(agreement: dict, labels: dict[str, str]) -> dict:
    from onthejob.eval.judge import GRADES, PROMPT, RUBRIC

    return {"rubric": RUBRIC, "prompt": PROMPT, "scores": GRADES,
            "agreement": {labels[k]: a for k, a in agreement.items() if a}}


def _general_doc(general: dict | None) -> dict | None:
    if not general:
        return None
    return {"name": general["name"], "n": general["n"], "system": general["system"], "sentence": general["sentence"],
            "changes": general["changes"],
            "models": {e.label: {"passed": e.aggregates["passed"], "per_item": [
                {k: r.get(k) for k in ("line", "question", "answer", "passed")} for r in e.per_example]}
                for e in general["evals"].values()}}


def _opened(retriever, config: Evaluation, needed: bool):
    """The caller's retriever as it is (the caller closes it), or ``config.rag`` opened here."""
    import contextlib

    if retriever is not None or not needed:
        return contextlib.nullcontext(retriever)
    from onthejob.rag.answer import opened_retriever

    return opened_retriever(config.rag)


def default_base(run) -> str:
    """The run's base model, else the default model."""
    if run:
        from onthejob.models.adapters import locate

        return locate(run).base_name
    from onthejob.models.registry import DEFAULT_MODEL

    return DEFAULT_MODEL


# --- scoring and comparing --------------------------------------------------------------------


def primary_metric(items) -> str:
    return "facts_recall" if any(item.facts for item in items) else "token_f1"


def count_correct(rows: list[dict], primary: str) -> int:
    """Questions answered correctly: every fact stated, or (without facts) an exact match."""
    key = "facts_recall" if primary == "facts_recall" else "exact_match"
    return sum(1 for r in rows if r.get(key) is not None and r[key] >= 1.0)


def pairs(arms: list[str]) -> list[tuple[str, str]]:
    """(arm, against): every arm against prompting (else the first arm), and ft+rag against ft.
    The verdict's headline compares the best arm with every other besides."""
    ref = REFERENCE if REFERENCE in arms else arms[0]
    out = [(a, ref) for a in arms if a != ref]
    if "ft+rag" in arms and "ft" in arms and ref != "ft":
        out.append(("ft+rag", "ft"))
    return out


def add_judge(e, items: list, url: str, model: str, *, seed: int = 0) -> dict | None:
    """Grade ``e``'s answers with a judge model: per question ``judge`` (the grade), ``judge_score``
    (1 / 0.5 / 0) and ``judge_reason``; the aggregate ``judge`` is the mean score. Returns the
    judge's agreement with the facts (``judge.agreement``), None without facts."""
    from onthejob.eval.judge import agreement, judge
    from onthejob.eval.stats import bootstrap_ci

    grades = judge(items, [row["answer"] for row in e.per_example], base_url=url, model=model)
    for row, grade in zip(e.per_example, grades):
        row["judge"], row["judge_score"], row["judge_reason"] = grade["grade"], grade["score"], grade["reason"]
    values = [g["score"] for g in grades]
    n = sum(1 for v in values if v is not None)
    if n < len(values):
        say(f"warning: the judge gave no usable grade for {len(values) - n} of {len(values)} answers of {e.label} "
            "(its replies are in the report as judge_reason); a larger judge model follows the rubric more reliably")
    mean, low, high = bootstrap_ci(values, seed=seed) if n else (None, None, None)
    e.aggregates["judge"] = {"mean": mean, "low": low, "high": high, "n": n}
    return agreement(e.per_example)


# --- leakage ------------------------------------------------------------------------------------


def find_leaks(run, data) -> list:
    """Eval questions of ``data`` that resemble the run's training examples (said once, here)."""
    from onthejob.eval.leakage import run_leakage

    leaks = []
    for path in training_files(run) if run else []:
        leaks += run_leakage(path, data)[0]
    if leaks:
        say(f"warning: {len({leak_line(leak) for leak in leaks})} eval questions resemble training examples "
            f"(the report lists them; exclude_leaks leaves them out)")
    return leaks


def drop_leaked(items: list, leaks: list, run) -> list:
    if run is None:
        raise ConfigError("exclude_leaks needs a run folder (its config.yaml names the training files)", fix="name the run, not the model")
    leaked = {leak_line(leak) for leak in leaks}
    kept = [item for item in items if item.line not in leaked]
    say(f"left out {len(leaked)} questions that resemble training examples; {len(kept)} remain")
    if not kept:
        raise ConfigError("every question resembles a training example", fix="drop exclude_leaks or write new questions")
    return kept


def scores_without(leaks: list, evals: dict, primary: str, seed: int) -> dict[str, dict]:
    """Each arm's score without the leaked questions."""
    from onthejob.eval.stats import bootstrap_ci

    if not leaks:
        return {}
    leaked = {leak_line(leak) for leak in leaks}
    clean = {}
    for arm, e in evals.items():
        rows = [r for r in e.per_example if r["line"] not in leaked]
        mean, low, high = bootstrap_ci([r.get(primary) for r in rows], seed=seed)
        clean[arm] = {"mean": mean, "low": low, "high": high, "n": len(rows), "correct": count_correct(rows, primary)}
    return clean


def leak_line(leak) -> int:
    """The eval line of a leak (``Leak.eval_line``; ``line`` in dicts and older callers)."""
    if isinstance(leak, dict):
        return leak.get("eval_line", leak.get("line"))
    return getattr(leak, "eval_line", None) or getattr(leak, "line", None)


def run_data(run) -> dict:
    """The ``data`` section of the run's config.yaml ({} when it has none)."""
    from onthejob.config import read_yaml

    saved = Path(run) / "config.yaml"
    data = read_yaml(saved).get("data") if saved.is_file() else None
    return data if isinstance(data, dict) else {}


def training_files(run) -> list[Path]:
    """The ``data.train`` paths of the run's config.yaml that exist here (relative ones from the cwd)."""
    train = run_data(run).get("train") or []
    paths = [Path(t["path"] if isinstance(t, dict) else t) for t in train]
    return [p for p in paths if p.is_file()]


def chose_final(run, data) -> None:
    """Warn when ``data`` is the eval file that picked the run's final/ (select.by facts): its
    scores are then a little optimistic, as a model chosen on a test set always is."""
    from onthejob.train.runfolder import read_info

    picked_on = run_data(run).get("eval")
    selected = read_info(Path(run)).get("selected") if (Path(run) / "run.json").is_file() else None
    if picked_on and selected and selected["step"] != selected["last_step"] and Path(picked_on).resolve() == Path(data).resolve():
        say(f"warning: {data} chose {run}'s final/ (step {selected['step']} of {selected['last_step']}, by facts recall), "
            f"so its scores here are optimistic; hold out other questions to measure it")


def rag_as_trained(run, rag) -> None:
    """Warn when the run was trained with passages (data.rag) laid out otherwise than the ft+rag
    arm will give them: a model trained on five whole passages reads three sentences less well."""
    trained = run_data(run).get("rag")
    if not isinstance(trained, dict):
        return
    differ = [f"{key} {trained.get(key, default)!r} in training, {getattr(rag, key)!r} here"
              for key, default in (("collection", None), ("k", 5), ("sentences", None), ("mode", "hybrid"))
              if trained.get(key, default) != getattr(rag, key)]
    if trained.get("template") not in (None, rag.template):
        differ.append("another prompt template")
    if differ:
        say(f"warning: {run} was trained with passages laid out otherwise than ft+rag gets them ({'; '.join(differ)}); "
            f"answer as it was trained: --rag-k, --rag-sentences, --rag-mode, --rag")


def _clean_table(clean: dict[str, dict], primary: str, labels: dict[str, str]) -> dict:
    return {"title": f"Without the leaked questions ({primary})",
            "columns": ["arm", "questions", "correct", "mean", "95% CI"],
            "rows": [[labels[a], c["n"], c["correct"], c["mean"], f"{c['low']:.3f} to {c['high']:.3f}"] for a, c in clean.items()]}


def _attach_facts(evals, items) -> None:
    """Put each question's facts beside its answers, for the per-question table."""
    facts = {item.line: item.facts for item in items}
    for e in evals.values():
        for r in e.per_example:
            r.setdefault("facts", facts.get(r["line"], []))
