"""Keys and values of prompt beginnings already computed, so a prompt that shares them starts after.

Every question of an eval set, a compare arm or a server's users usually begins the same way
(the chat template's header, the system prompt, the instructions), and questions retrieving the
same first passages share those too. ``PrefixCache`` keeps, per model state, the keys and values
of prompts prefilled before and gives a new prompt the longest stored beginning it shares; the
engine's prefill (generate/prefill.py) then computes only the rest. The reused keys and values
are the ones a full prefill computes for those positions (causal attention: a token's keys
depend only on the tokens before it), so answers do not change.

Entries are keyed by ``(model state, adapter)``: the model state is a fingerprint of every weight
tensor (its storage and in-place version counter), so a model that trained a step since, or
loaded other weights, never reuses stale keys. The cache holds at most ``budget`` bytes; the
least recently used entries go first.

    cache = PrefixCache(budget=1 << 30)
    n, past = cache.lookup(key, prompt)           # n tokens known; past[layer] = (keys, values)
    cache.insert(key, prompt[:keep], kv)          # kv[layer] = (keys, values), (heads, len, dim)
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch

MIN_REUSE = 16  # shorter shared beginnings are not worth a lookup's copies
MAX_ENTRIES = 4096  # a bound besides the bytes: lookups scan the entries

KV = list[tuple[torch.Tensor, torch.Tensor]]  # per layer: (keys, values), each (heads, tokens, dim)


class PrefixCache:
    """Stored prompt beginnings with their keys and values; see the module docstring."""

    def __init__(self, budget: int):
        if budget < 0:
            raise ValueError("the prefix cache budget is a number of bytes, 0 or more")
        self.budget = budget
        self.used = 0
        self._entries: OrderedDict[int, tuple[tuple, torch.Tensor, KV, int]] = OrderedDict()
        self._next = 0
        self.hits = 0  # prompt tokens whose prefill was saved, since the cache was made

    def lookup(self, key: tuple, prompt: Sequence[int]) -> tuple[int, KV | None]:
        """The longest stored beginning of ``prompt`` under ``key``: (its length, its keys and
        values per layer as views), or (0, None). Never the whole prompt: its last token is
        computed, for its logits."""
        if not self._entries or len(prompt) <= MIN_REUSE:
            return 0, None
        ids = torch.as_tensor(prompt[:-1], dtype=torch.long)
        best, best_id = 0, None
        for entry_id, (entry_key, tokens, _, _) in self._entries.items():
            if entry_key != key:
                continue
            n = _common(tokens, ids)
            if n > best:
                best, best_id = n, entry_id
        if best < MIN_REUSE:
            return 0, None
        self._entries.move_to_end(best_id)
        kv = self._entries[best_id][2]
        self.hits += best
        return best, [(k[:, :best], v[:, :best]) for k, v in kv]

    def insert(self, key: tuple, prompt: Sequence[int], kv: KV) -> None:
        """Keep ``prompt``'s keys and values (those of its first len(prompt) tokens), unless an
        entry already holds all of it; evicts the least recently used entries to stay in budget."""
        n = len(prompt)
        if n < MIN_REUSE or self.budget == 0:
            return
        tokens = torch.as_tensor(list(prompt), dtype=torch.long)
        for entry_key, held, _, _ in self._entries.values():
            if entry_key == key and len(held) >= n and _common(held, tokens) == n:
                return
        kv = [(k[:, :n].clone(), v[:, :n].clone()) for k, v in kv]  # own memory: not a view of a batch's cache
        size = sum(k.numel() * k.element_size() + v.numel() * v.element_size() for k, v in kv)
        if size > self.budget:
            return
        while self._entries and (self.used + size > self.budget or len(self._entries) >= MAX_ENTRIES):
            _, (_, _, _, old) = self._entries.popitem(last=False)
            self.used -= old
        self._entries[self._next] = (key, tokens, kv, size)
        self._next += 1
        self.used += size

    def clear(self) -> None:
        self._entries.clear()
        self.used = 0


def shared_lengths(prompts: Sequence[Sequence[int]]) -> list[int]:
    """Per prompt, the length of the longest beginning it shares with any other prompt: what is
    worth keeping of it when all of them are known in advance (a file of prompts, an eval set).
    Sorting puts the prompts that share most next to each other."""
    order = sorted(range(len(prompts)), key=lambda i: prompts[i])
    shared = [0] * len(prompts)
    for a, b in zip(order, order[1:]):
        n = common_length(prompts[a], prompts[b])
        shared[a], shared[b] = max(shared[a], n), max(shared[b], n)
    return shared


def fingerprint(model) -> int:
    """Changes whenever any weight tensor is replaced or changed in place (an optimizer step)."""
    return hash(tuple((p.data_ptr(), p._version) for p in model.parameters()))


def _common(a: torch.Tensor, b: torch.Tensor) -> int:
    n = min(len(a), len(b))
    if n == 0:
        return 0
    differ = (a[:n] != b[:n]).nonzero()
    return int(differ[0]) if len(differ) else n


def common_length(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n
