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
