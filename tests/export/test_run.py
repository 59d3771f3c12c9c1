import json

import pytest

from onthejob.cli import main
from onthejob.errors import ParityError
from onthejob.export import parity as parity_module
from onthejob.export.config import ExportConfig
from onthejob.export.run import run as export
from tests.runs import make_run, save_base

pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (pip install 'onthejob[export]')")

QUESTIONS = ["Hello! How can I help?", "What is the weather in Paris?", "Please turn it off and on again."]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    run = make_run(root, save_base(root / "base"))
    with open(root / "eval.jsonl", "w") as f:
        for q in QUESTIONS:
            f.write(json.dumps({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": "Sunny."}],
                                "facts": ["sunny"]}) + "\n")
    return run


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_gguf_export_writes_the_file_manifest_and_parity_table(run, tmp_path, capsys):
    out = tmp_path / "gguf"
    code = main(["export", str(run), "--to", "gguf", "--quant", "f16", "--out", str(out),
                 "--data", str(run.parent / "eval.jsonl"), "--max-new-tokens", "12"])
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == ["export.json", "parity.json", "parity.md", "run.f16.gguf"]
    manifest = json.loads((out / "export.json").read_text())
    assert manifest["to"] == "gguf" and manifest["quant"] == "f16" and manifest["method"] == "lora"
    assert len(manifest["adapter_sha256"]) == 64 and len(manifest["chat_template_sha256"]) == 64
    assert manifest["files"]["run.f16.gguf"]["bytes"] == (out / "run.f16.gguf").stat().st_size
    assert manifest["versions"]["gguf"] != "not installed"
    assert manifest["check"]["questions"] == 3 and manifest["check"]["passed"]
    assert manifest["check"]["identical"] == 3  # f16 of a float32 run, greedy: the same tokens
    assert "answers identical to the run's | – | 3 of 3" in capsys.readouterr().out
    assert leftovers(tmp_path) == []


def test_merged_export_answers_exactly_like_the_adapter_in_plain_transformers(run, tmp_path):
    out = export(ExportConfig(run=str(run), to="merged", out=str(tmp_path / "merged"),
                              data=str(run.parent / "eval.jsonl"), max_new_tokens=12), say=lambda _: None)
    check = json.loads((out / "parity.json").read_text())
    assert check["summary"]["identical"] == 3 and check["summary"]["token_agreement"] == 1.0
    generation = json.loads((out / "generation_config.json").read_text())
    from tests.tiny import tiny_tokenizer

    assert tiny_tokenizer("chatml").convert_tokens_to_ids("<|im_end|>") in generation["eos_token_id"]
    assert (out / "model.safetensors").is_file() and not (out / "adapter_config.json").exists()


def test_ollama_export_writes_a_modelfile_beside_the_gguf(run, tmp_path):
    out = export(ExportConfig(run=str(run), to="ollama", out=str(tmp_path / "ollama"), check=False), say=lambda _: None)
    modelfile = (out / "Modelfile").read_text()
    assert "FROM ./run.q8_0.gguf" in modelfile and (out / "run.q8_0.gguf").is_file()
    assert json.loads((out / "export.json").read_text())["check"] is None


def test_a_failed_parity_check_writes_nothing(run, tmp_path, monkeypatch):
    real = parity_module.check

    def worse(*args, **kwargs):
        result = real(*args, **kwargs)
        for row in result.rows:
            row.artefact_recall, row.run_recall = 0.0, 1.0
        return parity_module.Parity(result.kind, result.rows, result.max_recall_drop)

    monkeypatch.setattr(parity_module, "check", worse)
    with pytest.raises(ParityError, match=r"facts recall fell from 1\.000 to 0\.000(.|\n)*questions with every fact"):
        export(ExportConfig(run=str(run), quant="f16", out=str(tmp_path / "bad"), data=str(run.parent / "eval.jsonl"),
                            max_new_tokens=4), say=lambda _: None)
    assert not (tmp_path / "bad").exists() and leftovers(tmp_path) == []


