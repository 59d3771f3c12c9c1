"""Prefill without padding: a batch's prompts packed into rows, each prompt attending to itself.

Left-padded prefill (what HF ``generate`` does, and this engine did) computes every pad position,
and with a padding mask PyTorch's attention computes all T x T scores of every row. Here the
prompts' tokens are laid one after another into packed rows of at most ``chunk`` tokens, and each
prompt's queries attend to its own keys only, causally (one attention call per prompt, through the
attention function training registers, ``train/attention.py``, which calls
``generate/attention.py``). A prompt that does not fit in
what is left of a row goes on in the next one and attends to the keys its earlier part left
(chunked prefill: memory and each forward's time stay bounded however long the prompts are). A
prompt whose beginning is in the prefix cache (``generate/prefix.py``) starts after it.

At the end every prompt's keys and values are laid into the decode cache left-padded, the layout
decode steps use (generate/cache.py), and each row's first token comes from its last position.

    state = packed_prefill(engine, requests)      # what Engine.prefill returns
    warm(engine, request, 512)                    # the next 512 prompt tokens now, the rest later
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from onthejob.generate.cache import DecodeState, new_cache
from onthejob.generate.prefix import KV, MIN_REUSE, fingerprint
from onthejob.generate.prefix import common_length

CHUNK = 2048  # packed tokens per forward: big enough for full-speed matmuls, small enough to bound memory


@dataclass
class Segment:
    """Prompt tokens [start, end) of one request, at ``at`` in the packed row."""

    row: int
    start: int
    end: int
    at: int


@dataclass
class Plan:
    """What the attention function needs for one packed forward: the segments, each request's
    keys and values so far (per layer), and where to leave the new ones."""

    segments: list[Segment]
    past: list[list[KV]]  # per request: pieces, each a per-layer list of (keys, values)
    new: dict[int, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)  # layer -> packed (KV, N, D)

    def past_kv(self, row: int, layer: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        pieces = self.past[row]
        if not pieces:
            return None
        if len(pieces) == 1:
            return pieces[0][layer]
        return torch.cat([p[layer][0] for p in pieces], dim=1), torch.cat([p[layer][1] for p in pieces], dim=1)


def packed_prefill(engine, requests: list, *, chunk: int = CHUNK) -> DecodeState:
    """Prefill ``requests`` packed (see the module docstring); rows with different adapters go
    in separate forwards, as PEFT applies one adapter per row."""
    pieces: list[list[KV] | None] = [None] * len(requests)
    logits: list[torch.Tensor | None] = [None] * len(requests)
    for wave in _waves(requests) if engine.prefix.budget else [list(range(len(requests)))]:
        for i in wave:
            pieces[i] = _known(engine, requests[i])
        groups: dict[str | None, list[int]] = {}
        for i in wave:
            groups.setdefault(requests[i].adapter, []).append(i)
        for adapter, rows in groups.items():
            _run(engine, requests, rows, pieces, logits, adapter, chunk)
        for i in wave:
            pieces[i] = [_joined(pieces[i])]
            requests[i].kv = None  # a warmed request's own keys are in the state now
            engine.remember(requests[i], pieces[i][0])
    return _state(engine, requests, [p[0] for p in pieces], torch.cat(logits))


def _waves(requests: list) -> list[list[int]]:
    """The rows in two waves: a row whose prompt begins as another's (by at least
    ``MIN_REUSE`` tokens) waits for the second, when the first wave's keys are in the prefix
    cache. In sorted order a prompt shares most with the one just before it."""
    order = sorted(range(len(requests)), key=lambda i: (requests[i].adapter or "", requests[i].prompt))
    first, second = [order[0]], []
    for a, b in zip(order, order[1:]):
        same = requests[a].adapter == requests[b].adapter and not requests[b].kv
        (second if same and common_length(requests[a].prompt, requests[b].prompt) >= MIN_REUSE else first).append(b)
    return [sorted(first), sorted(second)] if second else [sorted(first)]


def warm(engine, request, tokens: int) -> None:
    """Compute the keys and values of the next ``tokens`` of ``request``'s prompt (never its last
    token) and keep them on the request; ``packed_prefill`` starts after them."""
    pieces = _known(engine, request)
    done = _length(pieces)
    end = min(len(request.prompt) - 1, done + tokens)
    if end <= done:
        return
    plan = Plan([Segment(0, done, end, 0)], [pieces])
    _forward(engine, plan, request.prompt[done:end], list(range(done, end)), request.adapter, [end - done - 1])
    pieces.append(_new_piece(plan, 0, end - done))
    request.kv = pieces


def _known(engine, request) -> list[KV]:
    """The pieces of ``request``'s prompt already computed: its own (``warm``), else the prefix
    cache's longest match."""
    if request.kv:
        return list(request.kv)
    n, past = engine.lookup(request)
    return [past] if n else []


