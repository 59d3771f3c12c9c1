"""The engine's attention: prefill of packed prompts, and decode steps that read the cache once.

Both are reached through the attention function training registers (``train/attention.py``),
which the engine switches its model to (``engine.packable``):

- ``ragged_attention``: the packed prefill's forward (generate/prefill.py passes its ``Plan``):
  each prompt's queries against its own earlier keys and its new ones, causally.
- ``decode_attention``: a decode step, one query per row. transformers' SDPA call repeats
  every key/value head for the query heads that share it (grouped-query attention) and PyTorch
  takes its maths path for one query, so each step read the cache three times over for
  SmolLM2 (9 query heads, 3 key/value heads); with 1,500-token RAG prompts at batch 16 the
  cache is 1.1 GB and that reading was most of a step. Here the query heads of a group are
  multiplied against their shared keys and values as one matrix: the cache is read once.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def ragged_attention(module, query, key, value, plan, scaling: float | None) -> tuple[torch.Tensor, None]:
    """(1, H, N, D) packed queries/keys/values -> (1, N, H, D): each segment's queries against its
    request's earlier keys and its own, causally."""
    layer = module.layer_idx
    plan.new[layer] = (key[0], value[0])
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    outs = []
    for seg in plan.segments:
        n = seg.end - seg.start
        # 4-d (1, H, n, D) slices: PyTorch's CPU flash kernel takes only 4-d inputs (3-d ones
        # fall back to the maths path, 7x slower at 1,500 tokens)
        q = query[:, :, seg.at : seg.at + n]
        k, v = key[:, :, seg.at : seg.at + n], value[:, :, seg.at : seg.at + n]
        past = plan.past_kv(seg.row, layer)
        if past is None:
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale, enable_gqa=True)
        else:
            p = past[0].shape[1]
            k, v = torch.cat([past[0][None].to(k.dtype), k], dim=2), torch.cat([past[1][None].to(v.dtype), v], dim=2)
            # query i sits at position p + i and sees keys 0 .. p + i
            allowed = torch.ones(n, p + n, dtype=torch.bool, device=q.device).tril(p)
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, scale=scale, enable_gqa=True)
        outs.append(out.transpose(1, 2))  # (1, n, H, D)
    return (torch.cat(outs, dim=1) if len(outs) > 1 else outs[0]).contiguous(), None


def decode_attention(query, key, value, attention_mask, scaling: float | None) -> tuple[torch.Tensor, None]:
    """(B, H, 1, D) queries against (B, KV, W, D) keys and values -> (B, 1, H, D). ``attention_mask``:
    transformers' (B, 1, 1, W) mask (bool: True attends; float: added) or None (all attend)."""
    b, heads, _, dim = query.shape
    kv_heads, width = key.shape[1], key.shape[2]
    scale = scaling if scaling is not None else dim**-0.5
    q = query.reshape(b, kv_heads, heads // kv_heads, dim)  # the query heads of each group as rows
    scores = torch.matmul(q, key.transpose(-1, -2)).float()  # (B, KV, G, W)
    scores.mul_(scale)
    if attention_mask is not None:
        mask = attention_mask[:, :, -1:, -width:].reshape(b, 1, 1, width)
        if mask.dtype == torch.bool:
            scores.masked_fill_(~mask, float("-inf"))
        else:
            scores.add_(mask.float())
    probs = torch.softmax(scores, dim=-1).to(value.dtype)
    out = torch.matmul(probs, value)  # (B, KV, G, D)
    return out.reshape(b, 1, heads, dim), None
