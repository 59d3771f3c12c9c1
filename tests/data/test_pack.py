"""Packing keeps every token and label, restarts positions per example, and isolates attention."""

from __future__ import annotations

import random

import pytest
import torch
import torch.nn.functional as F

from onthejob.data.pack import collate, collate_padded, pack
from onthejob.data.schema import Example
from onthejob.data.template import IGNORE_INDEX, Tokenized, tokenize_example
from tests.tiny import tiny_model, tiny_tokenizer


def synthetic(n: int, seed: int = 0, max_n: int = 90) -> list[Tokenized]:
    """Sequences with distinct ids (k*1000 + t) so every token can be traced back to its example."""
    rng = random.Random(seed)
    seqs = []
    for k in range(n):
        length = rng.randint(1, max_n)
        ids = [k * 1000 + t for t in range(length)]
        labels = [IGNORE_INDEX if t < length // 2 else i for t, i in enumerate(ids)]
        seqs.append(Tokenized(ids, labels))
    return seqs


def unpack(row) -> list[tuple[list[int], list[int]]]:
    out, start = [], 0
    for n in row.lengths:
        out.append((row.input_ids[start : start + n], row.labels[start : start + n]))
        start += n
    return out


def test_rows_fit_positions_restart_and_everything_is_kept():
    seqs = synthetic(200)
    rows = pack(seqs, 128, seed=1)
    assert all(0 < len(r) <= 128 for r in rows)
    for row in rows:
        assert len(row.input_ids) == len(row.labels) == len(row.position_ids) == sum(row.lengths)
        assert row.position_ids == [p for n in row.lengths for p in range(n)]
    got = sorted((tuple(i), tuple(l)) for row in rows for i, l in unpack(row))
    want = sorted((tuple(s.input_ids), tuple([IGNORE_INDEX] + s.labels[1:])) for s in seqs)
    assert got == want
    # Best fit leaves little room: at most one row's worth of padding on top of the ideal.
    assert len(rows) <= sum(len(s.input_ids) for s in seqs) // 128 + 2


def test_first_label_of_every_example_is_never_supervised():
    seqs = [Tokenized([1, 2, 3], [1, 2, 3]), Tokenized([4, 5], [4, 5])]  # as if train_on="sequence"
    (row,) = pack(seqs, 8)
    starts = [sum(row.lengths[:k]) for k in range(len(row.lengths))]
    assert all(row.labels[s] == IGNORE_INDEX for s in starts)
    assert row.labels == [IGNORE_INDEX, 2, 3, IGNORE_INDEX, 5]


def test_long_examples_are_truncated_on_the_right_and_empty_ones_dropped():
    rows = pack([Tokenized(list(range(10)), list(range(10))), Tokenized([], [])], 4)
    assert [r.input_ids for r in rows] == [[0, 1, 2, 3]]
    assert rows[0].labels == [IGNORE_INDEX, 1, 2, 3]


def test_seed_shuffles_rows_deterministically():
    seqs = synthetic(100)
    assert [r.input_ids for r in pack(seqs, 64, seed=3)] == [r.input_ids for r in pack(seqs, 64, seed=3)]
    assert [r.input_ids for r in pack(seqs, 64, seed=3)] != [r.input_ids for r in pack(seqs, 64)]


def test_collate_pads_right_without_attention_mask():
    rows = pack([Tokenized([5, 6, 7], [IGNORE_INDEX, 6, 7]), Tokenized([8, 9], [IGNORE_INDEX, 9]),
                 Tokenized([1, 2, 3, 4], [IGNORE_INDEX, 2, 3, 4])], 5)
    batch = collate(rows, pad_id=0)
    assert set(batch) == {"input_ids", "labels", "position_ids"}
    assert batch["input_ids"].tolist() == [[1, 2, 3, 4, 0], [5, 6, 7, 8, 9]]
    assert batch["labels"].tolist() == [[-100, 2, 3, 4, -100], [-100, 6, 7, -100, 9]]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 3, 0], [0, 1, 2, 0, 1]]


def test_collate_padded_has_attention_mask():
    batch = collate_padded([Tokenized([5, 6, 7], [IGNORE_INDEX, 6, 7]), Tokenized([8], [IGNORE_INDEX])], pad_id=0)
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch["labels"].tolist() == [[-100, 6, 7], [-100, -100, -100]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]


def per_token_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(T, V) logits, (T,) aligned labels -> (T-1,) loss; 0 where the shifted label is -100."""
    return F.cross_entropy(logits[:-1], labels[1:], ignore_index=IGNORE_INDEX, reduction="none")


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_packed_loss_equals_one_by_one_loss(attn):
    tok = tiny_tokenizer("chatml")
    model = tiny_model(tok, attn_implementation=attn)
    examples = [Example([{"role": "user", "content": "hi " * k},
                         {"role": "assistant", "content": "hello there " * (4 - k % 3)}]) for k in range(1, 7)]
    seqs = [tokenize_example(e, tok) for e in examples]
    rows = pack(seqs, 256)
    assert 2 <= len(rows) < len(seqs)  # several examples share a row; one row is padded
    batch = collate(rows, tok.pad_token_id)
    with torch.no_grad():
        # use_cache=False: with a cache, transformers ignores position_ids for masking (see pack.py).
        logits = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits
        compared = 0
        for b, row in enumerate(rows):
            start = 0
            for n in row.lengths:
                ids = batch["input_ids"][b, start : start + n]  # (n,)
                labels = batch["labels"][b, start : start + n]
                alone = model(input_ids=ids[None]).logits[0]  # (n, V)
                packed = per_token_loss(logits[b, start : start + n], labels)
                torch.testing.assert_close(packed, per_token_loss(alone, labels), atol=1e-5, rtol=0)
                compared += int((labels != IGNORE_INDEX).sum())
                start += n
        assert compared == sum(s.n_supervised for s in seqs)
        # And the row-level loss (the shift spans example boundaries) equals the mean of those.
        row_loss = model(**batch, use_cache=False).loss
        flat = torch.cat([per_token_loss(logits[b], batch["labels"][b]) for b in range(len(rows))])
        torch.testing.assert_close(row_loss, flat.sum() / compared, atol=1e-5, rtol=0)
