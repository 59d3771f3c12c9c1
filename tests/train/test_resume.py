"""Resuming (train/resume.py): the saved config is the base; a command-line change to a key the
saved state depends on loses to the checkpoint, any other change wins, and each is announced."""

from __future__ import annotations

from onthejob.train import runfolder
from onthejob.train.config import TrainConfig, to_yaml
from onthejob.train.data import fingerprint
from onthejob.train.resume import reconcile
from tests.train.helpers import make_data


def _run(tmp_path, **settings) -> tuple[TrainConfig, TrainConfig]:
    """A run folder started with ``settings`` and its saved config (and the same, to be changed)."""
    data = make_data(tmp_path / "data.jsonl", n=4)
    raw = {"model": "some/model", "output_dir": str(tmp_path / "run"), "data": {"train": [{"path": str(data)}]}, **settings}
    saved = TrainConfig.model_validate(raw)
    runfolder.write_start(tmp_path / "run", to_yaml(saved), {"data": fingerprint(saved)})
    return saved, raw


def test_nothing_changed_means_nothing_said(tmp_path, capsys):
    saved, raw = _run(tmp_path)
    result = reconcile(tmp_path / "run", saved, TrainConfig.model_validate({**raw, "output_dir": "elsewhere"}), fingerprint)
    assert result == saved
    assert result.output_dir == str(tmp_path / "run")  # the folder being resumed, whatever was asked
    assert capsys.readouterr().err == ""


def test_a_frozen_key_changed_on_the_command_line_loses_to_the_checkpoint(tmp_path, capsys):
    saved, raw = _run(tmp_path, lora={"r": 16}, seed=1)
    asked = TrainConfig.model_validate({**raw, "lora": {"r": 8}, "seed": 2})
    result = reconcile(tmp_path / "run", saved, asked, fingerprint)
    assert result.lora.r == 16 and result.seed == 1
    err = capsys.readouterr().err
    for key, new, old in (("lora.r", 8, 16), ("seed", 2, 1)):
        assert f"warning: {key} is {new} on the command line but {old} in the checkpoint; the checkpoint wins" in err


def test_a_free_key_takes_the_new_value(tmp_path, capsys):
    saved, raw = _run(tmp_path, optim={"lr": 1e-3}, max_steps=10)
    asked = TrainConfig.model_validate({**raw, "optim": {"lr": 5e-4}, "max_steps": 20})
    result = reconcile(tmp_path / "run", saved, asked, fingerprint)
    assert result.optim.lr == 5e-4 and result.max_steps == 20
    err = capsys.readouterr().err
    assert "warning: optim.lr changes from 0.001 (checkpoint) to 0.0005; the new value wins" in err
    assert "warning: max_steps changes from 10 (checkpoint) to 20; the new value wins" in err


def test_a_changed_data_file_is_announced(tmp_path, capsys):
    saved, raw = _run(tmp_path)
    data = saved.data.train[0].path
    with open(data, "a") as f:
        f.write('{"messages": [{"role": "user", "content": "one more"}, {"role": "assistant", "content": "ok"}]}\n')
    result = reconcile(tmp_path / "run", saved, TrainConfig.model_validate(raw), fingerprint)
    assert result == saved
    assert f"warning: {data} changed since the run started; the file as it is now wins" in capsys.readouterr().err
