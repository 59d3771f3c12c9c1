"""Every command's error path, run in-process through ``cli.main``: one line on stderr naming what
is wrong and how to fix it (a config error: a head line, then one line per problem), the
documented exit code, no traceback; ``--debug`` shows the traceback instead."""

from __future__ import annotations

import json

import pytest

from onthejob import cli
from onthejob.errors import ConfigError

EXIT = {"config": 3, "model": 4, "run": 5, "rag": 6, "data": 7}


def run(capsys, argv: list[str]) -> tuple[int, list[str], str]:
    """(exit code, stderr lines, stdout) of ``ojt ARGV``."""
    code = cli.main(argv)
    captured = capsys.readouterr()
    return code, captured.err.splitlines(), captured.out


def one_line(capsys, argv: list[str], kind: str, *phrases: str) -> str:
    """Run ``argv``; assert it fails with ``kind``'s exit code and one ``error:`` line holding every phrase."""
    code, err, _ = run(capsys, argv)
    errors = [line for line in err if line.startswith("error:")]
    assert code == EXIT[kind], err
    assert len(errors) == 1 and errors[0] == err[-1], err
    assert not any("Traceback" in line for line in err)
    for phrase in phrases:
        assert phrase in errors[0], errors[0]
    return errors[0]


@pytest.fixture
def chat_file(tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_text(json.dumps({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}) + "\n")
    return path


# --- data ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", [["data", "check", "--no-stats"], ["data", "convert", "--out", "x.jsonl"],
                                     ["data", "preview"], ["data", "split", "--eval-split", "0.1", "--train-out", "a",
                                                           "--eval-out", "b"]])
def test_data_commands_name_the_missing_file(capsys, tmp_path, command):
    missing = tmp_path / "nope.jsonl"
    *head, = command[:2]
    one_line(capsys, [*head, str(missing), *command[2:]], "data", str(missing))


