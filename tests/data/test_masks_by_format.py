"""Every input format yields the same tokens and the same mask, token by token, as the canonical
chat form of the same conversation, under both test chat templates."""

import json

import pytest

from onthejob.data.readers import read_examples
from onthejob.data.schema import Example
from onthejob.data.template import IGNORE_INDEX, tokenize_example
from tests.tiny import tiny_tokenizer

SYSTEM, USER, ANSWER = "Be brief.", "How many days of leave?", "27 days."

FILES = {
    "chat.jsonl": json.dumps({"messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": USER}, {"role": "assistant", "content": ANSWER}]}),
    "alpaca.json": json.dumps([{"system": SYSTEM, "instruction": USER, "input": "", "output": ANSWER}]),
    "sharegpt.json": json.dumps([{"conversations": [{"from": "system", "value": SYSTEM}, {"from": "human", "value": USER}, {"from": "gpt", "value": ANSWER}]}]),
    "parts.jsonl": json.dumps(
        {
            "messages": [
                {"role": "system", "content": [{"type": "text", "text": SYSTEM}]},
                {"role": "user", "content": [{"type": "text", "value": USER}], "loss_weight": 0.0},
                {"role": "assistant", "content": [{"type": "text", "value": ANSWER}], "loss_weight": 1.0},
            ]
        }
    ),
    "pc.jsonl": json.dumps({"prompt": USER, "completion": ANSWER}),
    "qa.csv": f'question,answer\n"{USER}","{ANSWER}"\n',
}
NEEDS_SYSTEM = {"pc.jsonl", "qa.csv"}  # formats without a system field get it from --system


@pytest.mark.parametrize("template", ["chatml", "llama3"])
@pytest.mark.parametrize("name", sorted(FILES))
def test_each_format_masks_like_the_canonical_chat_form(tmp_path, name, template):
    tok = tiny_tokenizer(template)
    path = tmp_path / name
    path.write_text(FILES[name] + "\n")
    mapping = {"question": "user", "answer": "assistant"} if name.endswith(".csv") else None
    result = read_examples(path, mapping=mapping, system=SYSTEM if name in NEEDS_SYSTEM else None)
    assert not result.problems and len(result.examples) == 1
    got = tokenize_example(result.examples[0], tok)
    canonical = Example([{"role": "system", "content": SYSTEM}, {"role": "user", "content": USER}, {"role": "assistant", "content": ANSWER}])
    want = tokenize_example(canonical, tok)
    assert got.input_ids == want.input_ids
    assert got.labels == want.labels
    supervised = tok.decode([t for t, label in zip(got.input_ids, got.labels) if label != IGNORE_INDEX])
    eot = "<|im_end|>" if template == "chatml" else "<|eot_id|>"
    assert supervised.replace(" ", "") == (ANSWER + eot).replace(" ", "")
