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


def packed_batch(vocab: int, lengths=(7, 12, 5), max_len: int = 32, seed: int = 0) -> dict:
    """Random examples (the second half of each supervised) packed into rows of ``max_len``."""
    import torch

    from onthejob.data.pack import collate, pack
    from onthejob.data.template import Tokenized

    g = torch.Generator().manual_seed(seed)
    seqs = []
    for n in lengths:
        ids = torch.randint(5, vocab, (n,), generator=g).tolist()
        seqs.append(Tokenized(ids, [-100] * (n // 2) + ids[n // 2 :]))
    return collate(pack(seqs, max_len), pad_id=0)


LINEARS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def lora(model, **settings):
    """``model`` with a LoRA adapter (r=4) on every linear but the head."""
    from peft import LoraConfig, get_peft_model

    model.config.use_cache = False
    return get_peft_model(model, LoraConfig(**{"r": 4, "lora_alpha": 8, "target_modules": LINEARS, **settings}))


def randomise_lora_b(model, seed: int = 0) -> None:
    """LoRA B starts at zero, which hides the adapter from the output: give it values to test."""
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)


def loss_and_grads(model, batch: dict, *, per_example: bool = False, bf16: bool = True):
    """Loss per supervised token of ``batch`` and the gradient of every trainable parameter."""
    import torch

    from onthejob.train.loss import TrainForward

    forward = TrainForward(model, per_example=per_example).train()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        loss, _, n = forward(**batch)
    (loss / n).backward()
    grads = {k: p.grad.clone() for k, p in model.named_parameters() if p.requires_grad}
    model.zero_grad(set_to_none=True)
    return loss.item() / n, grads
