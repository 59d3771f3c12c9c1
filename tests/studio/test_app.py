"""The studio's API on a tiny model: the same checks and errors as the CLI, the token, the
playground → review → training data loop."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from onthejob import config as cfg
from onthejob.cli import main
from onthejob.errors import ConfigError
from onthejob.studio.app import create_app
from onthejob.studio.config import StudioConfig
from tests.studio.conftest import HR

BROKEN = '{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}\n{"messages": [{"role": "user"\n'


def _files(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_the_pages_load_without_a_token_the_api_needs_it(workspace):
    with TestClient(create_app(StudioConfig(workspace=workspace, api_key="s3cret"))) as c:
        assert c.get("/").status_code == 200 and "studio.js" in c.get("/").text
        assert c.get("/static/studio.js").status_code == 200
        assert c.get("/api/info").status_code == 401
        assert c.get("/api/info", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert c.get("/api/info", headers={"Authorization": "Bearer s3cret"}).json()["models"][-1] == "models/tiny"
        c.cookies.set("ojt_studio_token", "s3cret")
        assert c.get("/api/runs").status_code == 200


def test_listening_beyond_loopback_needs_a_key(tmp_path):
    with pytest.raises(ConfigError) as e:
        cfg.load(StudioConfig, None, {"workspace": str(tmp_path), "host": "0.0.0.0"})
    assert "host, api_key: listening on 0.0.0.0 lets other machines in" in str(e.value)
    assert cfg.load(StudioConfig, None, {"host": "0.0.0.0", "api_key": "k"}).host == "0.0.0.0"
    assert main(["studio", "--host", "192.168.1.5", "--workspace", str(tmp_path / "ws")]) == 3
    assert not (tmp_path / "ws").exists()


def test_bad_paths_and_uploads_are_refused_and_nothing_is_written_outside(client, workspace, tmp_path):
    before = _files(tmp_path)
    for path in ("../outside.jsonl", "/etc/passwd", "uploads/../../x.jsonl"):
        r = client.post("/api/data/check", json={"path": path, "model": "models/tiny"})
        assert r.status_code == 400 and "workspace" in r.json()["error"], r.text
        assert client.get("/api/file", params={"path": path}).status_code == 400
    assert client.put("/api/files/evil.sh", content=b"rm -rf /").status_code == 400
    r = client.put("/api/files/big.jsonl", content=b"x" * (100_000_000 + 1))
    assert r.status_code == 400 and r.json()["error"] == "big.jsonl is larger than 100 MB (upload a smaller file, or start the studio with a larger --max-upload-mb)"
    r = client.post("/api/train", json={"name": "../escape", "model": "models/tiny", "data": ["models/tiny/config.json"]})
    assert r.status_code == 400 and "run name" in r.json()["error"]
    assert _files(tmp_path) == before


def test_check_shows_the_problems_the_cli_prints(client, workspace, capsys):
    client.put("/api/files/broken.jsonl", content=BROKEN.encode())
    report = client.post("/api/data/check", json={"path": "uploads/broken.jsonl", "model": "models/tiny"}).json()
    assert not report["ok"] and report["errors"] == 1
    problem = next(p for p in report["problems"] if p["severity"] == "error")
    assert (problem["source"], problem["line"], problem["code"]) == ("uploads/broken.jsonl", 2, "malformed_json")
    assert main(["data", "check", str(workspace / "uploads" / "broken.jsonl")]) == 7
    assert f"broken.jsonl:2: {problem['message']} — {problem['fix']}" in capsys.readouterr().out


def test_train_settings_are_validated_as_the_cli_validates_them(client, workspace, tmp_path, capsys):
    client.put("/api/files/train.jsonl", content=(HR / "train.jsonl").read_bytes())
    body = {"name": "r", "model": "models/tiny", "data": ["uploads/train.jsonl"], "settings": {"max_steps": "0", "lora.r": "4"}}
    r = client.post("/api/train/check", json=body).json()
    assert r == {"ok": False, "error": "training settings: 1 problem(s)", "problems": ["max_steps: Input should be greater than or equal to 1 (got 0)"]}
    config = tmp_path / "bad.yaml"
    config.write_text(f"model: {workspace / 'models/tiny'}\ndata:\n  train: [{{path: {HR / 'train.jsonl'}}}]\nmax_steps: 0\n")
    assert main(["train", str(config)]) == 3
    assert r["problems"][0] in capsys.readouterr().err
    assert client.post("/api/train", json=body).status_code == 400
    body["settings"]["max_steps"] = "5"
    ok = client.post("/api/train/check", json=body).json()
    assert ok["ok"] and "max_steps: 5" in ok["yaml"] and "r: 4" in ok["yaml"]
    assert "tokens/s" in client.post("/api/train/plan", json=body).json()["text"]
    schema = {f["key"]: f for f in client.get("/api/train/schema").json()}
    assert schema["max_steps"]["kind"] == "int" and schema["method"]["choices"] == ["lora", "ia3", "full"]
    assert schema["optim.lr"]["default"] == 1e-3 and schema["optim.lr"]["description"]
    assert "output_dir" not in schema and "model" not in schema


def test_a_playground_answer_reviewed_becomes_training_data(client, workspace):
    lines = []
    with client.stream("POST", "/api/chat", json={"side": "base", "model": "models/tiny", "max_new_tokens": 6,
                                                  "messages": [{"role": "user", "content": "How many vacation days?"}]}) as r:
        lines = [json.loads(line) for line in r.iter_lines() if line]
    assert lines[-1]["done"] and all("delta" in x for x in lines[:-1])
    answer = "".join(x["delta"] for x in lines[:-1])
    items = client.get("/api/review/items", params={"source": "playground"}).json()
    assert [(i["id"], i["question"], i["answer"]) for i in items] == [(lines[-1]["id"], "How many vacation days?", answer)]
    fb = client.post("/api/review", json={"source": "playground", "id": items[0]["id"], "rating": "bad",
                                          "correction": "You get 27 days.", "reviewer": "hr-lead"}).json()
    assert fb["reviewer"] == "hr-lead" and fb["created"]
    saved = client.post("/api/review/save").json()
    assert (saved["examples"], saved["corrected"], saved["pairs"]) == (1, 1, 1)
    example = json.loads((workspace / saved["examples_path"]).read_text())
    assert example["messages"][-1] == {"role": "assistant", "content": "You get 27 days."}
    assert example["source"]["reviewer"] == "hr-lead"
    pair = json.loads((workspace / saved["pairs_path"]).read_text())
    # OpenAI's preference format (prompt = input, chosen = preferred, rejected = non-preferred)
    assert pair["preferred_output"][0]["content"] == "You get 27 days." and pair["non_preferred_output"][0]["content"] == answer
    assert pair["input"]["messages"][-1] == {"role": "user", "content": "How many vacation days?"}
    assert main(["data", "check", str(workspace / saved["examples_path"])]) == 0
    assert main(["data", "check", str(workspace / saved["pairs_path"])]) == 0


def test_a_csv_with_a_column_mapping_is_checked_converted_and_split(client, workspace):
    rows = "".join(f'"What is rule {i}?","Rule {i} says {i * 7} days."\n' for i in range(20))
    client.put("/api/files/faq.csv", content=("q,a\n" + rows).encode())
    read = {"path": "uploads/faq.csv", "map": {"q": "user", "a": "assistant"}, "system": "Answer briefly."}
    report = client.post("/api/data/check", json={**read, "model": "models/tiny"}).json()
    assert report["ok"] and report["stats"]["examples"] == 20
    converted = client.post("/api/data/convert", json=read).json()
    assert converted == {"examples": 20, "path": "datasets/faq.jsonl"}
    first = json.loads((workspace / "datasets" / "faq.jsonl").read_text().splitlines()[0])
    assert first["messages"] == [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "What is rule 0?"},
                                 {"role": "assistant", "content": "Rule 0 says 0 days."}]
    split = client.post("/api/data/split", json={"path": converted["path"], "eval_fraction": 0.25}).json()
    assert split["train"]["examples"] + split["eval"]["examples"] == 20 and split["eval"]["examples"] >= 1
    r = client.post("/api/data/check", json={"path": "uploads/faq.csv", "map": {"question": "user"}, "model": "models/tiny"})
    assert r.status_code == 400 and "question" in r.json()["error"]


def test_synthesis_is_a_job_over_workspace_documents(client, workspace):
    r = client.post("/api/data/synth", json={"documents": ["../handbook.md"], "name": "hr"})
    assert r.status_code == 400 and "outside the workspace" in r.json()["error"]
    client.put("/api/files/handbook.md", content=(HR / "handbook.md").read_bytes())
    job = client.post("/api/data/synth", json={"documents": ["uploads/handbook.md"], "name": "hr", "style": "brief",
                                               "teacher": "models/tiny"}).json()
    assert job["kind"] == "synth" and job["argv"][:3] == ["data", "synth", str(workspace.resolve() / "uploads" / "handbook.md")]
    assert job["argv"][job["argv"].index("--out") + 1] == str(workspace.resolve() / "datasets" / "hr-train.jsonl")
    assert job["argv"][job["argv"].index("--teacher-model") + 1] == str(workspace.resolve() / "models" / "tiny")
    assert client.post(f"/api/jobs/{job['id']}/stop").status_code == 200
    remote = client.post("/api/data/synth", json={"documents": ["uploads/handbook.md"], "name": "hr2", "teacher": "llama3.2",
                                                  "teacher_url": "http://localhost:11434/v1", "teacher_key_env": "OLLAMA_KEY"}).json()
    assert remote["argv"][-6:] == ["--teacher-model", "llama3.2", "--teacher-url", "http://localhost:11434/v1", "--teacher-key-env", "OLLAMA_KEY"]
    client.post(f"/api/jobs/{remote['id']}/stop")
