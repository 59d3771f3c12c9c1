"""What happens when things go wrong in training: a real `ojt train` killed at several moments
(after a step, half-way through a checkpoint, half-way through final/), damaged or hostile
checkpoints, a run folder that holds another run, diverging losses, a full or read-only disk.
Each ends in a resumable run or a one-line error, and the next start leaves no debris."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from onthejob.errors import ConfigError, DataError, RunError
from onthejob.train import checkpoint, config as cfg
from onthejob.train.loop import FAULT_ENV, resume_config, run
from tests.train.helpers import make_config, write_config

REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "src" / "onthejob"


def _cli(args: list[str], env_extra: dict | None = None, prefix: list[str] | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), **(env_extra or {})}
    cmd = [*(prefix or []), sys.executable, "-m", "onthejob", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


def _one_line_error(result: subprocess.CompletedProcess) -> str:
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    return errors[0]


def _debris(run_dir: Path) -> list[str]:
    places = [run_dir, run_dir / "checkpoints"]
    return sorted(p.name for d in places if d.is_dir() for p in d.iterdir() if p.name.startswith("."))


def _steps(run_dir: Path) -> list[int]:
    return [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines() if "loss" in line]


def _same_adapter(a: Path, b: Path) -> None:
    x, y = load_file(a / "adapter_model.safetensors"), load_file(b / "adapter_model.safetensors")
    assert x.keys() == y.keys()
    for name in x:
        torch.testing.assert_close(x[name], y[name], rtol=1e-5, atol=1e-7)


# --- 1. a fresh run never mixes with another run's files ------------------------------------


def test_a_new_run_is_refused_an_old_run_folder_and_overwrite_replaces_it_whole(tmp_path):
    config = make_config(tmp_path, max_steps=8, save_every=2)
    first = write_config(tmp_path / "first.yaml", config)
    assert _cli(["train", str(first)]).returncode == 0
    run_dir = tmp_path / "run"
    before = {name: (run_dir / name).read_bytes() for name in ("config.yaml", "run.json", "metrics.jsonl")}

    second = write_config(tmp_path / "second.yaml", {**config, "seed": 7})
    refused = _cli(["train", str(second)], {FAULT_ENV: "3"})
    assert refused.returncode == 5
    assert "already holds another run" in _one_line_error(refused) and "--overwrite" in refused.stderr
    assert {name: (run_dir / name).read_bytes() for name in before} == before  # nothing touched

    killed = _cli(["train", str(second), "--overwrite"], {FAULT_ENV: "3"})
    assert killed.returncode == -9
    assert not (run_dir / "final").exists()  # the old run's final/ went with the rest
    assert [p.name for p in (run_dir / "checkpoints").iterdir()] == ["step-000002"]
    resumed = _cli(["train", "--resume", str(run_dir)])
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed at step 2" in resumed.stderr
    assert cfg.load(run_dir / "config.yaml").seed == 7
    assert _steps(run_dir) == list(range(1, 9))


def test_overwrite_clears_only_a_run_folder_and_never_a_file(tmp_path):
    precious = tmp_path / "project"
    precious.mkdir()
    (precious / "notes.txt").write_text("mine")
    for output_dir, expected in ((precious, "holds files that are not an onthejob run"), (precious / "notes.txt", "is a file")):
        with pytest.raises(RunError, match=expected):
            run(cfg.validate(make_config(tmp_path, output_dir=str(output_dir))), overwrite=True)
    assert (precious / "notes.txt").read_text() == "mine"


def test_the_root_folder_is_no_run_folder(tmp_path):
    result = _cli(["train", "--data", str(tmp_path / "d.jsonl"), "--output_dir", "/", "--model", "no-such-model-needed"])
    assert result.returncode == 5 and "output_dir / already holds files" in _one_line_error(result)
    assert not Path("/config.yaml").exists() and not Path("/run.json").exists()


def test_pruning_never_touches_another_runs_checkpoints(tmp_path):
    run_dir = run(cfg.validate(make_config(tmp_path, max_steps=4, save_every=1, keep_checkpoints=1)))
    stranger = checkpoint.step_dir(run_dir, 1)  # copied in from elsewhere, with another run's id
    shutil.copytree(checkpoint.step_dir(run_dir, 4), stranger)
    state = json.loads((stranger / checkpoint.STATE).read_text())
    (stranger / checkpoint.STATE).write_text(json.dumps({**state, "run_id": "another-run", "step": 1}))
    run_id = json.loads((run_dir / "run.json").read_text())["run_id"]
    checkpoint.prune(run_dir, 1, run_id)
    assert stranger.is_dir()
    assert checkpoint.complete_checkpoints(run_dir, run_id) == [checkpoint.step_dir(run_dir, 4)]


# --- 2. nothing is unpickled ------------------------------------------------------------------


class _Planted:
    """A pickle that, when loaded, creates a file: what a hostile rng.pt would do with os.system."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_resume_loads_no_pickle_even_when_one_is_planted(tmp_path):
    run_dir = run(cfg.validate(make_config(tmp_path, max_steps=2, save_every=2)))
    latest = checkpoint.latest(run_dir)
    assert {p.name for p in latest.iterdir()} >= {"optimizer.safetensors", "scheduler.json", "rng.json", "state.json"}
    assert not list(latest.glob("*.pt")) and not list(latest.glob("*.bin"))
    marker = tmp_path / "pwned"
    for name in ("rng.pt", "optimizer.pt", "scheduler.pt", "training_args.bin"):
        (latest / name).write_bytes(pickle.dumps(_Planted(marker)))
    run(resume_config(run_dir, ["--max_steps", "3"]), resume=run_dir)
    assert not marker.exists()
    assert json.loads((run_dir / "run.json").read_text())["steps"] == 3


