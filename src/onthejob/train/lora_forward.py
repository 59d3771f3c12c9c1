"""LoRA layers' forward under bf16 autocast: the same maths as PEFT's, with fewer passes.

PEFT's ``lora.Linear.forward`` casts the LoRA input to the adapter's fp32 dtype, which autocast
casts straight back to bf16 for the matmul, and adds the scaled B(A(x)) to the base output as two
full-width elementwise passes. ``use_lean_lora_forward`` switches the cast off and, on plain
LoRA layers (one adapter, no DoRA or other variant), replaces the forward with ``_lora_forward``,
whose scaling and sum ride on the matmuls. Layers in any other state run PEFT's own forward.

It relies on these attributes of PEFT's ``lora.Linear``: ``cast_input_dtype_enabled``,
``lora_variant``, ``lora_A``, ``lora_B``, ``lora_dropout``, ``scaling``, ``active_adapters``,
``disable_adapters``, ``merged`` and ``base_layer`` (tests/train/test_lora_forward.py checks them).
"""

from __future__ import annotations

import types

import torch
import torch.nn.functional as F
from torch import nn


def use_lean_lora_forward(model: nn.Module) -> int:
    """Switch off PEFT's fp32 cast of every LoRA layer's input and give plain LoRA linears the
    addmm forward; returns how many forwards were replaced. Call only when training under bf16
    autocast, where the cast is undone at once."""
    replaced = 0
    for module in model.modules():
        if hasattr(module, "lora_A"):
            module.cast_input_dtype_enabled = False
            if _is_plain_lora_linear(module):
                module.forward = types.MethodType(_lora_forward, module)
                replaced += 1
    return replaced


def _is_plain_lora_linear(module: nn.Module) -> bool:
    from peft.tuners.lora.layer import Linear

    return type(module) is Linear and not getattr(module, "lora_variant", None)


def _lora_forward(self, x, *args, **kwargs):
    """PEFT's LoRA forward, base(x) + B(A(dropout(x))) * scaling, with the scaling applied to the
    r-wide A(x) instead of the d_out-wide B(A(x)) (the same product) and the sum done by the
    matmul itself (addmm): two full-width elementwise passes fewer, forward and backward."""
    active = [a for a in self.active_adapters if a in self.lora_A]
    if args or kwargs or self.disable_adapters or self.merged or len(active) != 1 or active[0] in self.lora_variant:
        return type(self).forward(self, x, *args, **kwargs)
    name = active[0]
    result = self.base_layer(x)  # (..., d_out)
    u = F.linear(self.lora_dropout[name](x), self.lora_A[name].weight) * self.scaling[name]  # (..., r)
    out = torch.addmm(result.reshape(-1, result.shape[-1]), u.reshape(-1, u.shape[-1]), self.lora_B[name].weight.t())
    return out.view(result.shape)
