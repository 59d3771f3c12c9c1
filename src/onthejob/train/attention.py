"""Causal attention per example for packed rows, registered with transformers.

A packed row holds several examples; transformers turns their restarting position ids into a
block-diagonal (T, T) mask, and with a mask PyTorch's attention computes every one of the T x T
scores and throws most away. ``use_packed_attention`` has causal attention run on each example's
own span instead, so the work is sum(n_i^2) / 2 rather than T^2: about a sixth of it for 512-token
rows of ~190-token examples. The scores that are computed are the same ones. Examples of similar
length go through one SDPA call together (``_grouped``), so short examples do not pay one call's
overhead each; under bf16 autocast on a CPU each example's attention is a few bf16 matmuls around
an fp32 softmax instead, as the rest of the model's matmuls are (``_causal``).

The training forward opts in per call by passing ``example_spans=spans(position_ids)``, which
transformers hands through to the registered attention function; the engine's packed prefill
passes ``ragged=`` (generate/prefill.py), and a decode step (one query per row, no gradient) reads
its cache once (generate/attention.py); other calls (evaluation) keep PyTorch's SDPA with
transformers' mask.
"""

from __future__ import annotations

import contextlib
import itertools

import torch
import torch.nn.functional as F

NAME = "onthejob_packed"


def spans(position_ids: torch.Tensor) -> list[list[tuple[int, int]]]:
    """Per row, the (start, end) of each example: a new one begins wherever the position is 0."""
    out = []
    for row in position_ids.tolist():
        starts = [t for t, p in enumerate(row) if p == 0] or [0]
        out.append(list(zip(starts, starts[1:] + [len(row)], strict=True)))
    return out


def use_packed_attention(config) -> bool:
    """Switch ``config``'s model to per-example attention for calls that pass
    ``example_spans=spans(position_ids)``; returns whether it did, which is what the training
    forward's ``per_example`` should be. Set for the whole run, not per call: gradient
    checkpointing re-runs the forward in backward, and it must take the same path. False for flash
    attention and friends, which handle packed rows themselves."""
    if config._attn_implementation not in ("sdpa", "eager", NAME):
        return False
    _register()
    config._attn_implementation = NAME
    return True


def _register() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

    AttentionInterface.register(NAME, _attention)
    # transformers builds the mask a model with SDPA would get: the fallback in ``_attention`` needs
    # it (the per-example path ignores it).
    ALL_MASK_ATTENTION_FUNCTIONS.register(NAME, sdpa_mask)


def _attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, example_spans=None, ragged=None,
               **kwargs):
    """transformers' attention interface: (B, H, T, D) in, (B, T, H, D) out. ``ragged``: the
    engine's packed prefill (generate/prefill.py)."""
    if ragged is not None:
        from onthejob.generate.attention import ragged_attention

        return ragged_attention(module, query, key, value, ragged, scaling)
    if example_spans is None and query.shape[2] == 1 and not torch.is_grad_enabled() and query.shape[1] % key.shape[1] == 0:
        from onthejob.generate.attention import decode_attention  # a decode step

        return decode_attention(query, key, value, attention_mask, scaling)
    if example_spans is None:  # not a packed training call: plain SDPA with transformers' mask
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(module, query, key, value, attention_mask, scaling=scaling, dropout=dropout, **kwargs)
    dropout = dropout if module.training else 0.0
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    if not (query.device.type == "cpu" and dropout == 0.0 and torch.is_autocast_enabled("cpu")):
        return _grouped(query, key, value, example_spans, scale, dropout), None
    rows = []
    for b, row_spans in enumerate(example_spans):
        parts = [_causal(query[b, :, s:e], key[b, :, s:e], value[b, :, s:e], scale, dropout) for s, e in row_spans]
        rows.append(torch.cat(parts) if len(parts) > 1 else parts[0])
    out = torch.stack(rows) if len(rows) > 1 else rows[0][None]
    return out.to(value.dtype).contiguous(), None


SLACK = 1.25  # a group's longest example is at most this much longer than its shortest (+ 8 tokens)