def test_data_check_of_a_bad_file_exits_with_the_data_code(capsys, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": [\n')
    code, _, out = run(capsys, ["data", "check", str(bad), "--no-stats"])
    assert code == EXIT["data"] and f"{bad}:1" in out


def test_data_split_fraction_out_of_range_is_a_config_error(capsys, chat_file):
    one_line(capsys, ["data", "split", str(chat_file), "--eval-split", "1.5", "--train-out", "a", "--eval-out", "b"],
             "config", "--eval-split 1.5", "below 1")


def test_data_leakage_names_the_missing_file(capsys, tmp_path, chat_file):
    one_line(capsys, ["data", "leakage", str(tmp_path / "train.jsonl"), str(chat_file)], "data", "train.jsonl")


# --- train and plan --------------------------------------------------------------------------------


@pytest.mark.parametrize("verb,what", [("train", "nothing to train on"), ("plan", "nothing to plan")])
def test_train_and_plan_without_data(capsys, verb, what):
    one_line(capsys, [verb], "config", what, f"ojt {verb} --data FILE")


def test_a_boolean_flag_stands_alone_before_another_flag(tmp_path):
    """``--gradient_checkpointing --lora.r 8``: no list of flags that take values anywhere."""
    from onthejob import config as cfg

    parser = cli.build_parser()
    argv, unknown = cfg.split_unknown(parser, ["train", "--data", "d.jsonl", "--gradient_checkpointing", "--lora.r", "8"])
    args = parser.parse_args(argv)
    args.unknown_settings = unknown
    config = cli._train_config(args, "train", "nothing")
    assert config.gradient_checkpointing is True and config.lora.r == 8 and config.data.train[0].path == "d.jsonl"


def test_train_config_problems_all_at_once(capsys, tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("data:\n  train:\n    - path: x.jsonl\noptim:\n  learning_rate: 1\nepochs: many\n")
    code, err, _ = run(capsys, ["train", str(path), "--lora.rank", "8"])
    assert code == EXIT["config"]
    assert err[0] == f"error: {path}: 3 problem(s)"
    assert any(line.startswith("  optim.learning_rate: unknown key") and "allowed here: lr, " in line for line in err)
    assert any(line.startswith("  lora.rank: unknown key") for line in err)
    assert any(line.startswith("  epochs: Input should be a valid number") and "(got 'many')" in line for line in err)


def test_cross_field_errors_name_their_fields(capsys, tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("data:\n  train:\n    - path: x.jsonl\n  eval: e.jsonl\n  eval_split: 0.1\nmethod: full\nlora: {r: 8}\n")
    code, err, _ = run(capsys, ["train", str(path)])
    assert code == EXIT["config"]
    assert "  data.eval, data.eval_split: give data.eval or data.eval_split, not both" in err
    assert any(line.startswith("  lora, method: lora settings are given but method is 'full'") for line in err)
    assert not any("(top level)" in line for line in err)


def test_resume_of_a_folder_that_is_no_run(capsys, tmp_path):
    one_line(capsys, ["train", "--resume", str(tmp_path)], "run", "no config.yaml")


# --- generation ------------------------------------------------------------------------------------


def test_chat_without_a_model(capsys):
    one_line(capsys, ["chat"], "config", "name a model or run to chat with")


def test_chat_with_a_server_and_local_retrieval_is_refused(capsys):
    one_line(capsys, ["chat", "--url", "http://127.0.0.1:9/v1", "--rag", "hr"], "config", "ojt serve --rag NAME=hr")


def test_generate_needs_input_and_out(capsys):
    code, err, _ = run(capsys, ["generate", "some-model"])
    assert code == EXIT["config"] and err[0] == "error: command line: 2 problem(s)"
    assert "  input: required" in err and "  out: required" in err


def test_generate_names_a_missing_input(capsys, tmp_path):
    one_line(capsys, ["generate", "some-model", "--input", str(tmp_path / "q.jsonl"), "--out", str(tmp_path / "a.jsonl")],
             "data", "q.jsonl")


def test_bad_sampling_values_are_config_errors(capsys, chat_file, tmp_path):
    code, err, _ = run(capsys, ["generate", "m", "--input", str(chat_file), "--out", str(tmp_path / "a"),
                                "--max-new-tokens", "0", "--top-p", "2"])
    assert code == EXIT["config"]
    assert any(line.startswith("  sampling.max_new_tokens: Input should be greater than or equal to 1") for line in err)
    assert any(line.startswith("  sampling.top_p: Input should be less than or equal to 1") for line in err)


def test_merge_of_an_unknown_model(capsys, tmp_path):
    one_line(capsys, ["merge", str(tmp_path / "nope"), "--out", str(tmp_path / "m")], "model", "nope")


# --- evaluation ------------------------------------------------------------------------------------


def test_eval_needs_data(capsys):
    code, err, _ = run(capsys, ["eval", "runs/x"])
    assert code == EXIT["config"] and "  data: required" in err


def test_compare_names_the_missing_inputs(capsys, chat_file):
    code, err, _ = run(capsys, ["compare", "--data", str(chat_file), "--arms", "rag,ft"])
    assert code == EXIT["config"]
    assert "  arms, run: arms ft and ft+rag need the fine-tuned run: add --run RUN" in err
    assert any(line.startswith("  arms, rag.collection: arms rag and ft+rag need a document collection") for line in err)


def test_a_judge_needs_both_settings(capsys, chat_file):
    code, err, _ = run(capsys, ["eval", "m", "--data", str(chat_file), "--judge-url", "http://j/v1"])
    assert code == EXIT["config"] and any(line.startswith("  judge.url, judge.model: a judge needs both") for line in err)


# --- RAG -------------------------------------------------------------------------------------------


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("ONTHEJOB_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.mark.parametrize("command", [["rag", "query", "nope", "question"], ["rag", "show", "nope"],
                                     ["rag", "delete", "nope"]])
def test_rag_commands_name_the_missing_collection(capsys, home, command):
    one_line(capsys, command, "rag", "nope")


def test_rag_index_of_a_missing_path(capsys, home, tmp_path):
    one_line(capsys, ["rag", "index", str(tmp_path / "docs"), "--collection", "c"], "rag", "docs")


def test_rag_eval_of_a_missing_collection(capsys, home, chat_file):
    one_line(capsys, ["rag", "eval", "nope", "--data", str(chat_file)], "rag", "nope")


def test_rag_list_of_an_unknown_store(capsys):
    one_line(capsys, ["rag", "list", "--store", "ftp://nowhere"], "rag", "ftp://nowhere")


# --- serve -----------------------------------------------------------------------------------------


def test_serve_config_with_two_unknown_keys_and_a_wrong_type(capsys, tmp_path):
    path = tmp_path / "serve.yaml"
    path.write_text("adapters: {support: runs/support}\nmax_bach: 8\nhosts: [a]\nport: eighty\n")
    code, err, _ = run(capsys, ["serve", str(path), "--timeout", "5"])
    assert code == EXIT["config"] and err[0] == f"error: {path}: 3 problem(s)"
    assert any(line.startswith("  max_bach: unknown key; did you mean 'max_batch'?") for line in err)
    assert any(line.startswith("  hosts: unknown key; did you mean 'host'?") for line in err)
    assert any(line.startswith("  port: Input should be a valid integer") and "(got 'eighty')" in line for line in err)


def test_serve_flags_override_the_file_and_bounds_hold(capsys, tmp_path):
    path = tmp_path / "serve.yaml"
    path.write_text("max_batch: 8\n")
    code, err, _ = run(capsys, ["serve", str(path), "--max-batch", "0"])
    assert code == EXIT["config"]
    assert any(line.startswith("  max_batch: Input should be greater than or equal to 1 (got 0)") for line in err)


def test_serve_adapter_pairs_are_checked(capsys):
    with pytest.raises(SystemExit) as e:  # argparse: a malformed flag value is a usage error
        cli.main(["serve", "--adapter", "support"])
    assert e.value.code == 2
    assert "'support' is not NAME=VALUE" in capsys.readouterr().err


# --- the last line of defence ------------------------------------------------------------------------


def test_debug_shows_the_traceback(capsys):
    with pytest.raises(ConfigError, match="nothing to train on"):
        cli.main(["--debug", "train"])


def test_an_internal_error_is_one_line_with_exit_70(capsys, monkeypatch):
    def broken(_args):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(cli, "cmd_train", broken)
    code, err, _ = run(capsys, ["train"])
    assert code == 70 and err == ["internal error: ZeroDivisionError: a bug (rerun with --debug for the traceback)"]


# --- hostile config files and flags --------------------------------------------------------------


# "Billion laughs": nine levels of nine aliases, 387 million values from 400 bytes, under a typed key.
_ALIAS_BOMB = ("a0: &a0 [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]\n" for i in range(1, 9)) + "model: *a8\n").encode()


@pytest.mark.parametrize("content,phrase", [
    (bytes(range(128, 256)) * 8, "not UTF-8 text"),
    (("[" * 100_000 + "]" * 100_000).encode(), "nested too deeply"),
    (b"port: 1\n" + b"# padding\n" * 200_000, "too big for a config file"),
    (b"- a list\n", "the top level must be a mapping"),
    (b"port: [unclosed\n", "not valid YAML"),
    (_ALIAS_BOMB, "its YAML aliases expand to more than 100,000 values"),
    (b"model: &m [*m]\n", "a YAML alias refers to itself"),
])
def test_a_config_file_that_is_no_config_is_one_line(capsys, tmp_path, content, phrase):
    path = tmp_path / "serve.yaml"
    path.write_bytes(content)
    one_line(capsys, ["serve", str(path)], "config", str(path), phrase)


def test_an_unknown_flag_with_a_value_that_is_no_yaml_is_reported_with_its_key(capsys):
    code, err, _ = run(capsys, ["train", "--data", "d.jsonl", "--foo", "[x"])
    assert code == EXIT["config"] and any(line.startswith("  foo: unknown key") for line in err)
