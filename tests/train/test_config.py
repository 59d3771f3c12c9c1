from pathlib import Path

import pytest
import yaml

from onthejob.errors import ConfigError
from onthejob.train import config as cfg

CONFIGS = sorted(p for p in (Path(__file__).resolve().parents[2] / "configs").glob("*.yaml")
                 if not p.stem.endswith(("-serve", "-compare")))  # other stages: tests/test_configs.py


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_shipped_config_validates(path):
    config = cfg.load(path)
    for ds in config.data.train:
        assert (path.parents[1] / ds.path).is_file(), f"{path.name} names a missing file {ds.path}"


def test_shipped_configs_exist():
    assert CONFIGS, "configs/ must ship at least one config"


def test_all_problems_are_reported_at_once_with_dotted_paths():
    raw = {
        "data": {"train": [{"path": "x.jsonl", "wieght": 2}], "max_seq_len": 3},
        "optim": {"lr": -1, "sheduler": "cosine"},
        "methd": "lora",
    }
    with pytest.raises(ConfigError) as e:
        cfg.validate(raw, source="my.yaml")
    text = str(e.value)
    assert text.startswith("my.yaml: 5 problem(s)")
    for line in (
        "data.train[0].wieght: unknown key",
        "data.max_seq_len: Input should be greater than or equal to 16 (got 3)",
        "optim.lr: Input should be greater than 0 (got -1)",
        "optim.sheduler: unknown key",
        "methd: unknown key",
    ):
        assert line in text


def test_missing_data_and_bad_choices_are_named():
    with pytest.raises(ConfigError) as e:
        cfg.validate({"method": "qlora"})
    text = str(e.value)
    assert "data: required" in text
    assert "method: Input should be 'lora', 'ia3' or 'full' (got 'qlora')" in text


def test_overrides_are_typed_and_nested(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("data:\n  train:\n    - path: a.jsonl\n")
    config = cfg.load(path, ["--optim.lr", "1e-4", "--lora.r=8", "--data.pack", "false"])
    assert config.optim.lr == 1e-4 and config.lora.r == 8 and config.data.pack is False


def test_override_without_value_and_bad_yaml_are_one_line_errors(tmp_path):
    with pytest.raises(ConfigError, match="--optim.lr has no value"):
        cfg.parse_overrides(["--optim.lr"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("data:\n  train: [\n")
    with pytest.raises(ConfigError, match=r"bad.yaml:\d+: not valid YAML"):
        cfg.load(bad)


def test_eval_file_and_split_are_exclusive():
    with pytest.raises(ConfigError, match="give data.eval or data.eval_split, not both"):
        cfg.validate({"data": {"train": [{"path": "a"}], "eval": "b", "eval_split": 0.1}})


def test_a_method_carries_only_its_own_section():
    lora = cfg.validate({"data": {"train": [{"path": "a"}]}})
    saved = yaml.safe_load(cfg.to_yaml(lora))
    assert saved["lora"]["r"] == 16 and "ia3" not in saved  # a LoRA run's config has no IA3 block
    ia3 = cfg.validate({"data": {"train": [{"path": "a"}]}, "method": "ia3"})
    assert ia3.lora is None and "lora" not in yaml.safe_load(cfg.to_yaml(ia3))
    # run folders saved before this carried every section; one holding only defaults still loads
    old = cfg.validate({"data": {"train": [{"path": "a"}]}, "ia3": {"target_modules": None, "feedforward_modules": None}})
    assert old.ia3 is None and old.lora is not None
    assert cfg.validate(yaml.safe_load(cfg.to_yaml(lora))) == lora  # what is saved loads back the same


def test_another_methods_settings_are_a_cross_field_error():
    with pytest.raises(ConfigError) as e:
        cfg.validate({"data": {"train": [{"path": "a"}]}, "method": "ia3", "lora": {"r": 8}})
    assert e.value.problems == ["lora, method: lora settings are given but method is 'ia3'; drop the lora section or set method: lora"]


def test_sizes_have_bounds():
    with pytest.raises(ConfigError) as e:
        cfg.validate({"data": {"train": [{"path": "a", "weight": 1e11}], "max_seq_len": 10**11},
                      "micro_batch_size": 10**11, "epochs": 1e11, "lora": {"r": 10**11}})
    assert [p.split(":")[0] for p in e.value.problems] == [
        "data.train[0].weight", "data.max_seq_len", "lora.r", "epochs", "micro_batch_size"]
    assert all("Input should be less than or equal to" in p for p in e.value.problems)
