"""Split examples into train and eval sets, keeping duplicates together.

    ojt train config.yaml          # eval_fraction in the config; the split happens here
    ojt data split data.jsonl --eval-split 0.1 --train-out train.jsonl --eval-out eval.jsonl

Examples whose text is the same after normalising case and whitespace share a ``content_key``.
Groups of equal keys go wholly to one side, so the eval set never scores a memorised example.
``content_key`` is also what ``data/check.py`` uses to report duplicates.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from onthejob.data.outputs import check_outputs, write_jsonl_files
from onthejob.data.readers import read_examples
from onthejob.data.schema import Example
from onthejob.errors import DataError


def _normalise(text: str | None) -> str:
    return " ".join((text or "").split()).casefold()


def content_key(example: Example, *, exact: bool = False) -> str:
    """A hash of what the model sees: roles, texts, tool calls and tools.

    Case and runs of whitespace are ignored unless ``exact``. Weights are left out on purpose:
    two examples with the same text are the same example to the model, however they are masked."""
    norm = (lambda s: s or "") if exact else _normalise
    parts = [
        [m["role"], norm(m.get("content")), m.get("tool_calls") or [], m.get("tool_call_id")]
        for m in example.messages
    ]
    payload = json.dumps([parts, example.tools or []], sort_keys=True, ensure_ascii=False)
    # surrogatepass: a third-party reader may let a lone surrogate through; hashing must not fail.
    return hashlib.sha1(payload.encode("utf-8", "surrogatepass")).hexdigest()


def split_examples(
    examples: Sequence[Example], *, eval_fraction: float, seed: int
) -> tuple[list[Example], list[Example]]:
    """Return ``(train, eval)``, the same for the same seed and input order.

    Eval gets about ``eval_fraction`` of the examples, counted in whole duplicate
    groups, and at least one example when the fraction is positive and there are two or more
    examples that are not all duplicates of each other. Both lists keep the input order."""
    if not 0 <= eval_fraction < 1:
        raise ValueError(f"eval_fraction must be in [0, 1), got {eval_fraction}")
    if eval_fraction == 0 or len(examples) < 2:
        return list(examples), []
    groups: dict[str, list[int]] = {}
    for i, ex in enumerate(examples):
        groups.setdefault(content_key(ex), []).append(i)
    keys = sorted(groups)  # sorted, not insertion order: the shuffle must not depend on dict order
    random.Random(seed).shuffle(keys)
    # At least one eval example, and at least one left to train on.
    target = min(len(examples) - 1, max(1, math.floor(len(examples) * eval_fraction + 0.5)))
    eval_idx: set[int] = set()
    for key in keys:
        if len(eval_idx) + len(groups[key]) <= target:
            eval_idx.update(groups[key])
    if not eval_idx:
        # Every group is bigger than the target: take the smallest, unless it is everything
        # (then no split can keep duplicates apart, and eval stays empty).
        smallest = min(keys, key=lambda k: len(groups[k]))
        if len(groups[smallest]) < len(examples):
            eval_idx.update(groups[smallest])
    train = [ex for i, ex in enumerate(examples) if i not in eval_idx]
    evals = [ex for i, ex in enumerate(examples) if i in eval_idx]
    return train, evals


def split_file(
    path: str | Path, *, train_out: str | Path, eval_out: str | Path, eval_fraction: float, seed: int,
    **read_kwargs: Any,
) -> tuple[int, int]:
    """``ojt data split``: write the train and eval sides of ``path`` as JSONL, both or neither;
    returns their sizes. Outputs that are the input, each other or a directory are refused first."""
    check_outputs([path], [("--train-out", train_out), ("--eval-out", eval_out)])
    result = read_examples(path, **read_kwargs)
    if result.errors:
        raise DataError(f"{path} has {len(result.errors)} errors; first: {result.errors[0]}",
                        fix=f"run: ojt data check {path}")
    train, held = split_examples(result.examples, eval_fraction=eval_fraction, seed=seed)
    write_jsonl_files([(train_out, (e.to_record() for e in train)), (eval_out, (e.to_record() for e in held))])
    return len(train), len(held)