def test_an_interrupted_export_leaves_nothing(run, tmp_path, monkeypatch):
    import onthejob.export.gguf_file as gguf_file

    def interrupted(model, tokenizer, path, **kwargs):
        path.write_bytes(b"GGUF half a file")
        raise KeyboardInterrupt

    monkeypatch.setattr(gguf_file, "write_gguf", interrupted)
    with pytest.raises(KeyboardInterrupt):
        export(ExportConfig(run=str(run), out=str(tmp_path / "cut"), check=False), say=lambda _: None)
    assert list(tmp_path.iterdir()) == []


def bad(argv, capsys):
    code = main(argv)
    err = capsys.readouterr().err.strip()
    return code, err


def test_bad_input_gets_one_line_and_writes_nothing(run, tmp_path, capsys):
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    (unfinished / "run.json").write_text(json.dumps({"base_model": "x", "method": "lora"}))
    code, err = bad(["export", str(unfinished), "--out", str(tmp_path / "a")], capsys)
    assert code == 5 and "has no final/ folder" in err and len(err.splitlines()) == 1

    code, err = bad(["export", str(run), "--quant", "q3_k", "--out", str(tmp_path / "b"), "--no-check"], capsys)
    assert code == 4 and "unknown quant type 'q3_k'" in err and len(err.splitlines()) == 1

    (tmp_path / "taken").mkdir()
    code, err = bad(["export", str(run), "--out", str(tmp_path / "taken"), "--no-check"], capsys)
    assert code == 3 and "already exists" in err and len(err.splitlines()) == 1

    code, err = bad(["export", str(run), "--out", str(tmp_path / "c")], capsys)  # no data.eval, no --data
    assert code == 7 and "no questions for the parity check" in err and len(err.splitlines()) == 1
    (tmp_path / "a-file").write_text("not a folder")
    code, err = bad(["export", str(run), "--out", str(tmp_path / "a-file" / "out"), "--no-check"], capsys)
    assert code == 3 and "a-file is a file, not a folder" in err and len(err.splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "taken", "unfinished"]


def test_an_unsupported_architecture_is_refused_before_any_weights_are_read(tmp_path, capsys):
    from transformers import GPT2Config, GPT2LMHeadModel

    from tests.tiny import tiny_tokenizer

    run = tmp_path / "gpt2-run"
    tokenizer = tiny_tokenizer("chatml")
    GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=1, n_head=2)).save_pretrained(run / "final")
    tokenizer.save_pretrained(run / "final")
    (run / "run.json").write_text(json.dumps({"base_model": "gpt2-tiny", "method": "full"}))
    code, err = bad(["export", str(run), "--out", str(tmp_path / "out"), "--no-check"], capsys)
    assert code == 4 and "cannot export a 'gpt2' model to GGUF: supported are" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_eval_and_compare_answer_with_the_exported_gguf_in_llama_cpp(run, tmp_path):
    from onthejob.eval.data import read_eval
    from onthejob.eval.run import evaluate
    from onthejob.generate.sampling import SamplingParams

    out = export(ExportConfig(run=str(run), quant="f16", out=str(tmp_path / "gguf"), check=False), say=lambda _: None)
    gguf = out / "run.f16.gguf"
    items = read_eval(run.parent / "eval.jsonl")
    params = SamplingParams(max_new_tokens=12)
    exported = evaluate(gguf, items, params=params, progress=False)
    trained = evaluate(run, items, params=params, progress=False, with_loss=False)
    assert [r["answer"] for r in exported.per_example] == [r["answer"] for r in trained.per_example]
    assert exported.loss is None and "llama.cpp" in exported.description
    assert exported.name == str(gguf)

    code = main(["eval", str(gguf), "--data", str(run.parent / "eval.jsonl"), "--max-new-tokens", "8",
                 "--general", "none", "--out", str(tmp_path / "report")])
    assert code == 0
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert len(report["models"]) == 2  # the base (from export.json) against the GGUF


