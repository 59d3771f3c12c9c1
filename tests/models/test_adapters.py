import json
import shutil

import pytest
import torch

from onthejob.errors import ModelError, RunError
from onthejob.models.adapters import load_for_inference
from onthejob.generate.engine import Engine
from onthejob.generate.sampling import SamplingParams
from tests.runs import make_run, save_base

HELLO = [[{"role": "user", "content": "Hello! How can I help?"}]]
GREEDY = SamplingParams(max_new_tokens=8)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    root = tmp_path_factory.mktemp("adapters")
    base = save_base(root / "base")
    return base, make_run(root, base)


def greedy(loaded) -> list[int]:
    return Engine(loaded.model, loaded.tokenizer).generate(HELLO, GREEDY)[0].token_ids


def test_run_adapter_and_model_folders_all_load(saved):
    base, run = saved
    from_run = load_for_inference(run)
    from_adapter = load_for_inference(run / "final")
    plain = load_for_inference(base)
    assert from_run.adapter_path == run / "final" and from_adapter.adapter_path == run / "final"
    assert plain.adapter_path is None
    assert from_run.base_name == str(base)
    assert "lora adapter" in from_run.description
    assert greedy(from_run) == greedy(from_adapter)
    assert greedy(from_run) != greedy(plain)  # the adapter changes the outputs


def test_adapter_loads_in_plain_peft(saved):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base, run = saved
    theirs = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), run / "final")
    ours = load_for_inference(run)
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        torch.testing.assert_close(theirs.eval()(ids).logits, ours.model(ids).logits)


def test_adapter_finds_its_base_through_run_json_when_the_recorded_folder_is_gone(tmp_path):
    gone = save_base(tmp_path / "gone")
    run = make_run(tmp_path, gone)
    kept = tmp_path / "kept"
    shutil.copytree(gone, kept)
    before = greedy(load_for_inference(run))
    shutil.rmtree(gone)
    (run / "run.json").write_text(json.dumps({"base_model": str(kept), "method": "lora"}))
    loaded = load_for_inference(run)
    assert loaded.base_name == str(kept)
    assert greedy(loaded) == before
    checkpoint = run / "checkpoints" / "step-2"
    shutil.copytree(run / "final", checkpoint)  # a checkpoint finds the run two levels up
    assert greedy(load_for_inference(checkpoint)) == before


def test_tokenizer_and_template_come_from_the_run(saved, tmp_path):
    base, run = saved
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    template = (copy / "final" / "chat_template.jinja").read_text()
    (copy / "final" / "chat_template.jinja").write_text("{# trained #}" + template)
    assert load_for_inference(copy).tokenizer.chat_template.startswith("{# trained #}")
    assert not load_for_inference(base).tokenizer.chat_template.startswith("{# trained #}")


def test_full_fine_tuned_run_loads(tmp_path):
    run = make_run(tmp_path, tmp_path / "unused", method="full", base_name="smollm2-135m-instruct")
    loaded = load_for_inference(run)
    assert loaded.adapter_path is None
    assert loaded.base_name == "smollm2-135m-instruct"
    assert "fully fine-tuned" in loaded.description
    assert len(greedy(loaded)) == GREEDY.max_new_tokens


def test_unfinished_run_says_how_to_resume(tmp_path):
    (tmp_path / "run.json").write_text(json.dumps({"base_model": "x", "method": "lora"}))
    with pytest.raises(RunError, match="ojt train --resume"):
        load_for_inference(tmp_path)


def test_unknown_name_is_a_model_error(tmp_path):
    with pytest.raises(ModelError):
        load_for_inference(tmp_path / "nothing-here")
