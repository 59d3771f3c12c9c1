"""Retrieval-augmented fine-tuning: train on each question together with the passages a
collection retrieves for it, laid out as the RAG arms lay them out when the run answers.

    data: {train: [{path: train.jsonl}], rag: {collection: handbook, k: 5}}    # configs/rag-train.yaml

A 135M model handed five passages tends to answer from memory, or from the wrong passage
("18 working days" where the passage says ten). Trained on questions *with* their passages, it
learns to copy the fact from the passage that holds it. For every training example whose last
user turn is answered by an assistant turn:

- the question is looked up in ``collection`` (the same hybrid retrieval as ``ojt compare --rag``)
  and its ``k`` best passages kept, in rank order;
- the *gold* passage is, of the 4k best, one that holds every key fact of the answer (numbers
  with units, dates, amounts, codes: ``synth/facts.py``) or, for an answer without one, repeats a
  run of four or more of its content words; of several, the one sharing most words with the
  question and answer. When it is not among the ``k`` it replaces the last one: the model should
  learn to use the passage that answers, not to guess past it;
- ``distractors`` passages drawn at random from the collection go in among them at random
  places, so the model learns that a passage can be beside the point;
- with ``cite``, the answer ends with the gold passage's number, ``[n]``, as the RAG prompt asks;
- a share ``not_covered`` of the examples with a gold passage is also trained with only passages
  that lack the answer, answering ``NOT_COVERED``: the model learns to say so;
- with ``closed_book`` (the default) every example is also kept as it was, so one run answers
  well with passages (``ft+rag``) and without (``ft``).

Examples whose wrapped prompt would not fit ``data.max_seq_len`` lose passages from the end
(never the gold one) until they do. What was trained on is saved as RUN/rag.jsonl; a resumed run
reads it back rather than retrieving again from a collection that may have changed since.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from onthejob.data.schema import Example
from onthejob.eval.facts import match_facts
from onthejob.rag.answer import NOT_COVERED, Retriever, message_text, rag_messages
from onthejob.rag.config import RetrievalConfig
from onthejob.rag.store import Hit
from onthejob.synth.facts import key_facts, shared_run

FILE = "rag.jsonl"  # in a run folder: the passage-wrapped examples data.rag trained on
WIDEN = 4  # the gold passage is looked for among WIDEN x k retrieved ones


class RunRag:
    """``data.rag`` for ``train/data.py::prepare``: called with one dataset's training examples
    (after the eval split), returns the examples to train on instead, and keeps their records
    for RUN/rag.jsonl (``records``). ``fits(messages) -> bool`` says whether a conversation fits
    a row; ``say`` prints one line of what was made; ``embedder`` replaces the collection's model
    (tests pass a fake one)."""

    def __init__(self, settings, *, seed: int, run_dir: Path | None = None, say=print, embedder=None):
        from onthejob.data.files import json_records

        self.settings, self.seed, self.say, self.embedder = settings, seed, say, embedder
        saved = run_dir / FILE if run_dir is not None else None
        self.saved = ([r.value for r in json_records(saved, str(saved)) if r.ok and isinstance(r.value, dict)]
                      if saved is not None and saved.is_file() else None)
        self.records: list[dict] = []

    def __call__(self, examples: list[Example], fits) -> list[Example]:
        if self.saved is not None:  # a resumed run trains on what it trained on before
            originals = {e.where for e in examples}
            records = [r for r in self.saved if r.get("rag_of") in originals]
        else:
            records = self._make(examples, fits)
        kept = list(examples) if self.settings.closed_book else []
        self.records += records
        return kept + [Example(r["messages"], r.get("tools"), source=FILE, line=len(self.records) - len(records) + i)
                       for i, r in enumerate(records, 1)]

    def _make(self, examples: list[Example], fits) -> list[dict]:
        s = self.settings
        wide = min(WIDEN * s.k, 1000)
        config = RetrievalConfig(collection=s.collection, k=wide, candidates=max(50, wide), store=s.store, mode=s.mode,
                                 template=s.template, threshold=-1)
        rng = random.Random(self.seed)
        with Retriever(config, embedder=self.embedder) as retriever:
            pool = _Pool(retriever, rng)
            out, counts = [], {"gold": 0, "moved": 0, "not_covered": 0, "cut": 0}
            for e in examples:
                at = _answered_user(e.messages)
                if at is None:
                    continue
                hits = retriever.search(message_text(e.messages[at]))
                made = wrap(e, at, hits, s, pool=pool, rng=rng, fits=fits, counts=counts)
                out += [{**record, "rag_of": e.where} for record in made]
        self.say(f"data.rag: {len(out)} examples with passages from {s.collection!r} (k {s.k}, {s.distractors} distractor(s)); "
                 f"{counts['gold']} hold the answer's passage ({counts['moved']} moved up from below {s.k}), "
                 f"{counts['not_covered']} answer 'not covered', {counts['cut']} lost passages to fit a row")
        return out


def wrap(example: Example, at: int, hits: list[Hit], settings, *, pool, rng: random.Random, fits, counts: dict) -> list[dict]:
    """The passage-wrapped records of one example whose user turn ``at`` is answered next."""
    answer = message_text(example.messages[at + 1])
    k = settings.k
    gold = gold_passage(hits, message_text(example.messages[at]), answer)
    chosen = hits[:k]
    if gold is not None and gold not in chosen:
        chosen = chosen[: k - 1] + [gold]
        counts["moved"] += 1
    counts["gold"] += gold is not None
    ids = {h.chunk.id for h in chosen}
    passages = _with_distractors(chosen, pool.draw(settings.distractors, ids, answer), rng)
    records = [_record(example, at, passages, gold, answer, settings, fits, counts)]
    if gold is not None and rng.random() < settings.not_covered:
        lacking = [h for h in hits if not holds(h.chunk.text, answer)][: max(0, k - settings.distractors)]
        others = _with_distractors(lacking, pool.draw(k - len(lacking), ids | {h.chunk.id for h in lacking}, answer), rng)
        if others:
            records.append(_record(example, at, others, None, NOT_COVERED, settings, fits, counts))
            counts["not_covered"] += 1
    return [r for r in records if r is not None]


def gold_passage(hits: list[Hit], question: str, answer: str) -> Hit | None:
    """The passage that answers: of those holding the answer, the one sharing the most content
    words with question and answer (grade codes and "3 months" also stand in a notice-period
    table beside the probation one), the better ranked on a tie."""
    from onthejob.eval.facts import content_words

    holding = [h for h in hits if holds(h.chunk.text, answer)]
    if len(holding) < 2:
        return holding[0] if holding else None
    asked = set(content_words(f"{question} {answer}"))
    return max(holding, key=lambda h: (len(asked & set(content_words(h.chunk.text))), -hits.index(h)))


def holds(passage: str, answer: str) -> bool:
    """Whether ``passage`` holds ``answer``: every key fact of it, or (with none) a run of four or
    more of its content words."""
    facts = key_facts(answer)
    if facts:
        return all(m.matched is not None for m in match_facts(passage, facts))
    return shared_run(answer, passage) is not None


def _record(example: Example, at: int, passages: list[Hit], gold: Hit | None, answer: str, settings, fits,
            counts: dict) -> dict | None:
    """The example with turn ``at`` wrapped in the passages (cut from the end until it fits a row,
    the gold one last of all) and its answer, cited; None when not even one passage fits."""
    while passages:
        messages = _wrapped(example, at, passages, gold, answer, settings)
        if fits(messages):
            record: dict[str, Any] = {"messages": messages}
            if example.tools:
                record["tools"] = example.tools
            return record
        drop = next((i for i in range(len(passages) - 1, -1, -1) if passages[i] is not gold), None)
        if drop is None:
            break
        passages = passages[:drop] + passages[drop + 1:]
        counts["cut"] += 1
    return None


def _wrapped(example: Example, at: int, passages: list[Hit], gold: Hit | None, answer: str, settings) -> list[dict]:
    messages, _ = rag_messages(example.messages[: at + 1], passages, settings.template, threshold=-1, sentences=settings.sentences)
    if settings.cite and gold is not None and answer != NOT_COVERED:
        answer = f"{answer.rstrip()} [{passages.index(gold) + 1}]"
    return messages + [{**example.messages[at + 1], "content": answer}]


def _with_distractors(passages: list[Hit], extra: list[Hit], rng: random.Random) -> list[Hit]:
    out = list(passages)
    for hit in extra:
        out.insert(rng.randint(0, len(out)), hit)
    return out


class _Pool:
    """Random passages of the collection, drawn a document at a time (a collection of many
    documents is never read whole)."""

    def __init__(self, retriever, rng: random.Random):
        self.store, self.name, self.rng = retriever.store, retriever.collection, rng
        self.docs = sorted(self.store.documents(self.name))
        self._chunks: dict[str, list] = {}

    def draw(self, n: int, exclude: set[str], answer: str) -> list[Hit]:
        """``n`` passages from different documents where there are enough (else several of one),
        none of ``exclude`` and none holding ``answer``."""
        out: list[Hit] = []
        docs = self.rng.sample(self.docs, len(self.docs))
        for doc in docs[: 8 * n] * 2:  # bounded: a collection of millions of documents is not read
            if len(out) >= n:
                break
            if doc not in self._chunks:
                self._chunks[doc] = self.store.doc_chunks(self.name, doc)
            taken = exclude | {h.chunk.id for h in out}
            chunks = [c for c in self._chunks[doc] if c.id not in taken and not holds(c.text, answer)]
            if chunks:
                out.append(Hit(self.rng.choice(chunks), score=0.0, dense=None, sparse=None, rank=0))
        return out


def _answered_user(messages: list[dict]) -> int | None:
    """The last user turn that the conversation's last message, an assistant answer, follows."""
    if len(messages) < 2 or messages[-1].get("role") != "assistant" or messages[-2].get("role") != "user":
        return None
    if messages[-1].get("tool_calls") or not message_text(messages[-1]):
        return None
    return len(messages) - 2


def save(run_dir: Path, records: list[dict]) -> None:
    """Write what data.rag trained on into the run folder (once it is a run: after run.json)."""
    from onthejob.fsutil import write_jsonl

    write_jsonl(run_dir / FILE, records)
