"""The export on the real default model (SmolLM2-135M-Instruct): its tokenizer, template and stops."""

import json
import shutil
from pathlib import Path

import pytest

from onthejob.data.template import end_of_turn_ids
from tests.export.test_modelfile import CONVERSATIONS, go_render, hf

HR_EVAL = Path(__file__).resolve().parents[2] / "examples" / "hr" / "eval.jsonl"
pytestmark = pytest.mark.slow
llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (pip install 'onthejob[export]')")


@pytest.fixture(scope="module")
def run(tmp_path_factory, default_model_dir):
    """A run of the default model whose LoRA adapter is freshly initialised (B = 0: the base's answers)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    root = tmp_path_factory.mktemp("default-export")
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(default_model_dir), LoraConfig(r=4, target_modules="all-linear"))
    model.save_pretrained(root / "run" / "final")
    AutoTokenizer.from_pretrained(default_model_dir).save_pretrained(root / "run" / "final")
    (root / "run" / "run.json").write_text(json.dumps({"base_model": "smollm2-135m-instruct", "method": "lora",
                                                       "system_prompt": "You answer briefly."}))
    return root / "run"


def test_q8_0_gguf_of_the_default_model_renders_stops_and_answers_like_the_run(run, tmp_path):
    from onthejob.export.config import ExportConfig
    from onthejob.export.run import run as export
    from onthejob.generate.llamacpp import LlamaCpp
    from onthejob.models.load import load_tokenizer

    eval_file = tmp_path / "eval.jsonl"
    eval_file.write_text("".join(HR_EVAL.read_text().splitlines(keepends=True)[:6]))
    out = export(ExportConfig(run=str(run), to="ollama", out=str(tmp_path / "hr"), data=str(eval_file),
                              max_new_tokens=48), say=lambda _: None)
    check = json.loads((out / "parity.json").read_text())["summary"]
    assert check["artefact_stops"] == check["run_stops"]  # (the base model runs long on these)
    assert check["near_ties"] == check["differing"]  # where q8_0 and float32 part, they part on a near-tie
    assert check["run_recall"] - check["artefact_recall"] <= 0.05

    tokenizer = load_tokenizer(run / "final")
    llm = LlamaCpp(out / "run.q8_0.gguf", context=1024, threads=2)
    conversation = CONVERSATIONS[0]
    assert llm.render(conversation) == hf(tokenizer, conversation)
    assert llm.llm.token_eos() == tokenizer.eos_token_id == end_of_turn_ids(tokenizer)[0]
    assert llm.metadata["tokenizer.ggml.pre"] == "smollm"  # what the model's own GGUF records
    modelfile = (out / "Modelfile").read_text()
    assert 'SYSTEM """You answer briefly."""' in modelfile and 'PARAMETER stop "<|im_end|>"' in modelfile
    if shutil.which("go"):
        template = modelfile.split('TEMPLATE """', 1)[1].split('"""', 1)[0]
        assert go_render(template, CONVERSATIONS, tmp_path) == [hf(tokenizer, c) for c in CONVERSATIONS]
