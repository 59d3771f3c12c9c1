"""Decode-step linears as W @ x.T: the same outputs as nn.Linear, only where they are safe."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from onthejob.generate.skinny import MAX_ROWS, Skinny, linears


@pytest.mark.parametrize("rows", [1, 3, MAX_ROWS, MAX_ROWS + 1])
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_same_output_as_nn_linear(rows, bias, dtype):
    torch.manual_seed(rows)
    layer = nn.Linear(64, 200, bias=bias).to(dtype)
    x = torch.randn(rows, 1, 64, dtype=dtype)  # (batch, 1 new token, features), as in a decode step
    want = layer(x)
    fast = Skinny(layer)
    assert fast.pack == (dtype == torch.bfloat16)
    with torch.no_grad(), fast():
        got = layer(x)
    assert got.shape == want.shape and got.dtype == dtype
    tol = 1e-5 if dtype == torch.float32 else 1e-2
    torch.testing.assert_close(got, want, rtol=tol, atol=tol)
    assert "forward" not in layer.__dict__  # restored


def test_the_skinny_path_is_taken_only_for_few_float32_rows_without_grad():
    layer = nn.Linear(8, 8)
    calls = []
    original_mm = torch.mm

    def counting_mm(*args):
        calls.append(1)
        return original_mm(*args)

    x = torch.randn(2, 8)
    with Skinny(layer)():
        torch.mm = counting_mm
        try:
            with torch.no_grad():
                layer(x)
                taken = len(calls)
                layer(torch.randn(MAX_ROWS + 1, 8))  # many rows
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    layer(x)  # autocast decides the dtype: nn.Linear's own path
            layer(x.requires_grad_())  # training: autograd through nn.Linear's path
        finally:
            torch.mm = original_mm
    assert taken == 1 and len(calls) == 1


def test_linears_skips_layers_whose_forward_was_replaced():
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4), nn.ReLU())
    model[1].forward = lambda x: x
    assert linears(model) == [model[0]]
