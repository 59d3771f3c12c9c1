import json

import pytest
import torch

from onthejob.errors import ModelError
from onthejob.models.adapters import load_for_inference
from onthejob.models.merge import merge
from onthejob.generate.engine import Engine
from onthejob.generate.sampling import SamplingParams
from tests.runs import make_run, save_base

CONVERSATIONS = [[{"role": "user", "content": "Hello! How can I help?"}],
                 [{"role": "user", "content": "What is the weather in Paris?"}]]
GREEDY = SamplingParams(max_new_tokens=10)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("merge")
    return make_run(root, save_base(root / "base"))


def outputs(model, tokenizer):
    return [c.token_ids for c in Engine(model, tokenizer).generate(CONVERSATIONS, GREEDY)]


def test_merged_equals_unmerged_and_loads_in_plain_transformers(run, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = merge(run, tmp_path / "merged")
    assert (out / "model.safetensors").is_file()
    assert not (out / "adapter_config.json").exists()
    model = AutoModelForCausalLM.from_pretrained(out).eval()
    tokenizer = AutoTokenizer.from_pretrained(out)
    unmerged = load_for_inference(run)
    assert tokenizer.chat_template == unmerged.tokenizer.chat_template
    assert outputs(model, tokenizer) == outputs(unmerged.model, unmerged.tokenizer)
    base = load_for_inference(json.loads((run / "run.json").read_text())["base_model"])
    assert outputs(model, tokenizer) != outputs(base.model, base.tokenizer)  # the adapter is in


def test_merged_keeps_the_base_dtype(tmp_path):
    from transformers import AutoModelForCausalLM

    base = save_base(tmp_path / "base")
    bf16 = AutoModelForCausalLM.from_pretrained(base, dtype=torch.bfloat16)
    bf16.save_pretrained(base)
    out = merge(make_run(tmp_path, base), tmp_path / "merged")
    assert AutoModelForCausalLM.from_pretrained(out, dtype="auto").dtype == torch.bfloat16


def test_full_run_is_copied(tmp_path):
    run = make_run(tmp_path, tmp_path / "unused", method="full")
    out = merge(run, tmp_path / "merged")
    final = run / "final"
    assert {p.name: p.read_bytes() for p in out.iterdir()} == {p.name: p.read_bytes() for p in final.iterdir()}
    from transformers import AutoModelForCausalLM

    copied = AutoModelForCausalLM.from_pretrained(out).state_dict()
    trained = AutoModelForCausalLM.from_pretrained(final).state_dict()
    assert copied.keys() == trained.keys() and all(torch.equal(copied[k], trained[k]) for k in trained)


def test_plain_model_and_unsafe_out_are_refused(run, tmp_path):
    base = json.loads((run / "run.json").read_text())["base_model"]
    with pytest.raises(ModelError, match="nothing to merge"):
        merge(base, tmp_path / "merged")
    with pytest.raises(ModelError, match="merging reads from"):
        merge(run, run)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("keep me")
    with pytest.raises(ModelError, match="not a model folder"):
        merge(run, tmp_path / "notes")
    assert (tmp_path / "notes" / "todo.txt").read_text() == "keep me"