def test_serve_answers_with_the_exported_gguf_like_the_run(run, tmp_path):
    import openai

    from onthejob.serve.config import ServeConfig
    from onthejob.serve.server import create_app
    from tests.serve.server_helpers import ServerThread

    out = export(ExportConfig(run=str(run), quant="f16", out=str(tmp_path / "gguf"), check=False), say=lambda _: None)
    gguf = out / "run.f16.gguf"
    from onthejob.eval.data import read_eval
    from onthejob.eval.run import evaluate
    from onthejob.generate.sampling import SamplingParams

    items = read_eval(run.parent / "eval.jsonl")
    expected = [r["answer"] for r in evaluate(run, items, params=SamplingParams(max_new_tokens=10), progress=False,
                                              with_loss=False).per_example]
    server = ServerThread(create_app(ServeConfig(model=str(gguf), api_key="k", max_tokens=32, feedback_db=None)))
    server.wait_ready()
    try:
        client = openai.OpenAI(base_url=server.url, api_key="k", max_retries=0)
        assert [m.id for m in client.models.list().data][0] == "run.f16"
        for item, answer in zip(items, expected):
            reply = client.chat.completions.create(model="run.f16", messages=item.messages, temperature=0, max_tokens=10)
            assert reply.choices[0].message.content == answer
        chunks = client.chat.completions.create(model="run.f16", messages=items[0].messages, temperature=0,
                                                max_tokens=10, stream=True)
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == expected[0]
    finally:
        server.stop()


def test_a_fully_fine_tuned_run_exports_too(tmp_path):
    full = make_run(tmp_path, tmp_path / "unused", method="full")
    out = export(ExportConfig(run=str(full), quant="f16", out=str(tmp_path / "gguf"), check=False), say=lambda _: None)
    manifest = json.loads((out / "export.json").read_text())
    assert manifest["method"] == "full" and manifest["adapter_sha256"] is None
    assert (out / "run.f16.gguf").stat().st_size > 0


def test_chat_and_generate_take_the_exported_gguf(run, tmp_path):
    import io

    from onthejob.generate.chat import run_chat
    from onthejob.generate.files import run_generate
    from onthejob.generate.sampling import SamplingParams

    out = export(ExportConfig(run=str(run), quant="f16", out=str(tmp_path / "gguf"), check=False), say=lambda _: None)
    gguf = out / "run.f16.gguf"
    answers = tmp_path / "answers.jsonl"
    params = SamplingParams(max_new_tokens=10)
    assert run_generate(gguf, run.parent / "eval.jsonl", answers, params=params, progress=False) == 3
    from onthejob.eval.data import read_eval
    from onthejob.eval.run import evaluate

    expected = [r["answer"] for r in evaluate(run, read_eval(run.parent / "eval.jsonl"), params=params,
                                              progress=False, with_loss=False).per_example]
    written = [json.loads(line)["messages"][-1]["content"] for line in answers.read_text().splitlines()]
    assert written == expected
    said = io.StringIO()
    run_chat(gguf, params=params, input=io.StringIO(QUESTIONS[0] + "\n/exit\n"), output=said)
    assert "GGUF in llama.cpp" in said.getvalue() and expected[0] in said.getvalue()


def test_a_plain_model_exports_as_it_is_and_a_gguf_is_refused(run, tmp_path, capsys):
    base = json.loads((run / "run.json").read_text())["base_model"]
    out = export(ExportConfig(run=base, quant="f16", out=str(tmp_path / "base"), data=str(run.parent / "eval.jsonl"),
                              max_new_tokens=8), say=lambda _: None)
    manifest = json.loads((out / "export.json").read_text())
    assert manifest["method"] == "base" and manifest["check"]["identical"] == 3
    [gguf] = out.glob("*.gguf")
    code, err = bad(["export", str(gguf), "--out", str(tmp_path / "again"), "--no-check"], capsys)
    assert code == 4 and "is a GGUF file already" in err
