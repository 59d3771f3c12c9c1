"""ojt eval / compare / data leakage: argparse wiring, the demo's summary line, the leakage output."""

from __future__ import annotations

import argparse
import json

import pytest

from onthejob import cli
from onthejob.eval import cli as eval_cli
from tests.serve.runs import make_run, save_base


def parser() -> argparse.ArgumentParser:
    """ojt's parser with the eval commands; before cli.py calls register, swap the old ``eval`` out."""
    p = cli.build_parser()
    sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
    if "compare" not in sub.choices:
        sub.choices.pop("eval", None)
        sub._choices_actions = [a for a in sub._choices_actions if a.dest != "eval"]
        eval_cli.register(sub)
    return p


def test_eval_arguments():
    args = parser().parse_args(["eval", "runs/x", "--data", "e.jsonl", "--vs-base", "--general", "a.json", "--exclude-leaks",
                                "--out", "d", "--max-new-tokens", "5", "--rag", "hr", "--judge-url", "http://j/v1",
                                "--judge-model", "m"])
    assert args.func is eval_cli.cmd_eval
    assert (args.model, args.data, args.vs_base, args.general, args.exclude_leaks, args.out, args.max_new_tokens) == (
        "runs/x", "e.jsonl", True, "a.json", True, "d", 5)
    assert (args.rag, args.rag_k, args.judge_url, args.judge_model) == ("hr", 5, "http://j/v1", "m")


def test_compare_arguments():
    args = parser().parse_args(["compare", "--data", "e.jsonl", "--arms", "prompt,ft", "--run", "r", "--system", "S"])
    assert args.func is eval_cli.cmd_compare
    assert (args.arms, args.run, args.rag, args.system, args.out) == ("prompt,ft", "r", None, "S", None)
    assert parser().parse_args(["compare", "--data", "e.jsonl"]).arms == "prompt,rag,ft,ft+rag"


def test_compare_missing_run_is_one_line(tmp_path, capsys):
    data = tmp_path / "e.jsonl"
    data.write_text(json.dumps({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}) + "\n")
    args = parser().parse_args(["compare", "--data", str(data), "--arms", "prompt,ft"])
    args.debug = False
    with pytest.raises(Exception) as e:
        args.func(args)
    assert "--run RUN" in str(e.value) and e.value.exit_code == 3


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
