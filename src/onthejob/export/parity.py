"""Does the exported artefact answer like the run? The same questions, greedily, on both sides.

    from onthejob.export.parity import check
    result = check(run, artefact="export/hr.q8_0.gguf", kind="gguf", items=read_eval("eval.jsonl"))
    print(result.table())

The run answers with onthejob's engine in float32 (adapter unmerged, as ``ojt eval`` runs it).
The artefact answers in the runtime a user deploys it with, never ours:
  * a GGUF: llama.cpp through llama-cpp-python, prompts rendered from the template inside the file;
  * a merged folder: plain transformers (``AutoModelForCausalLM.from_pretrained`` +
    ``generate(do_sample=False)``, which stops on the saved generation config's EOS ids), one
    question at a time so no padding enters the numbers.

Per question: whether the texts are identical, the tokens they share before the first difference
(llama.cpp's token ids are the run's: the export keeps the vocabulary), how
close that first difference was for the run (its probability of its own token against the
artefact's: a near-tie when they are within ``NEAR_TIE``), the facts recall of both answers, and
whether each stopped by itself. The check fails when the artefact's mean facts recall is more than
``max_recall_drop`` below the run's, or fewer of its answers stop by themselves.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from onthejob.eval.data import EvalItem
from onthejob.eval.facts import fact_recall
from onthejob.generate.prefix import common_length
from onthejob.generate.sampling import SamplingParams

NEAR_TIE = 0.1  # probability gap under which two first tokens count as a near-tie


@dataclass
class Row:
    line: int
    question: str
    run: str
    artefact: str
    identical: bool
    shared_tokens: int  # generated tokens both sides agree on before the first difference
    run_tokens: int
    gap: float | None  # run's p(own token) - p(artefact's token) at the first difference
    run_recall: float | None
    artefact_recall: float | None
    run_stops: bool
    artefact_stops: bool


@dataclass
class Parity:
    kind: str
    rows: list[Row]
    max_recall_drop: float
    summary: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        rows, n = self.rows, len(self.rows)
        with_facts = [r for r in rows if r.run_recall is not None]
        differing = [r for r in rows if not r.identical and r.gap is not None]
        self.summary = {
            "questions": n,
            "identical": sum(r.identical for r in rows),
            "token_agreement": sum(r.shared_tokens for r in rows) / max(1, sum(r.run_tokens for r in rows)),
            "near_ties": sum(r.gap <= NEAR_TIE for r in differing),
            "differing": len(differing),
            "largest_gap": max((r.gap for r in differing), default=None),
            "run_recall": _mean([r.run_recall for r in with_facts]),
            "artefact_recall": _mean([r.artefact_recall for r in with_facts]),
            "run_correct": sum(r.run_recall == 1 for r in with_facts),
            "artefact_correct": sum(r.artefact_recall == 1 for r in with_facts),
            "with_facts": len(with_facts),
            "run_stops": sum(r.run_stops for r in rows),
            "artefact_stops": sum(r.artefact_stops for r in rows),
        }

    @property
    def problems(self) -> list[str]:
        s, out = self.summary, []
        if s["with_facts"] and s["run_recall"] - s["artefact_recall"] > self.max_recall_drop + 1e-9:
            out.append(f"facts recall fell from {s['run_recall']:.3f} to {s['artefact_recall']:.3f}, "
                       f"more than the {self.max_recall_drop:.3f} allowed (--max-recall-drop)")
        if s["artefact_stops"] < s["run_stops"]:
            out.append(f"{s['run_stops'] - s['artefact_stops']} answers that stop by themselves in the run run on in the export")
        return out

    @property
    def passed(self) -> bool:
        return not self.problems

    def table(self) -> str:
        s = self.summary
        n = s["questions"]
        gap = f", largest gap {s['largest_gap']:.3f}" if s["largest_gap"] is not None else ""
        lines = [f"| {n} questions, greedy | run (onthejob, float32) | export ({self.kind}) |", "|---|---|---|",
                 f"| answers identical to the run's | – | {s['identical']} of {n} |",
                 f"| generated tokens agreeing | – | {s['token_agreement']:.1%} |",
                 f"| first differences that are near-ties (p gap ≤ {NEAR_TIE}) | – | {s['near_ties']} of {s['differing']}{gap} |"]
        if s["with_facts"]:
            lines += [f"| facts recall (mean) | {s['run_recall']:.3f} | {s['artefact_recall']:.3f} |",
                      f"| questions with every fact | {s['run_correct']} of {s['with_facts']} | {s['artefact_correct']} of {s['with_facts']} |"]
        lines.append(f"| answers that stop by themselves | {s['run_stops']} of {n} | {s['artefact_stops']} of {n} |")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "passed": self.passed, "problems": self.problems,
                "max_recall_drop": self.max_recall_drop, "near_tie": NEAR_TIE, "summary": self.summary,
                "rows": [asdict(r) for r in self.rows]}


def check(run: str | Path, *, artefact: Path, kind: str, items: list[EvalItem], max_new_tokens: int = 128,
          max_recall_drop: float = 0.05, context: int = 4096, progress=None) -> Parity:
    """Answer ``items`` with the run and with ``artefact``; see the module docstring."""
    import torch

    from onthejob.generate.engine import Engine
    from onthejob.models.adapters import load_for_inference

    from onthejob.eval.run import with_system

    params = SamplingParams(max_new_tokens=max_new_tokens)
    loaded = load_for_inference(run, dtype=torch.float32)
    # As ojt eval asks, and as the Modelfile's SYSTEM does: the run's training prompt where a
    # question brings none.
    conversations = [with_system(item.messages, loaded.system_prompt, replace=False) for item in items]
    engine = Engine(loaded.model, loaded.tokenizer, dtype="float32")
    theirs = _artefact_answers(artefact, kind, conversations, params, context, progress)
    ours = engine.generate(conversations, params, progress=progress)
    rows = [_row(item, conversation, mine, other, engine)
            for item, conversation, mine, other in zip(items, conversations, ours, theirs)]
    return Parity(kind, rows, max_recall_drop)


def _artefact_answers(artefact: Path, kind: str, conversations, params, context: int, progress):
    if kind == "merged":
        return _transformers_answers(artefact, conversations, params, progress)
    from onthejob.generate.llamacpp import LlamaCpp

    return LlamaCpp(artefact, context=context).generate(conversations, params, progress=progress)


def _transformers_answers(folder: Path, conversations, params: SamplingParams, progress):
    """Plain transformers on the merged folder: its own tokenizer, template and generation config."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from onthejob.generate.request import Completion

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    eos = model.generation_config.eos_token_id
    eos = set(eos if isinstance(eos, list) else [eos])
    out = []
    for conversation in conversations:
        text = tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)
        ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            generated = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                       max_new_tokens=params.max_new_tokens, pad_token_id=tokenizer.pad_token_id)
        new = generated[0, ids.shape[1]:].tolist()
        stopped = bool(new) and new[-1] in eos
        kept = new[:-1] if stopped else new
        out.append(Completion(tokenizer.decode(kept, skip_special_tokens=True), kept, "stop" if stopped else "length",
                              ids.shape[1], len(new), 0.0))
        if progress:
            progress(1)
    return out


