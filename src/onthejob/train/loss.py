"""The training forward: hidden states, then logits only where a label exists, in chunks.

A full (B, T, V) logits tensor is the largest thing in small-model training (V = 49k for
SmolLM2), and most positions are prompt tokens with no label. We run the decoder, pick the
positions whose *next* token is supervised, and project only those through the LM head, a chunk
at a time, recomputing each chunk's logits in backward instead of keeping them.

The loss is returned as a *sum* with its token count, so the loop can normalise by the supervised
tokens of a whole optimizer step (all micro-steps, all processes), which makes k accumulated
micro-steps exactly equal to one batch k times as large.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from onthejob.data.template import IGNORE_INDEX


def causal_lm(model: nn.Module) -> nn.Module:
    """The transformers *ForCausalLM module inside a PEFT wrapper (LoRA layers live inside it)."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    return inner


class TrainForward(nn.Module):
    """Wraps the model so accelerate/DDP sees one module whose forward returns the loss terms."""

    def __init__(self, model: nn.Module, chunk: int = 2048):
        super().__init__()
        self.model = model
        self.chunk = chunk

    def forward(self, input_ids, labels, position_ids=None, attention_mask=None):
        lm = causal_lm(self.model)
        # use_cache=False matters: with a cache, transformers ignores the packed position ids
        # when building the mask and attention would cross examples.
        hidden = lm.model(
            input_ids=input_ids, position_ids=position_ids, attention_mask=attention_mask, use_cache=False
        ).last_hidden_state  # (B, T, H)
        targets = labels[:, 1:]  # (B, T-1): token t+1 is predicted at position t
        keep = targets != IGNORE_INDEX
        h = hidden[:, :-1][keep]  # (N, H), N = supervised tokens
        y = targets[keep]  # (N,)
        loss_sum = hidden.new_zeros((), dtype=torch.float32)
        correct = torch.zeros((), dtype=torch.long, device=hidden.device)
        for start in range(0, y.numel(), self.chunk):
            hc, yc = h[start : start + self.chunk], y[start : start + self.chunk]
            if torch.is_grad_enabled():
                part, hits = checkpoint(_chunk_loss, lm.lm_head, hc, yc, use_reentrant=False)
            else:
                part, hits = _chunk_loss(lm.lm_head, hc, yc)
            loss_sum = loss_sum + part
            correct = correct + hits
        return loss_sum, correct, y.numel()


def _chunk_loss(head: nn.Module, h: torch.Tensor, y: torch.Tensor):
    logits = head(h).float()  # (n, V), float32 for a stable log-softmax
    loss = F.cross_entropy(logits, y, reduction="sum")
    hits = (logits.detach().argmax(-1) == y).sum()
    return loss, hits