def _run(engine, requests, rows: list[int], pieces: list[list[KV]], logits: list, adapter, chunk: int) -> None:
    """Pack the remaining prompt tokens of ``rows`` into forwards of at most ``chunk`` tokens."""
    todo = [(i, _length(pieces[i])) for i in rows]  # (request, next token to compute)
    while todo:
        segments, tokens, positions, last = [], [], [], []
        room, rest = chunk, []
        for i, start in todo:
            prompt = requests[i].prompt
            end = min(len(prompt), start + room) if room > 0 else start
            if end > start:
                segments.append(Segment(i, start, end, len(tokens)))
                tokens += prompt[start:end]
                positions += range(start, end)
                room -= end - start
                if end == len(prompt):
                    last.append((i, len(tokens) - 1))
            if end < len(prompt):
                rest.append((i, end))
        plan = Plan(segments, pieces)
        out = _forward(engine, plan, tokens, positions, adapter, [at for _, at in last])
        for j, (i, _) in enumerate(last):
            logits[i] = out[j : j + 1]
        offset = 0
        for seg in segments:
            n = seg.end - seg.start
            pieces[seg.row].append(_new_piece(plan, offset, n))
            offset += n
        todo = rest


def _forward(engine, plan: Plan, tokens: list[int], positions: list[int], adapter, keep: list[int]) -> torch.Tensor:
    """One packed forward; the logits (len(keep), V) of the packed positions ``keep``."""
    device = engine.device
    ids = torch.tensor([tokens], dtype=torch.long, device=device)
    pos = torch.tensor([positions], dtype=torch.long, device=device)
    per_row = {}
    if adapter is not None and hasattr(engine.model, "peft_config") and adapter != engine.model.active_adapter:
        per_row = {"adapter_names": [adapter]}
    if engine.adapter_off:  # the batch runs with the adapter switched off: no per-row split
        per_row = {}
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=engine.autocast)
    with autocast:
        out = engine.model(input_ids=ids, position_ids=pos, use_cache=False, ragged=plan,
                           logits_to_keep=torch.tensor(keep or [len(tokens) - 1], device=device), **per_row)
    return out.logits[0].float()


def _new_piece(plan: Plan, offset: int, n: int) -> KV:
    """The new keys and values of one segment, per layer, as their own tensors."""
    return [(k[:, offset : offset + n].clone(), v[:, offset : offset + n].clone()) for _, (k, v) in sorted(plan.new.items())]


def _length(pieces: list[KV]) -> int:
    return sum(p[0][0].shape[1] for p in pieces)


def prefilled(request) -> int:
    """Prompt tokens of ``request`` already prefilled ahead (``warm``)."""
    return _length(request.kv) if request.kv else 0


def _joined(pieces: list[KV]) -> KV:
    if len(pieces) == 1:
        return pieces[0]
    return [(torch.cat([p[layer][0] for p in pieces], dim=1), torch.cat([p[layer][1] for p in pieces], dim=1))
            for layer in range(len(pieces[0]))]


def _state(engine, requests, kv: list[KV], logits: torch.Tensor) -> DecodeState:
    """The decode state of the prefilled rows: keys and values left-padded into one cache."""
    lengths = [len(r.prompt) for r in requests]
    width = max(lengths)
    device = engine.device
    cache = new_cache(engine.model, max(r.params.max_new_tokens for r in requests))
    for layer in range(len(kv[0])):
        k0 = kv[0][layer][0]
        keys = k0.new_zeros((len(requests), k0.shape[0], width, k0.shape[2]))
        values = torch.zeros_like(keys)
        for b, (full, n) in enumerate(zip(kv, lengths)):
            keys[b, :, width - n :] = full[layer][0]
            values[b, :, width - n :] = full[layer][1]
        cache.update(keys, values, layer)
    mask = torch.zeros((len(requests), width), dtype=torch.long, device=device)
    for b, n in enumerate(lengths):
        mask[b, width - n :] = 1
    pos = torch.tensor([[n - 1] for n in lengths], dtype=torch.long, device=device)
    return engine._advance(requests, logits, mask, pos, cache)


def cache_key(engine, adapter: str | None) -> tuple:
    """What a prompt's keys and values depend on besides its tokens: the weights and the adapter."""
    return (fingerprint(engine.model), adapter)