def _grouped(query, key, value, example_spans, scale: float, dropout: float) -> torch.Tensor:
    """Causal attention per example, examples of similar length in one call: (B, H, T, D) in,
    (B, T, H, D) out.

    Short examples (support tickets: ~100 tokens, five to a 512-token row) made one attention
    call each, per layer, forward and backward; the calls' overheads were a good part of a step.
    Examples are grouped by length instead and each group is one 4-d SDPA call (PyTorch's CPU
    flash kernel takes only 4-d inputs; 3-d ones fall back to its maths path, 1.4-2x slower
    forward and backward at 80-500 tokens), the shorter ones padded at the end. Exact: under the
    causal mask no real query sees a padded key, and the padded queries' outputs are dropped."""
    cpu = query.device.type == "cpu"
    spans = [(b, s, e) for b, row in enumerate(example_spans) for s, e in row]
    groups: list[list[int]] = []
    for i in sorted(range(len(spans)), key=lambda i: spans[i][2] - spans[i][1]):
        n = spans[i][2] - spans[i][1]
        if not groups or n > (spans[groups[-1][0]][2] - spans[groups[-1][0]][1]) * SLACK + 8:
            groups.append([])
        groups[-1].append(i)
    outs: list[torch.Tensor | None] = [None] * len(spans)
    for group in groups:
        width = max(spans[i][2] - spans[i][1] for i in group)

        def stacked(t, group=group, width=width):
            parts = [t[b, :, s:e] for b, s, e in (spans[i] for i in group)]
            parts = [p if p.shape[1] == width else F.pad(p, (0, 0, 0, width - p.shape[1])) for p in parts]
            out = torch.stack(parts) if len(parts) > 1 else parts[0][None]
            return out.float() if cpu else out  # PyTorch's CPU attention: fp32 is faster and finer

        with torch.autocast(query.device.type, enabled=False) if cpu else contextlib.nullcontext():
            out = F.scaled_dot_product_attention(stacked(query), stacked(key), stacked(value), is_causal=True, scale=scale,
                                                 dropout_p=dropout, enable_gqa=True)  # (G, H, width, D)
        for j, i in enumerate(group):
            outs[i] = out[j, :, : spans[i][2] - spans[i][1]].transpose(0, 1)  # (n, H, D)
    rows, at = [], 0
    for row in example_spans:
        parts = outs[at : at + len(row)]
        at += len(row)
        rows.append(torch.cat(parts) if len(parts) > 1 else parts[0])
    out = torch.stack(rows) if len(rows) > 1 else rows[0][None]
    return out.to(value.dtype).contiguous()


def _causal(q, k, v, scale: float, dropout: float) -> torch.Tensor:
    """Causal attention of one example: q (H, L, D), k and v (KV, L, D) -> (L, H, D).

    On a CPU, PyTorch's fused kernel runs in fp32 and reaches a small fraction of the matmul
    peak at these lengths (its backward most of all); ``_CausalAttention`` does the same sums as
    bf16 matmuls with an fp32 softmax, 1.3-2x faster for 30-500-token examples (2 cores)."""
    cpu = q.device.type == "cpu"
    if cpu and dropout == 0.0 and torch.is_autocast_enabled("cpu"):
        kv_heads, length, dim = k.shape
        groups = q.shape[0] // kv_heads
        # (KV, L*G, D): the G query heads that share a key/value head, position by position
        stacked = torch.empty((kv_heads, length, groups, dim), dtype=torch.get_autocast_dtype("cpu"), device=q.device)
        stacked.copy_(q.view(kv_heads, groups, length, dim).transpose(1, 2))
        with torch.autocast("cpu", enabled=False):
            out = _CausalAttention.apply(stacked.view(kv_heads, length * groups, dim), k.to(stacked.dtype), v.to(stacked.dtype), scale)
        return out.view(kv_heads, length, groups, dim).transpose(0, 1).reshape(length, -1, dim)
    if cpu:  # PyTorch's CPU attention is faster in fp32 than in bf16 (and fp32 is the finer maths)
        q, k, v = q.float(), k.float(), v.float()
    with torch.autocast(q.device.type, enabled=False) if cpu else contextlib.nullcontext():
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale, dropout_p=dropout, enable_gqa=True)
    return out.transpose(0, 1)


