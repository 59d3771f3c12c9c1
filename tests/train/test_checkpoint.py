"""Checkpoints (train/checkpoint.py): which folders count, pruning, and restoring weights,
optimizer, schedule and random state exactly; a checkpoint of another model is a RunError."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch

from onthejob.errors import RunError
from onthejob.train import checkpoint
from tests.tiny import tiny_model, tiny_tokenizer
from tests.train.helpers import lora, randomise_lora_b


def _trainer(seed: int = 0, **lora_settings):
    """A tiny LoRA model with its optimizer and a cosine-like schedule, as the loop builds them."""
    model = lora(tiny_model(tiny_tokenizer(), seed=seed), **lora_settings)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-2)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 / (step + 1))
    return model, optimizer, scheduler


def _step(model, optimizer, scheduler) -> None:
    ids = torch.arange(10, 30)[None]
    model(input_ids=ids, labels=ids).loss.backward()
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)


def _save(run, step, model, optimizer, scheduler, keep=3, **state):
    return checkpoint.save(run, step=step, model=model, tokenizer=tiny_tokenizer(), optimizer=optimizer,
                           scheduler=scheduler, state=state, keep=keep)


def test_the_last_k_complete_checkpoints_are_kept_and_incomplete_ones_ignored(tmp_path):
    model, optimizer, scheduler = _trainer()
    run = tmp_path / "run"
    half_written = checkpoint.step_dir(run, 99)  # a folder without state.json, e.g. copied by hand
    half_written.mkdir(parents=True)
    (half_written / "adapter_model.safetensors").write_bytes(b"")
    for step in (10, 20, 30, 40):
        dest = _save(run, step, model, optimizer, scheduler, keep=2)
        assert dest == checkpoint.step_dir(run, step) and dest.name == f"step-{step:06d}"
    assert checkpoint.complete_checkpoints(run) == [checkpoint.step_dir(run, 30), checkpoint.step_dir(run, 40)]
    assert checkpoint.latest(run) == checkpoint.step_dir(run, 40)
    assert not checkpoint.step_dir(run, 10).exists() and not checkpoint.step_dir(run, 20).exists()
    assert half_written.is_dir()  # never counted, never pruned
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-000030", "step-000040", "step-000099"]
    assert json.loads((checkpoint.latest(run) / checkpoint.STATE).read_text())["step"] == 40


def test_a_run_without_checkpoints_has_no_latest(tmp_path):
    assert checkpoint.complete_checkpoints(tmp_path) == [] and checkpoint.latest(tmp_path) is None
    checkpoint.step_dir(tmp_path, 5).mkdir(parents=True)
    assert checkpoint.latest(tmp_path) is None


def test_load_trainable_restores_the_adapter_bit_for_bit(tmp_path):
    model, optimizer, scheduler = _trainer()
    randomise_lora_b(model)
    _step(model, optimizer, scheduler)
    folder = _save(tmp_path, 1, model, optimizer, scheduler)
    fresh, _, _ = _trainer()
    trained = {k: v.detach().clone() for k, v in model.named_parameters() if v.requires_grad}
    assert any(not torch.equal(p, trained[k]) for k, p in fresh.named_parameters() if p.requires_grad)
    checkpoint.load_trainable(fresh, folder)
    restored = {k: v.detach() for k, v in fresh.named_parameters() if v.requires_grad}
    assert restored.keys() == trained.keys()
    assert all(torch.equal(restored[k], trained[k]) for k in trained)


def test_load_state_restores_optimizer_schedule_and_random_numbers(tmp_path):
    model, optimizer, scheduler = _trainer()
    for _ in range(3):
        _step(model, optimizer, scheduler)
    folder = _save(tmp_path, 3, model, optimizer, scheduler, best_eval_loss=1.5)
    expected_rng = (torch.rand(4), random.random(), np.random.rand(2))
    _, fresh_optimizer, fresh_scheduler = _trainer()
    torch.manual_seed(123), random.seed(123), np.random.seed(123)
    state = checkpoint.load_state(folder, fresh_optimizer, fresh_scheduler)
    assert state == {"best_eval_loss": 1.5, "step": 3, "run_id": None}
    assert torch.equal(torch.rand(4), expected_rng[0])
    assert random.random() == expected_rng[1]
    assert np.array_equal(np.random.rand(2), expected_rng[2])
    assert fresh_scheduler.last_epoch == scheduler.last_epoch == 3
    assert fresh_scheduler.get_last_lr() == scheduler.get_last_lr()
    want, got = optimizer.state_dict()["state"], fresh_optimizer.state_dict()["state"]
    assert got.keys() == want.keys() and len(want) > 0
    for i in want:
        assert all(torch.equal(got[i][name], want[i][name]) for name in ("step", "exp_avg", "exp_avg_sq"))


@pytest.mark.parametrize("other", [{"r": 8}, {"target_modules": ["q_proj"]}])
def test_an_adapter_checkpoint_of_other_settings_is_a_run_error(tmp_path, other):
    model, optimizer, scheduler = _trainer()
    folder = _save(tmp_path, 1, model, optimizer, scheduler)
    different, _, _ = _trainer(**other)
    with pytest.raises(RunError, match="does not fit the model") as caught:
        checkpoint.load_trainable(different, folder)
    assert str(folder) in str(caught.value) and "config.yaml" in caught.value.fix


def test_a_full_checkpoint_of_another_model_is_a_run_error(tmp_path):
    tok = tiny_tokenizer()
    saved, wider = tiny_model(tok), tiny_model(tok, hidden=32)
    saved.save_pretrained(tmp_path, safe_serialization=True)
    with pytest.raises(RunError, match="does not fit the model") as caught:
        checkpoint.load_trainable(wider, tmp_path)
    assert str(tmp_path) in str(caught.value)
