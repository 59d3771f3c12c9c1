"""bf16 storage and norm outputs (train/bf16.py): the norms are chosen by watching what consumes
their output, the choice on Llama is q/k/v and gate/up's norms, and the lean path keeps the loss."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from onthejob.train.bf16 import _Consumers, hand_on_norm_outputs_in_bf16, linear_only_norms, store_frozen_weights_in_bf16
from onthejob.train.lora_forward import use_lean_lora_forward
from tests.tiny import tiny_model, tiny_tokenizer
from tests.train.helpers import LINEARS, lora, loss_and_grads, packed_batch, randomise_lora_b


def _llama_choice(model) -> list[str]:
    """What the model-type allowlist chose for Llama-family decoders before the norms were observed."""
    return [n for n, _ in model.named_modules() if n.endswith(("input_layernorm", "post_attention_layernorm"))]


def test_on_llama_the_norms_before_attention_and_mlp_are_chosen_and_the_final_one_is_not():
    model = tiny_model(tiny_tokenizer())
    chosen = linear_only_norms(model)
    assert chosen == _llama_choice(model) and len(chosen) == 2 * model.config.num_hidden_layers
    assert "model.norm" not in chosen  # its output is returned, not consumed inside the body


def test_the_choice_is_the_same_under_lora_with_the_lean_forward_and_bf16_weights():
    model = lora(tiny_model(tiny_tokenizer()), lora_dropout=0.1)
    assert linear_only_norms(model) == _llama_choice(model)
    store_frozen_weights_in_bf16(model)
    use_lean_lora_forward(model)
    assert linear_only_norms(model) == _llama_choice(model)  # dropout and the addmm path included


class _Body(nn.Module):
    """Four norms: ``a`` feeds a linear through an identity and a dropout (and has its shape read),
    ``b`` a linear and a residual add, ``c`` a linear and a sigmoid, and ``norm``'s output is
    returned."""

    def __init__(self, d: int = 8):
        super().__init__()
        self.embed = nn.Embedding(10, d)
        self.norm_a, self.norm_b, self.norm_c, self.norm = (nn.LayerNorm(d) for _ in range(4))
        self.same, self.drop = nn.Identity(), nn.Dropout(0.1)
        self.proj_a, self.proj_b, self.proj_c = (nn.Linear(d, d) for _ in range(3))

    def forward(self, input_ids, **_):
        h = self.embed(input_ids)
        a = self.norm_a(h)
        h = h + self.proj_a(self.drop(self.same(a))).view(a.shape)
        b = self.norm_b(h)
        h = b + self.proj_b(b)
        c = self.norm_c(h)
        h = h + self.proj_c(c) * torch.sigmoid(c)
        return self.norm(h)


def test_a_norm_whose_output_meets_anything_but_a_linear_is_not_chosen():
    model = nn.Module()
    model.model = _Body()
    assert linear_only_norms(model) == ["model.norm_a"]


def test_what_consumes_a_training_dropouts_output_consumes_the_norms():
    """In training mode dropout makes a new tensor; it still stands for the norm's output."""
    norm, drop, proj = nn.LayerNorm(8), nn.Dropout(0.5).train(), nn.Linear(8, 8)
    recorder = _Consumers()
    norm.register_forward_hook(recorder.watch, with_kwargs=True)
    with torch.no_grad(), recorder:
        proj(drop(norm(torch.randn(2, 8))))
    assert recorder.consumers == {norm: {F.linear}}


def test_gemma2_post_norms_feeding_the_residual_are_not_chosen():
    from transformers import Gemma2Config, Gemma2ForCausalLM

    config = Gemma2Config(vocab_size=100, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                          num_attention_heads=4, num_key_value_heads=2, head_dim=16)
    torch.manual_seed(0)
    model = Gemma2ForCausalLM(config)
    chosen = linear_only_norms(model)
    assert chosen == [f"model.layers.{i}.{n}" for i in range(2) for n in ("input_layernorm", "pre_feedforward_layernorm")]


def test_looking_leaves_the_model_as_it_was():
    model = lora(tiny_model(tiny_tokenizer()), lora_dropout=0.3).train()
    model.get_base_model().model.layers[1].eval()
    modes = [m.training for m in model.modules()]
    rng = torch.get_rng_state()
    linear_only_norms(model)
    assert torch.equal(torch.get_rng_state(), rng)  # no dropout mask drawn: training's come out the same
    assert [m.training for m in model.modules()] == modes
    assert not any(m._forward_hooks for m in model.modules())


def test_a_chosen_norm_hands_on_bf16_only_under_autocast():
    model = tiny_model(tiny_tokenizer())
    assert hand_on_norm_outputs_in_bf16(model) == _llama_choice(model)
    chosen, final = model.model.layers[0].input_layernorm, model.model.norm
    x = torch.randn(2, 3, 64)
    assert chosen(x).dtype == torch.float32
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert chosen(x).dtype == torch.bfloat16
        assert final(x).dtype == torch.float32


def test_frozen_weights_in_bf16_keep_loss_and_lora_gradients():
    tok = tiny_tokenizer()
    model = lora(tiny_model(tok))
    randomise_lora_b(model)
    batch = packed_batch(model.config.vocab_size, lengths=(20, 30, 9), max_len=64)
    before, grads_before = loss_and_grads(model, batch)
    assert store_frozen_weights_in_bf16(model) == 2 * len(LINEARS)  # every frozen linear of both layers, not the (tied) head
    use_lean_lora_forward(model)
    assert hand_on_norm_outputs_in_bf16(model) == _llama_choice(model)
    assert model.get_input_embeddings().weight.dtype == torch.float32
    assert model.get_base_model().model.layers[0].mlp.up_proj.base_layer.weight.dtype == torch.bfloat16
    assert all(p.dtype == torch.float32 for p in model.parameters() if p.requires_grad)
    after, grads_after = loss_and_grads(model, batch)
    assert after == pytest.approx(before, rel=1e-3)
    for k in grads_before:
        torch.testing.assert_close(grads_after[k], grads_before[k], rtol=0.05, atol=2e-3)