def test_a_checkpoint_whose_state_is_only_pickled_is_refused_with_a_reason(tmp_path):
    run_dir = run(cfg.validate(make_config(tmp_path, max_steps=2, save_every=2)))
    latest = checkpoint.latest(run_dir)
    (latest / "optimizer.safetensors").unlink()
    (latest / "optimizer.pt").write_bytes(b"\x80\x04N.")
    with pytest.raises(RunError, match="pickled .* pickles are never loaded"):
        checkpoint.latest(run_dir)


def test_no_module_loads_a_pickle():
    banned = ("torch.load(", "pickle.load", "weights_only=False", "import pickle", "joblib")
    found = [f"{p.relative_to(SRC)}: {b}" for p in SRC.rglob("*.py") for b in banned if b in p.read_text()]
    assert not found


# --- 3. and 6. sizes and values checked before they cost anything -----------------------------


def test_a_micro_batch_larger_than_the_data_uses_each_row_once_and_says_so(tmp_path, capsys):
    # Before, rows were repeated to fill the micro-batch: 60000 of them took all memory.
    run_dir = run(cfg.validate(make_config(tmp_path, micro_batch_size=60000, max_steps=1)))
    err = capsys.readouterr().err
    assert "warning: micro_batch_size 60000 is more than the 24 training rows; using 24" in err
    assert "batch      24 rows x 1 accumulation x 1 process(es) = 24 rows" in err
    assert (run_dir / "final" / "adapter_model.safetensors").is_file()


def test_the_issue_s_values_are_config_errors_before_anything_loads(tmp_path):
    data = make_config(tmp_path)["data"]["train"][0]["path"]
    cases = [
        (["--optim.betas", "[2,-1]"], "optim.betas[0]: Input should be less than 1"),
        (["--optim.lr", ".inf"], "optim.lr: Input should be a finite number"),
        (["--lora", "5", "--lora.r", "8"], "lora is already set to 5"),
        (["--lora.r", "[1,"], "lora.r: Input should be a valid integer"),
        (["--micro_batch_size", "100000000000"], "micro_batch_size: Input should be less than or equal to 65536"),
    ]
    for flags, expected in cases:
        result = _cli(["train", "--data", data, "--model", "not-loaded", "--output_dir", str(tmp_path / "r"), *flags])
        assert result.returncode == 3, (flags, result.stderr)
        assert expected in result.stderr, (flags, result.stderr)
        assert "Traceback" not in result.stderr and "internal error" not in result.stderr


