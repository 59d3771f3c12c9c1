"""Data for a run: read each dataset through the readers and the checks, mix by weight, split,
tokenize and pack into rows. A run refuses data that ``ojt data check`` would reject."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from pathlib import Path

from onthejob.data.check import check_file
from onthejob.data.files import require_file
from onthejob.data.pack import PackedRow, pack
from onthejob.data.schema import Example
from onthejob.data.split import split_examples
from onthejob.data.template import Tokenized, tokenize_example
from onthejob.errors import DataError
from onthejob.fsutil import file_hash
from onthejob.synth.augment import FILE as AUGMENT_FILE
from onthejob.train.config import Dataset, TrainConfig
from onthejob.train.defaults import rag_rows, small_data


@dataclass
class RunData:
    train_rows: list[PackedRow]
    eval_rows: list[PackedRow]
    counts: dict[str, int] = field(default_factory=dict)  # examples used per dataset path
    n_train: int = 0
    n_eval: int = 0
    train_tokens: int = 0
    supervised_tokens: int = 0
    system_prompt: str | None = None  # set when every training example has this one system prompt
    replayed: list[Example] = field(default_factory=list)  # data.replay's base-model answers, mixed in
    augmented: list[dict] = field(default_factory=list)  # data.augment's paraphrase records, mixed in (RUN/augment.jsonl)
    with_passages: list[dict] = field(default_factory=list)  # data.rag's passage-wrapped records, mixed in (RUN/rag.jsonl)
    config: TrainConfig | None = None  # the run's config with the small-data defaults resolved (train/defaults.py)
    derived: list[str] = field(default_factory=list)  # what those defaults chose, printed at start


def _checked(ds: Dataset | str, tokenizer, config: TrainConfig) -> list[Example]:
    spec = ds if isinstance(ds, Dataset) else Dataset(path=ds)
    require_file(Path(spec.path), spec.path)  # a missing file, a folder, a symlink loop: each says so
    report = check_file(
        spec.path,
        tokenizer=tokenizer,
        max_seq_len=config.data.max_seq_len,
        format=spec.format,
        mapping=spec.map,
        system=spec.system,
        train_on=config.data.train_on,
    )
    errors = [p for p in report.problems if p.severity == "error"]
    if errors:
        first = "; ".join(str(p) for p in errors[:3])
        raise DataError(
            f"{spec.path} has {len(errors)} error(s), nothing was trained: {first}",
            fix=f"see them all with: ojt data check {spec.path}",
        )
    return report.examples


def _mix(examples: list[Example], weight: float, rng: random.Random) -> list[Example]:
    """weight x the examples: whole copies for the integer part, a seeded sample for the rest."""
    whole, frac = int(weight), weight - int(weight)
    out = examples * whole
    out += rng.sample(examples, math.floor(frac * len(examples) + 0.5))
    return out


def _tokenize(examples: list[Example], tokenizer, train_on: str) -> list[Tokenized]:
    return [t for t in (tokenize_example(e, tokenizer, train_on=train_on) for e in examples) if t.n_supervised]


def prepare(config: TrainConfig, tokenizer, *, replay=None, augment=None, rag=None) -> RunData:
    """The run's rows, and (``RunData.config``) its config with the small-data defaults of
    train/defaults.py filled in: the run goes on with that one.

    ``replay``: ``fn(system_prompt) -> [Example]``, the base model's answers to mix in
    (``train/replay.py``), called once the training data's system prompt is known.
    ``augment``: ``fn(examples) -> [record]``, paraphrase records of one dataset's training
    examples (``synth/augment.py``), called after the eval split: no eval question is reworded
    into training. They are mixed by the dataset's weight, like its originals.
    ``rag``: ``fn(examples, fits) -> [Example]``, the examples to train on with their retrieved
    passages (``train/rag.py``), after augmentation; ``fits(messages)`` says whether a
    conversation fits a row."""
    config, derived = rag_rows(config)
    rng = random.Random(config.seed)
    train: list[Example] = []
    held: list[Example] = []
    augmented: list[dict] = []
    counts = {}
    for ds in config.data.train:
        examples = _checked(ds, tokenizer, config)
        if config.data.eval_split:
            examples, ds_eval = split_examples(examples, eval_fraction=config.data.eval_split, seed=config.seed)
            held += ds_eval
        if augment is not None:
            records = augment(examples)
            examples = examples + [Example(r["messages"], r.get("tools"), source=AUGMENT_FILE, line=len(augmented) + i)
                                   for i, r in enumerate(records, 1)]
            augmented += records
        if rag is not None:
            examples = rag(examples, lambda messages: _fits(messages, tokenizer, config))
        mixed = _mix(examples, ds.weight, rng)
        counts[ds.path] = len(mixed)
        train += mixed
    if config.data.eval:
        held = _checked(config.data.eval, tokenizer, config)
    systems = {next((m["content"] for m in e.messages if m["role"] == "system"), None) for e in train}
    system_prompt = systems.pop() if len(systems) == 1 else None
    replayed = replay(system_prompt) if replay is not None else []
    if replayed:
        counts["replay"] = len(replayed)
        train += replayed
    seqs = _tokenize(train, tokenizer, config.data.train_on)
    if not seqs:
        raise DataError("no training example has a supervised token", fix="check data.train_on and the assistant turns")
    eval_seqs = _tokenize(held, tokenizer, config.data.train_on)
    # packing and epochs for few examples; a question trained with and without passages counts twice,
    # as a paraphrase does: the rule is about how often the run sees an example
    config, small = small_data(config, examples=len(seqs))
    derived += small
    max_len = config.data.max_seq_len
    if config.data.pack:
        rows = pack(seqs, max_len, seed=config.seed)
        eval_rows = pack(eval_seqs, max_len)
    else:  # one example per row
        rows = [r for s in seqs for r in pack([s], max_len)]
        eval_rows = [r for s in eval_seqs for r in pack([s], max_len)]
    return RunData(
        config=config,
        derived=derived,
        system_prompt=system_prompt,
        replayed=replayed,
        augmented=augmented,
        with_passages=rag.records if rag is not None else [],
        train_rows=rows,
        eval_rows=eval_rows,
        counts=counts,
        n_train=len(seqs),
        n_eval=len(eval_seqs),
        train_tokens=sum(len(r) for r in rows),
        supervised_tokens=sum(sum(1 for x in r.labels if x != -100) for r in rows),
    )


def _fits(messages: list[dict], tokenizer, config: TrainConfig) -> bool:
    return len(tokenize_example(Example(messages), tokenizer, train_on=config.data.train_on).input_ids) <= config.data.max_seq_len


def fingerprint(config: TrainConfig) -> dict[str, str]:
    """sha256 of every data file of the run, so a resumed or repeated run can tell if data changed."""
    paths = [ds.path for ds in config.data.train] + ([config.data.eval] if config.data.eval else [])
    for p in paths:
        if not Path(p).is_file():
            what = "is a folder, not a file" if Path(p).is_dir() else "is gone"
            raise DataError(f"the run's data file {p} {what}",
                            fix="put it back where the run found it, or point the run at it with --data.train '[{path: FILE}]'")
    return {p: file_hash(p) for p in paths}
