import json

import pytest

from onthejob.errors import DataError
from onthejob.models.adapters import load_for_inference
from onthejob.generate.engine import Engine
from onthejob.generate.sampling import SamplingParams
from onthejob.generate.files import run_generate
from tests.runs import save_base

PARAMS = SamplingParams(max_new_tokens=6)
RECORDS = [
    {"id": "a", "messages": [{"role": "user", "content": "What is the weather in Paris today?"}],
     "facts": ["sunny", "21 degrees"]},
    {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "old answer"}],
     "id": "b"},
    {"id": "c", "messages": [{"role": "system", "content": "Be brief."},
                             {"role": "user", "content": "My printer is broken"}]},
]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return save_base(tmp_path_factory.mktemp("generate") / "base")


def write(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def test_records_extra_keys_and_order_are_kept(base, tmp_path):
    src = write(tmp_path / "in.jsonl", RECORDS)
    n = run_generate(str(base), src, tmp_path / "out.jsonl", params=PARAMS, batch_size=2,
                     progress=False)
    out = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert n == len(out) == 3
    assert [r["id"] for r in out] == ["a", "b", "c"]
    assert out[0]["facts"] == ["sunny", "21 degrees"]
    loaded = load_for_inference(base)
    engine = Engine(loaded.model, loaded.tokenizer)
    for record, written in zip(RECORDS, out):
        prompt = record["messages"][:-1] if record["id"] == "b" else record["messages"]
        [alone] = engine.generate([prompt], PARAMS)
        assert written["messages"] == [*prompt, {"role": "assistant", "content": alone.text}]
    assert "old answer" not in json.dumps(out)


def test_output_is_atomic(base, tmp_path, monkeypatch):
    from onthejob import fsutil

    src = write(tmp_path / "in.jsonl", RECORDS)
    dst = tmp_path / "out.jsonl"
    dst.write_text("previous\n")
    dumps = fsutil.json.dumps

    def fail_on_second_record(obj, **kwargs):
        if isinstance(obj, dict) and obj.get("id") == "b":
            raise OSError("disk full")
        return dumps(obj, **kwargs)

    monkeypatch.setattr(fsutil.json, "dumps", fail_on_second_record)
    with pytest.raises(OSError, match="disk full"):
        run_generate(str(base), src, dst, params=PARAMS, progress=False)
    assert dst.read_text() == "previous\n"  # the first record was written, but not over dst
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl", "out.jsonl"]


def test_bad_records_stop_before_generating(base, tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps(RECORDS[0]) + "\n{not json\n")
    with pytest.raises(DataError, match="in.jsonl:2"):
        run_generate(str(base), src, tmp_path / "out.jsonl", params=PARAMS, progress=False)
    assert not (tmp_path / "out.jsonl").exists()


def test_json_schema_makes_every_answer_valid_json_and_a_bad_schema_file_is_named(base, tmp_path):
    import jsonschema

    from onthejob.cli import main

    schema = {"type": "object", "properties": {"city": {"enum": ["Paris", "Oslo"]}, "sunny": {"type": "boolean"}},
              "required": ["city", "sunny"], "additionalProperties": False}
    (tmp_path / "schema.json").write_text(json.dumps(schema), encoding="utf-8")
    src = write(tmp_path / "in.jsonl", RECORDS)
    code = main(["generate", str(base), "--input", str(src), "--out", str(tmp_path / "out.jsonl"),
                 "--json-schema", str(tmp_path / "schema.json"), "--max-new-tokens", "40"])
    assert code == 0
    for line in (tmp_path / "out.jsonl").read_text().splitlines():
        jsonschema.validate(json.loads(json.loads(line)["messages"][-1]["content"]), schema)
    (tmp_path / "bad.json").write_text('{"type": "objec"}', encoding="utf-8")
    assert main(["generate", str(base), "--input", str(src), "--out", str(tmp_path / "out2.jsonl"),
                 "--json-schema", str(tmp_path / "bad.json")]) != 0
    assert not (tmp_path / "out2.jsonl").exists()
