"""The lean LoRA forward (train/lora_forward.py) against PEFT's own: the same outputs and
gradients, PEFT's forward wherever a layer is not plain LoRA, and the PEFT attributes it relies
on (a PEFT upgrade that renames or changes them fails here)."""

from __future__ import annotations

import pytest
import torch

from onthejob.train.lora_forward import use_lean_lora_forward
from tests.tiny import tiny_model, tiny_tokenizer
from tests.train.helpers import LINEARS, lora, randomise_lora_b

RELIED_ON = ("cast_input_dtype_enabled", "lora_variant", "lora_A", "lora_B", "lora_dropout", "scaling",
             "active_adapters", "disable_adapters", "merged", "base_layer")


def _layer(model):
    return model.get_base_model().model.layers[0].self_attn.q_proj


def test_peft_layers_have_what_the_lean_forward_relies_on():
    from peft.tuners.lora.layer import Linear

    model = lora(tiny_model(tiny_tokenizer()))
    layer = _layer(model)
    assert type(layer) is Linear
    assert all(hasattr(layer, name) for name in RELIED_ON)
    assert layer.cast_input_dtype_enabled is True
    assert use_lean_lora_forward(model) == 2 * len(LINEARS)  # every LoRA linear of both layers
    assert layer.cast_input_dtype_enabled is False and "forward" in vars(layer)
    x = torch.randn(3, 64, dtype=torch.bfloat16)
    assert layer._cast_input_dtype(x, torch.float32) is x  # PEFT honours the switch


def _output_and_grads(layer, x: torch.Tensor, *, bf16: bool, seed: int = 0):
    x = x.clone().requires_grad_(True)
    torch.manual_seed(seed)  # the same dropout mask for both forwards
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        out = layer(x)
    out.float().pow(2).sum().backward()
    grads = [x.grad] + [p.grad.clone() for p in layer.parameters() if p.requires_grad]
    layer.zero_grad(set_to_none=True)
    return out.detach(), grads


@pytest.mark.parametrize("bf16", [False, True])
@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_lean_forward_equals_peft_forward(bf16, dropout):
    model = lora(tiny_model(tiny_tokenizer()), lora_dropout=dropout)
    randomise_lora_b(model)
    model.train()
    layer = _layer(model)
    x = torch.randn(2, 5, 64, generator=torch.Generator().manual_seed(0))
    want, want_grads = _output_and_grads(layer, x, bf16=bf16)
    use_lean_lora_forward(model)
    got, got_grads = _output_and_grads(layer, x, bf16=bf16)
    assert got.dtype == want.dtype
    assert len(got_grads) == len(want_grads) == 3  # input, lora_A, lora_B
    tol = 0.01 if bf16 else 1e-6  # bf16: the sums are rounded at other places; fp32: the same sums
    for g, w in zip((got, *got_grads), (want, *want_grads), strict=True):
        assert (g.float() - w.float()).norm() <= tol * w.float().norm()


def test_dora_layers_keep_peft_forward():
    model = lora(tiny_model(tiny_tokenizer()), use_dora=True)
    assert use_lean_lora_forward(model) == 0
    assert "forward" not in vars(_layer(model))
    assert _layer(model).cast_input_dtype_enabled is False  # the cast is still pointless


def test_several_adapters_or_disabled_adapters_fall_back_to_peft_forward():
    from peft import LoraConfig

    model = lora(tiny_model(tiny_tokenizer()))
    model.add_adapter("other", LoraConfig(r=2, lora_alpha=4, target_modules=LINEARS))
    randomise_lora_b(model)
    layer = _layer(model)
    x = torch.randn(2, 5, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = {}
        for active in (["default"], ["default", "other"]):
            layer.set_adapter(active)
            expected[tuple(active)] = layer(x)
        with model.disable_adapter():
            expected["off"] = layer(x)
        use_lean_lora_forward(model)
        assert "forward" in vars(layer)
        assert not torch.allclose(expected[("default", "other")], expected[("default",)])  # both count
        layer.set_adapter(["default", "other"])
        torch.testing.assert_close(layer(x), expected[("default", "other")])
        layer.set_adapter(["default"])
        torch.testing.assert_close(layer(x), expected[("default",)])
        with model.disable_adapter():
            torch.testing.assert_close(layer(x), expected["off"])
