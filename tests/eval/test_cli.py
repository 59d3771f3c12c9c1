"""ojt eval / compare / data leakage: argparse wiring, the demo's summary line, the leakage output."""

from __future__ import annotations

import argparse
import json

import pytest

from onthejob import cli
from onthejob.errors import ConfigError
from onthejob.eval import cli as eval_cli
from tests.runs import make_run, save_base


def parser() -> argparse.ArgumentParser:
    return cli.build_parser()


def _config(argv: list[str]):
    """The config an ``ojt eval``/``ojt compare`` command line loads."""
    from onthejob import config as cfg
    from onthejob.eval.config import CompareConfig, EvalConfig

    args = parser().parse_args(argv)
    model = EvalConfig if args.func is eval_cli.cmd_eval else CompareConfig
    return args, cfg.load(model, cfg.config_file(args), cfg.overrides(args, {"model": "model"}))


def test_eval_arguments():
    args, config = _config(["eval", "runs/x", "--data", "e.jsonl", "--vs-base", "--general", "a.json", "--exclude-leaks",
                            "--out", "d", "--max-new-tokens", "5", "--rag", "hr", "--judge-url", "http://j/v1",
                            "--judge-model", "m"])
    assert args.func is eval_cli.cmd_eval
    assert (config.model, config.data, config.vs_base, config.general, config.exclude_leaks, config.out) == (
        "runs/x", "e.jsonl", True, "a.json", True, "d")
    assert config.sampling.max_new_tokens == 5 and config.sampling.seed == 0
    assert (config.rag.collection, config.rag.k, config.judge.url, config.judge.model) == ("hr", 5, "http://j/v1", "m")


def test_compare_arguments_and_config_file(tmp_path):
    args, config = _config(["compare", "--data", "e.jsonl", "--arms", "prompt,ft", "--run", "r", "--system", "S"])
    assert args.func is eval_cli.cmd_compare
    assert (config.arms, config.run, config.rag.collection, config.system, config.out) == (["prompt", "ft"], "r", None, "S", None)
    path = tmp_path / "compare.yaml"
    path.write_text("data: e.jsonl\nrun: r\nrag: {collection: hr, k: 3}\nsampling: {max_new_tokens: 32}\n")
    _, config = _config(["compare", str(path), "--rag-k", "7"])  # a flag overrides the file's key
    assert (config.arms, config.rag.collection, config.rag.k, config.sampling.max_new_tokens) == (
        ["prompt", "few-shot", "rag", "ft", "ft+rag"], "hr", 7, 32)
    _, config = _config(["compare", str(path), "--shots", "t.jsonl", "--shots-k", "2", "--uncovered", "u.jsonl",
                         "--general", "none"])
    assert (config.few_shot.data, config.few_shot.k, config.uncovered, config.general) == ("t.jsonl", 2, "u.jsonl", None)
    assert _config(["compare", str(path)])[1].general == "builtin"  # the probe is on by default


def test_compare_config_problems_are_reported_together(tmp_path):
    path = tmp_path / "compare.yaml"
    path.write_text("data: e.jsonl\nrun: r\narmz: [prompt]\nrag: {collection: hr, kk: 3}\nbatch_size: many\n")
    with pytest.raises(ConfigError) as e:
        _config(["compare", str(path)])
    text = str(e.value)
    assert text.startswith(f"{path}: 3 problem(s)")
    assert "armz: unknown key; did you mean 'arms'?" in text
    assert "rag.kk: unknown key" in text and "allowed here:" in text
    assert "batch_size: Input should be a valid integer" in text and "(got 'many')" in text


def test_compare_missing_run_is_one_line(tmp_path, capsys):
    data = tmp_path / "e.jsonl"
    data.write_text(json.dumps({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}) + "\n")
    assert cli.main(["compare", "--data", str(data), "--arms", "prompt,ft"]) == 3
    assert capsys.readouterr().err.splitlines() == [
        "error: command line: 1 problem(s)",
        "  arms, run: arms ft and ft+rag need the fine-tuned run: add --run RUN",
    ]


def test_data_leakage_prints_the_leak(tmp_path, capsys):
    question = "How many days of annual leave do full-time staff get each year?"
    train, held = tmp_path / "train.jsonl", tmp_path / "eval.jsonl"
    rows = [question, "Where is the office?"]
    train.write_text("".join(json.dumps({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": "x"}]}) + "\n" for q in rows))
    held.write_text(json.dumps({"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": "25"}]}) + "\n")
    args = parser().parse_args(["data", "leakage", str(train), str(held)])
    assert args.func is eval_cli.cmd_leakage and args.embed is False
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "exact" in out and f"{train}:1" in out


def test_eval_run_prints_the_demo_line(tmp_path, capsys):
    base = save_base(tmp_path / "base")
    run = make_run(tmp_path, base)
    data = tmp_path / "eval.jsonl"
    data.write_text("".join(json.dumps({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": "It is."}],
                                        "facts": ["It"]}) + "\n" for q in ("What is the weather?", "Is it sunny?")))
    args = parser().parse_args(["eval", str(run), "--data", str(data), "--max-new-tokens", "4"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "fact match on 2 held-out questions: base " in out and "%, tuned " in out
    assert "answers that ended by themselves (end-of-turn): base" in out
    assert (run / "eval" / "report.html").is_file()  # RUN/eval by default
