"""Every shipped config validates against its stage's config (loading one has no side effects)."""

from pathlib import Path

import pytest

from onthejob import config as cfg
from onthejob.eval.config import CompareConfig
from onthejob.serve.config import ServeConfig
from onthejob.train.config import TrainConfig

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))
STAGES = {"-serve": ServeConfig, "-compare": CompareConfig}


def stage(path: Path):
    return next((model for suffix, model in STAGES.items() if path.stem.endswith(suffix)), TrainConfig)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_shipped_config_validates(path):
    config = cfg.load(stage(path), path)
    if isinstance(config, CompareConfig):  # the questions it names ship too
        assert (path.parents[1] / config.data).is_file()


def test_every_stage_ships_an_example():
    assert {stage(p) for p in CONFIGS} == {TrainConfig, ServeConfig, CompareConfig}


def test_the_tool_example_data_is_what_its_script_writes_and_checks_clean(tmp_path):
    import importlib.util

    from onthejob.data.check import check_file

    folder = Path(__file__).resolve().parents[1] / "examples" / "tools"
    spec = importlib.util.spec_from_file_location("make_data", folder / "make_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(tmp_path)
    for name in ("train.jsonl", "eval.jsonl"):
        assert (tmp_path / name).read_bytes() == (folder / name).read_bytes(), f"rerun examples/tools/make_data.py"
        report = check_file(folder / name)
        assert not report.errors and all(p.code == "tools_inlined" for p in report.warnings), report.warnings
