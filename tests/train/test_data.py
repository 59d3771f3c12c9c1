from transformers import AutoTokenizer

from onthejob.train import config as cfg
from onthejob.train.data import prepare
from tests.train.helpers import make_config, make_data


def test_datasets_mix_by_weight_and_eval_split_holds_out(tmp_path):
    config = make_config(tmp_path)
    other = make_data(tmp_path / "other.jsonl", n=10)
    config["data"]["train"] = [{"path": config["data"]["train"][0]["path"], "weight": 2}, {"path": str(other), "weight": 0.5}]
    tok = AutoTokenizer.from_pretrained(config["model"])
    data = prepare(cfg.validate(config), tok)
    assert list(data.counts.values()) == [48, 5]  # 24 examples x 2, 10 x 0.5
    assert data.n_train == 53 and data.n_eval == 0

    config["data"]["eval_split"] = 0.25
    data = prepare(cfg.validate(config), tok)
    assert data.n_eval == 6 + 3  # a quarter of each file (rounded per file) is held out
    assert data.counts == {config["data"]["train"][0]["path"]: 36, str(other): 4}