def _row(item: EvalItem, conversation: list[dict], mine, other, engine) -> Row:
    theirs = other.token_ids
    shared = common_length(mine.token_ids, theirs)
    identical = mine.text == other.text
    gap = None
    if not identical and shared < len(mine.token_ids) and shared < len(theirs):
        gap = _gap(engine, conversation, mine.token_ids[:shared], mine.token_ids[shared], theirs[shared])
    recall = (lambda text: fact_recall(text, item.facts)) if item.facts else (lambda text: None)
    return Row(item.line, item.question, mine.text, other.text, identical, shared if not identical else len(mine.token_ids),
               len(mine.token_ids), gap, recall(mine.text), recall(other.text),
               mine.finish_reason == "stop", other.finish_reason == "stop")


def _gap(engine, messages, prefix: list[int], own: int, other: int) -> float:
    """The run's probability of its own token minus that of the artefact's, after ``prefix``."""
    import torch

    from onthejob.data.template import tokenize_prompt

    ids = torch.tensor([tokenize_prompt(messages, engine.tokenizer) + prefix], device=engine.device)
    with torch.no_grad():
        probs = torch.softmax(engine.model(input_ids=ids).logits[0, -1].float(), dim=-1)
    return float(probs[own] - probs[other])


def _mean(values: list) -> float:
    return sum(values) / len(values) if values else 0.0