# --- 4. a diverging run stops and saves nothing -----------------------------------------------


def test_a_diverging_run_skips_non_finite_steps_then_stops_without_a_final_adapter(tmp_path, capsys):
    config = cfg.validate(make_config(tmp_path, max_steps=20, save_every=1, **{"optim.lr": 1e30, "optim.grad_clip": None}))
    with pytest.raises(RunError, match="training diverged: the loss nan was not finite at 3 steps in a row"):
        run(config)
    run_dir = Path(config.output_dir)
    assert "skipped: loss nan is not finite (the weights were not updated)" in capsys.readouterr().err
    assert not (run_dir / "final").exists()
    rows = [json.loads(line, parse_constant=lambda c: pytest.fail(f"{c} in metrics.jsonl")) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if r.get("skipped")] == [r["step"] for r in rows if r["loss"] is None] != []
    assert json.loads((run_dir / "run.json").read_text())["status"] == "failed"
    for folder in checkpoint.complete_checkpoints(run_dir):  # only finite weights were ever saved
        assert all(torch.isfinite(t).all() for t in load_file(folder / "adapter_model.safetensors").values())


# --- 8. crash debris, damaged checkpoints, permissions ---------------------------------------


@pytest.mark.parametrize("moment", ["checkpoint", "final"])
def test_a_kill_half_way_through_a_write_leaves_debris_that_the_resume_removes(tmp_path, moment):
    config = make_config(tmp_path, max_steps=4, save_every=2, **{"data.eval_split": 0.2})
    whole = write_config(tmp_path / "whole.yaml", {**config, "output_dir": str(tmp_path / "whole")})
    killed = write_config(tmp_path / "killed.yaml", config)
    assert _cli(["train", str(whole)]).returncode == 0
    crash = _cli(["train", str(killed)], {checkpoint.FAULT_WRITE_ENV: moment})
    assert crash.returncode == -9
    run_dir = tmp_path / "run"
    debris = _debris(run_dir)
    assert debris and all(name.endswith(".tmp") for name in debris)
    assert not (run_dir / "final").exists()
    resumed = _cli(["train", "--resume", str(run_dir)])
    assert resumed.returncode == 0, resumed.stderr
    assert "left behind by an interrupted run" in resumed.stderr
    assert _debris(run_dir) == []
    _same_adapter(tmp_path / "whole" / "final", run_dir / "final")


