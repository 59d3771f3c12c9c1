"""The preview marks exactly the supervised tokens, shows special tokens and newlines, and sums up."""

from __future__ import annotations

import re

from onthejob.data.preview import BOLD_GREEN, CYAN, DIM, GREEN, RESET, render_preview
from onthejob.data.schema import Example
from onthejob.data.template import tokenize_example
from tests.tiny import tiny_tokenizer

EXAMPLE = Example([
    {"role": "user", "content": "hi"},
    {"role": "assistant", "content": "Hello there! é€"},
    {"role": "user", "content": "again"},
    {"role": "assistant", "content": "no", "weight": 0},
    {"role": "user", "content": "x"},
    {"role": "assistant", "content": "ok"},
])


def test_plain_preview_wraps_each_supervised_span():
    out = render_preview(EXAMPLE, tiny_tokenizer("chatml"), color=False)
    legend, *body, summary = out.split("\n")
    assert "[[" in legend and "trained on" in legend
    body = "\n".join(body)
    assert re.findall(r"\[\[(.*?)\]\]", body, flags=re.S) == ["Hello there! é€<|im_end|>", "ok<|im_end|>"]
    assert "<|im_start|>assistant↵\n[[Hello" in body  # the header and its newline are context
    assert "<|im_end|>]]↵\n<|im_start|>user" in body  # the newline after <|im_end|> is context
    assert "\x1b" not in out
    tokenized = tokenize_example(EXAMPLE, tiny_tokenizer("chatml"))
    n, k = len(tokenized.input_ids), tokenized.n_supervised
    assert summary == f"{n} tokens, {k} supervised ({100 * k / n:.0f}%)"


def test_plain_preview_train_on_last_and_llama3():
    out = render_preview(EXAMPLE, tiny_tokenizer("llama3"), train_on="last", color=False)
    body = out.split("\n", 1)[1]
    assert re.findall(r"\[\[(.*?)\]\]", body, flags=re.S) == ["ok<|eot_id|>"]
    assert "<|begin_of_text|><|start_header_id|>user<|end_header_id|>↵\n↵\nhi<|eot_id|>" in out


def test_color_preview_paints_supervised_green_and_special_tokens_visible():
    out = render_preview(EXAMPLE, tiny_tokenizer("chatml"), color=True)
    body = out.split("\n", 1)[1]
    assert f"{GREEN}Hello there! é€{RESET}{BOLD_GREEN}<|im_end|>{RESET}" in body
    assert f"{CYAN}<|im_start|>{RESET}{DIM}assistant↵{RESET}\n" in body
    assert f"{DIM}no{RESET}{CYAN}<|im_end|>{RESET}" in body  # weight 0: context only
    assert "[[" not in body
    # Without the escape codes the text is the rendered chat, newlines marked.
    plain = re.sub(r"\x1b\[[0-9;]*m", "", body)
    assert plain.startswith("<|im_start|>system↵\nYou are a helpful AI assistant")
