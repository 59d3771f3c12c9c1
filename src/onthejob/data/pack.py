"""Pack tokenized examples into rows of at most max_len tokens, and collate rows into batches.

Label convention: labels are aligned with input_ids (``labels[t]`` is the id of token t, or
-100). The loss shifts them: logits at position t are scored against ``labels[t + 1]``, as
transformers' ``ForCausalLMLoss`` does. So in a packed row the label of an example's token 0 would
be predicted from the *previous* example's last token; ``pack`` sets it to -100 (it is a prompt
token, never supervised, but the invariant is enforced here, not assumed).

Attention never crosses examples: ``position_ids`` restart at 0 for each example and
``collate`` returns no attention_mask, so transformers builds a block-diagonal causal mask from
the position ids (``masking_utils.find_packed_sequence_indices``).

Hazard: transformers only does so when no KV cache exists. Models default to
``config.use_cache=True`` and then create a cache even in a training forward, which silently
turns the mask back into one causal mask over the whole row. Call the model with
``use_cache=False`` (or set ``model.config.use_cache = False``) when feeding packed batches.
"""

from __future__ import annotations

import bisect
import random
from dataclasses import dataclass, field

import torch

from onthejob.data.template import IGNORE_INDEX, Tokenized


@dataclass
class PackedRow:
    """Several examples laid end to end; position_ids restart at 0 at each example."""

    input_ids: list[int] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    position_ids: list[int] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)  # tokens per example, in row order

    def __len__(self) -> int:
        return len(self.input_ids)

    def add(self, seq: Tokenized) -> None:
        n = len(seq.input_ids)
        self.input_ids.extend(seq.input_ids)
        labels = list(seq.labels)
        # The shift would predict this label from the previous example's last token.
        labels[0] = IGNORE_INDEX
        self.labels.extend(labels)
        self.position_ids.extend(range(n))
        self.lengths.append(n)


def truncate(seq: Tokenized, max_len: int) -> Tokenized:
    """Keep the first max_len tokens (the right side is cut)."""
    if len(seq.input_ids) <= max_len:
        return seq
    return Tokenized(seq.input_ids[:max_len], seq.labels[:max_len])


def pack(sequences: list[Tokenized], max_len: int, *, seed: int | None = None) -> list[PackedRow]:
    """Best-fit-decreasing bin packing into rows of at most max_len tokens.

    Longest examples are placed first, each into the fullest row that still has room, which
    leaves few padding tokens (typically <2% on chat data). Empty sequences are dropped. With a
    seed, the rows (not the examples inside them) are shuffled, so batches mix lengths.
    """
    if max_len < 1:
        raise ValueError(f"max_len must be >= 1, not {max_len}")
    seqs = [truncate(s, max_len) for s in sequences if s.input_ids]
    order = sorted(range(len(seqs)), key=lambda k: -len(seqs[k].input_ids))  # stable on ties
    rows: list[PackedRow] = []
    # (room left, row index), kept sorted so the best fit is one bisect away.
    free: list[tuple[int, int]] = []
    for k in order:
        n = len(seqs[k].input_ids)
        pos = bisect.bisect_left(free, (n, -1))
        if pos == len(free):
            rows.append(PackedRow())
            room, r = max_len, len(rows) - 1
        else:
            room, r = free.pop(pos)
        rows[r].add(seqs[k])
        if room - n > 0:
            bisect.insort(free, (room - n, r))
    if seed is not None:
        random.Random(seed).shuffle(rows)
    return rows


def collate(rows: list[PackedRow], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad packed rows into a batch: input_ids, labels, position_ids, all (B, T); no mask.

    Padding gets positions 0, 1, 2, ... so it forms its own "sequence" in the block-diagonal mask
    (no real token attends to it, nor would with causal attention), and labels -100.
    """
    width = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)  # (B, T)
    labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)  # (B, T)
    position_ids = torch.zeros((len(rows), width), dtype=torch.long)  # (B, T)
    for b, row in enumerate(rows):
        n = len(row)
        input_ids[b, :n] = torch.tensor(row.input_ids, dtype=torch.long)
        labels[b, :n] = torch.tensor(row.labels, dtype=torch.long)
        position_ids[b, :n] = torch.tensor(row.position_ids, dtype=torch.long)
        position_ids[b, n:] = torch.arange(width - n)
    return {"input_ids": input_ids, "labels": labels, "position_ids": position_ids}


def collate_padded(sequences: list[Tokenized], pad_id: int) -> dict[str, torch.Tensor]:
    """One example per row, right-padded: input_ids, labels, attention_mask, all (B, T)."""
    width = max(len(s.input_ids) for s in sequences)
    input_ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)  # (B, T)
    labels = torch.full((len(sequences), width), IGNORE_INDEX, dtype=torch.long)  # (B, T)
    attention_mask = torch.zeros((len(sequences), width), dtype=torch.long)  # (B, T), 1 = real
    for b, seq in enumerate(sequences):
        n = len(seq.input_ids)
        input_ids[b, :n] = torch.tensor(seq.input_ids, dtype=torch.long)
        labels[b, :n] = torch.tensor(seq.labels, dtype=torch.long)
        attention_mask[b, :n] = 1
    return {"input_ids": input_ids, "labels": labels, "attention_mask": attention_mask}