@pytest.mark.parametrize("damage", ["truncate the adapter", "remove the optimizer state", "empty the rng state"])
def test_a_damaged_newest_checkpoint_falls_back_to_the_one_before(tmp_path, damage, capsys):
    run_dir = run(cfg.validate(make_config(tmp_path, max_steps=4, save_every=2)))
    newest = checkpoint.step_dir(run_dir, 4)
    if damage == "truncate the adapter":
        adapter = newest / "adapter_model.safetensors"
        adapter.write_bytes(adapter.read_bytes()[: adapter.stat().st_size // 2])
    elif damage == "remove the optimizer state":
        (newest / "optimizer.safetensors").unlink()
    else:
        (newest / "rng.json").write_text("")
    capsys.readouterr()
    run(resume_config(run_dir, []), resume=run_dir)
    err = capsys.readouterr().err
    assert "resuming from step-000002, the newest usable checkpoint; passed over step-000004" in err
    assert "resumed at step 2" in err


def test_a_missing_data_file_on_resume_names_the_file(tmp_path):
    config = make_config(tmp_path, max_steps=2, save_every=1)
    run_dir = run(cfg.validate(config))
    Path(config["data"]["train"][0]["path"]).unlink()
    with pytest.raises(DataError, match=r"the run's data file .*data.jsonl is gone"):
        resume_config(run_dir, [])


def test_every_file_a_run_writes_has_the_same_mode(tmp_path):
    run_dir = run(cfg.validate(make_config(tmp_path, max_steps=2, save_every=2)))
    modes = {p.relative_to(run_dir).as_posix(): oct(p.stat().st_mode & 0o777) for p in run_dir.rglob("*") if p.is_file()}
    assert "final/adapter_model.safetensors" in modes
    assert set(modes.values()) == {"0o644"}, modes


# --- a full or a read-only disk ---------------------------------------------------------------


def _own_mount(folder: Path) -> list[str] | None:
    """A command prefix that runs a command with a fresh tmpfs on ``folder`` in its own user and
    mount namespace (works without being root, and as root in a container), or None."""
    if not shutil.which("unshare"):
        return None
    probe = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", f"mount -t tmpfs tmpfs {folder}"],
                           capture_output=True)
    return ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", '"$@"', "sh"] if probe.returncode == 0 else None


def _script(tmp_path: Path, body: str) -> subprocess.CompletedProcess:
    """Run a shell script in a namespace of its own, where ``mount`` reaches only this test."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if _own_mount(disk) is None:
        pytest.skip("cannot mount a tmpfs in a user namespace here (unshare not allowed)")
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "DISK": str(disk), "OJT": f"{sys.executable} -m onthejob"}
    return subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", body], env=env,
                          capture_output=True, text=True, timeout=600)


def test_a_full_disk_is_one_line_naming_the_path_and_the_run_resumes_once_there_is_room(tmp_path):
    config = write_config(tmp_path / "c.yaml", make_config(tmp_path, max_steps=4, save_every=2, output_dir="DISK/run"))
    config.write_text(config.read_text().replace("DISK", str(tmp_path / "disk")))
    out = tmp_path / "out"
    out.mkdir()
    result = _script(tmp_path, f"""
        mount -t tmpfs -o size=160k tmpfs "$DISK" || exit 99
        $OJT train {config} >{out}/full.out 2>{out}/full.err; echo $? >{out}/full.rc
        cp -r "$DISK/run" {out}/after-full
        mount -o remount,size=64m "$DISK"
        $OJT train --resume "$DISK/run" >{out}/room.out 2>{out}/room.err; echo $? >{out}/room.rc
        cp -r "$DISK/run" {out}/after-room
    """)
    assert result.returncode == 0, result.stderr
    full_err = (out / "full.err").read_text()
    assert (out / "full.rc").read_text().strip() == "1", full_err
    line = _one_line_error(subprocess.CompletedProcess([], 1, "", full_err))
    assert "No space left on device" in line and str(tmp_path / "disk" / "run") in line, line
    info = json.loads((out / "after-full" / "run.json").read_text())
    assert info["status"] == "failed" and "No space left on device" in info["error"]
    assert (out / "room.rc").read_text().strip() == "0", (out / "room.err").read_text()
    assert (out / "after-room" / "final" / "adapter_model.safetensors").is_file()
    assert _debris(out / "after-room") == []


def test_a_read_only_output_folder_is_refused_before_the_model_loads(tmp_path):
    config = make_config(tmp_path, output_dir=str(tmp_path / "disk" / "run"))
    path = write_config(tmp_path / "c.yaml", {**config, "model": "never-loaded"})
    result = _script(tmp_path, f"""
        mount -t tmpfs -o ro tmpfs "$DISK" || exit 99
        $OJT train {path}
    """)
    assert result.returncode == 5, result.stderr
    line = _one_line_error(result)
    assert f"cannot write to output_dir {tmp_path / 'disk' / 'run'}: Read-only file system" in line
