import copy

import pytest
import torch

from onthejob.data.template import end_of_turn_ids, tokenize_prompt
from onthejob.errors import ModelError
from onthejob.export.gguf_file import check_supported, write_gguf
from onthejob.generate.engine import Engine
from onthejob.generate.sampling import SamplingParams
from tests.runs import lively_model
from tests.tiny import tiny_tokenizer

llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (pip install 'onthejob[export]')")

CONVERSATION = [{"role": "system", "content": "You answer briefly."},
                {"role": "user", "content": "Hello! How can I help?"},
                {"role": "assistant", "content": "My printer is broken."},
                {"role": "user", "content": "What is the weather in Paris?"}]
QUESTIONS = [[{"role": "user", "content": q}] for q in
             ("Hello! How can I help?", "What is the weather in Paris?", "Please turn it off and on again.",
              "def add(a, b):", "The answer is 42.", "Thanks, that worked!")]


def export(tmp_path, template="chatml", quant="f16"):
    from onthejob.generate.llamacpp import LlamaCpp

    tokenizer = tiny_tokenizer(template)
    model = lively_model(tokenizer, seed=3)
    path = tmp_path / f"tiny.{quant}.gguf"
    write_gguf(model, tokenizer, path, quant=quant, chat_template=tokenizer.chat_template,
               eot_id=end_of_turn_ids(tokenizer)[0])
    return model, tokenizer, LlamaCpp(path, context=512, threads=1)


@pytest.mark.parametrize("template", ["chatml", "llama3"])
def test_embedded_template_renders_and_tokenizes_the_runs_prompt(tmp_path, template):
    _, tokenizer, llm = export(tmp_path, template)
    ours = tokenizer.apply_chat_template(CONVERSATION, tokenize=False, add_generation_prompt=True)
    assert llm.chat_template == tokenizer.chat_template
    assert llm.render(CONVERSATION) == ours
    assert llm.tokenize(llm.render(CONVERSATION)) == tokenize_prompt(CONVERSATION, tokenizer)


@pytest.mark.parametrize("template", ["chatml", "llama3"])
def test_eos_and_end_of_turn_ids_are_the_runs(tmp_path, template):
    import gguf

    _, tokenizer, llm = export(tmp_path, template)
    fields = gguf.GGUFReader(str(llm.path)).fields
    assert int(fields["tokenizer.ggml.eos_token_id"].contents()) == tokenizer.eos_token_id
    assert int(fields["tokenizer.ggml.eot_token_id"].contents()) == end_of_turn_ids(tokenizer)[0]
    assert llm.llm.token_eos() == tokenizer.eos_token_id
    assert fields["tokenizer.ggml.add_bos_token"].contents() is False


def test_f16_answers_token_for_token_like_the_engine(tmp_path):
    model, tokenizer, llm = export(tmp_path, quant="f16")
    params = SamplingParams(max_new_tokens=12)
    ours = Engine(model, tokenizer, dtype="float32").generate(QUESTIONS, params)
    theirs = llm.generate(QUESTIONS, params)
    assert [c.token_ids for c in theirs] == [c.token_ids for c in ours]


def test_q8_0_logits_stay_close_and_q4_0_further(tmp_path):
    import numpy as np

    ids = tokenize_prompt(QUESTIONS[1], tiny_tokenizer("chatml"))
    errors = {}
    for quant in ("f16", "q8_0", "q4_0"):
        model, _, llm = export(tmp_path, quant=quant)
        with torch.no_grad():
            reference = model(torch.tensor([ids])).logits[0, -1].numpy()
        llm.llm.reset()
        llm.llm.eval(ids)
        last = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm.llm.ctx, -1), shape=(len(reference),))
        errors[quant] = float(np.abs(last - reference).mean())
    assert errors["f16"] < errors["q8_0"] < errors["q4_0"]
    assert errors["q8_0"] < 0.1 * float(np.abs(reference).mean())


def test_unsupported_models_and_quants_are_refused_by_name():
    from transformers import GPT2Config, LlamaConfig

    tokenizer = tiny_tokenizer("chatml")
    with pytest.raises(ModelError, match="cannot export a 'gpt2' model to GGUF: supported are .*llama"):
        check_supported(GPT2Config(), tokenizer, "q8_0")
    with pytest.raises(ModelError, match="unknown quant type 'q3_k'.*q8_0"):
        check_supported(LlamaConfig(), tokenizer, "q3_k")
    scaled = LlamaConfig(rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                       "high_freq_factor": 4.0, "original_max_position_embeddings": 8192})
    with pytest.raises(ModelError, match="rope scaling"):
        check_supported(scaled, tokenizer, "q8_0")


def test_llama_layout_round_trips_through_the_gguf_reader(tmp_path):
    """The q/k rows are permuted for llama.cpp; reading the file back and undoing it gives the weights."""
    import gguf
    import numpy as np

    model, _, llm = export(tmp_path, quant="f32")
    tensors = {t.name: t for t in gguf.GGUFReader(str(llm.path)).tensors}
    stored = np.array(tensors["blk.0.attn_q.weight"].data).reshape(64, 64)
    heads = model.config.num_attention_heads
    back = stored.reshape(heads, 16 // 2, 2, 64).swapaxes(1, 2).reshape(64, 64)
    assert np.array_equal(back, model.model.layers[0].self_attn.q_proj.weight.detach().numpy())
    assert "output.weight" not in tensors  # tied: llama.cpp reuses token_embd