class _CausalAttention(torch.autograd.Function):
    """softmax(q k^T * scale + causal mask) v for q (KV, L*G, D), row t*G + g holding query head
    g of position t, and k, v (KV, L, D). Matmuls in bf16, the softmax in fp32.

    Queries go in blocks of consecutive positions, each against the keys up to its last position
    only: less work above the diagonal, and each block's scores stay small enough for the cache
    (2x faster at 400-500 tokens)."""

    @staticmethod
    def forward(ctx, q, k, v, scale: float):
        length = k.shape[1]
        groups = q.shape[1] // length
        mask = _causal_mask(length, groups, q.dtype, q.device)
        outs, probs = [], []
        for a, b in _blocks(length, q.shape[0] * groups):
            rows = slice(a * groups, b * groups)
            scores = torch.baddbmm(mask[rows, :b], q[:, rows], k[:, :b].transpose(1, 2), alpha=scale)
            p = torch.softmax(scores.float(), dim=-1).to(q.dtype)
            outs.append(torch.bmm(p, v[:, :b]))
            probs.append(p)
        ctx.save_for_backward(q, k, v, *probs)
        ctx.scale = scale
        return torch.cat(outs, dim=1) if len(outs) > 1 else outs[0]

    @staticmethod
    def backward(ctx, grad_out):
        q, k, v, *probs = ctx.saved_tensors
        length = k.shape[1]
        groups = q.shape[1] // length
        grad_out = grad_out.to(q.dtype)
        grad_q, grad_k, grad_v = [], torch.zeros_like(k), torch.zeros_like(v)
        for (a, b), p in zip(_blocks(length, q.shape[0] * groups), probs, strict=True):
            rows = slice(a * groups, b * groups)
            g = grad_out[:, rows]
            grad_scores = torch.ops.aten._softmax_backward_data(torch.bmm(g, v[:, :b].transpose(1, 2)), p, -1, q.dtype)
            grad_q.append(torch.bmm(grad_scores, k[:, :b]))
            if b == length and a == 0:  # one block: nothing to add to
                grad_v, grad_k = torch.bmm(p.transpose(1, 2), g), torch.bmm(grad_scores.transpose(1, 2), q[:, rows])
            else:
                grad_v[:, :b].baddbmm_(p.transpose(1, 2), g)
                grad_k[:, :b].baddbmm_(grad_scores.transpose(1, 2), q[:, rows])
        grad_q = torch.cat(grad_q, dim=1) if len(grad_q) > 1 else grad_q[0]
        return grad_q.mul_(ctx.scale), grad_k.mul_(ctx.scale), grad_v, None


_BLOCK_SCORES = 640 * 1024  # fp32 scores per block (2.5 MB): what fitted the cache best, measured


def _blocks(length: int, rows_per_position: int) -> list[tuple[int, int]]:
    """Consecutive query positions [a, b), as few blocks as keep each one's scores small."""
    n = max(1, -(-rows_per_position * length * length // _BLOCK_SCORES))
    edges = [round(length * i / n) for i in range(n + 1)]
    return [(a, b) for a, b in itertools.pairwise(edges) if b > a]


_MASKS: dict = {}


def _causal_mask(length: int, groups: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """(L*G, L) additive mask, -inf where the key comes after row t*G + g's position t: the top
    left corner of one mask kept per (groups, dtype, device)."""
    key = (groups, dtype, device)
    mask = _MASKS.get(key)
    if mask is None or mask.shape[1] < length:
        n = max(length, 512)
        future = torch.ones(n, n, dtype=torch.bool, device=device).triu(1)
        mask = _MASKS[key] = torch.zeros(n, n, dtype=dtype, device=device).masked_fill_(future, float("-inf")).repeat_interleave(groups, 0)
    return mask[: length * groups, :length]
