"""A tiny model folder and a tiny data set, built inside the test, for training tests."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from onthejob.train.config import set_dotted

from tests.tiny import tiny_model, tiny_tokenizer


def make_model(folder: Path, *, template: str = "chatml", layers: int = 2) -> Path:
    tok = tiny_tokenizer(template)
    model = tiny_model(tok, layers=layers)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def make_data(path: Path, n: int = 24) -> Path:
    with open(path, "w") as f:
        for i in range(n):
            record = {
                "messages": [
                    {"role": "system", "content": "You answer briefly."},
                    {"role": "user", "content": f"what is {i} plus one"},
                    {"role": "assistant", "content": f"it is {i + 1}"},
                ]
            }
            f.write(json.dumps(record) + "\n")
    return path


def make_config(tmp: Path, **overrides) -> dict:
    model = make_model(tmp / "model") if not (tmp / "model").exists() else tmp / "model"
    data = make_data(tmp / "data.jsonl") if not (tmp / "data.jsonl").exists() else tmp / "data.jsonl"
    config = {
        "model": str(model),
        "output_dir": str(tmp / "run"),
        "data": {"train": [{"path": str(data)}], "max_seq_len": 64},
        "precision": "fp32",
        "micro_batch_size": 2,
        "max_steps": 4,
        "optim": {"lr": 1e-2, "warmup_steps": 0},
    }
    for key, value in overrides.items():
        set_dotted(config, key, value)
    return config


def write_config(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(config))
    return path
