"""Tiny models, adapters and run folders on disk, for the generation, adapter and merge tests.

``lively_model`` re-draws the tiny model's weights with a large spread: at the usual 0.02 every
prompt gets the same flat logits and greedy decoding repeats one token, so a test comparing two
outputs could not fail. With spread 0.3 outputs differ from prompt to prompt.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from tests.tiny import tiny_model, tiny_tokenizer


def lively_model(tokenizer, *, seed: int = 0, layers: int = 2):
    model = tiny_model(tokenizer, layers=layers, seed=seed)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() > 1:
                param.normal_(0.0, 0.3, generator=generator)
    return model


def save_base(folder: Path, template: str = "chatml", *, seed: int = 0) -> Path:
    """A saved tiny model folder (config.json, safetensors, tokenizer, chat template)."""
    tokenizer = tiny_tokenizer(template)
    lively_model(tokenizer, seed=seed).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def save_lora(base_dir: Path, folder: Path, *, seed: int = 1) -> Path:
    """A LoRA adapter over ``base_dir`` whose B matrices are random, so it changes outputs."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(seed)
    base = AutoModelForCausalLM.from_pretrained(base_dir)
    config = LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False)
    peft_model = get_peft_model(base, config)
    peft_model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(base_dir).save_pretrained(folder)
    return folder


def make_run(root: Path, base_dir: Path, *, method: str = "lora", base_name: str | None = None) -> Path:
    """A finished run folder as training writes it: run.json and final/."""
    run = root / "run"
    run.mkdir(parents=True)
    if method == "lora":
        save_lora(base_dir, run / "final")
    else:  # full fine-tuning: final/ is a whole model (here another random draw)
        save_base(run / "final", seed=7)
    record = {"base_model": base_name or str(base_dir), "method": method}
    (run / "run.json").write_text(json.dumps(record), encoding="utf-8")
    return run
