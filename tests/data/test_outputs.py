"""``ojt data split`` and ``ojt data convert`` never destroy their input: an output that is an input,
another output or a directory is refused before anything is written, and files are written whole
or not at all (issue #13). Run in-process through ``cli.main``, as tests/test_cli.py does."""

from __future__ import annotations

import json
import os

import pytest

from onthejob.data.readers import convert
from onthejob.errors import DataError

from tests.test_cli import one_line, run

RECORDS = [{"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}]}
           for i in range(10)]


@pytest.fixture
def data(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in RECORDS))
    return path


def split(data, train, held, fraction="0.2"):
    return ["data", "split", str(data), "--eval-split", fraction, "--train-out", str(train), "--eval-out", str(held)]


def test_split_writes_both_files(capsys, data, tmp_path):
    code, err, _ = run(capsys, split(data, tmp_path / "t.jsonl", tmp_path / "e.jsonl"))
    assert code == 0, err
    train, held = ((tmp_path / n).read_text().splitlines() for n in ("t.jsonl", "e.jsonl"))
    assert len(train) == 8 and len(held) == 2


def test_split_refuses_the_same_file_for_train_and_eval(capsys, data, tmp_path):
    same = tmp_path / "same.jsonl"
    one_line(capsys, split(data, same, same), "data", "--train-out", "--eval-out", "same file")
    assert not same.exists()


@pytest.mark.parametrize("flag", ["--train-out", "--eval-out"])
def test_split_refuses_to_overwrite_its_input(capsys, data, tmp_path, flag):
    before = data.read_text()
    other = tmp_path / "other.jsonl"
    argv = split(data, data, other) if flag == "--train-out" else split(data, other, data)
    one_line(capsys, argv, "data", flag, "is the input file")
    assert data.read_text() == before and not other.exists()


def test_an_output_that_reaches_the_input_another_way_is_refused(capsys, data, tmp_path, monkeypatch):
    link = tmp_path / "link.jsonl"
    link.symlink_to(data)
    hard = tmp_path / "hard.jsonl"
    os.link(data, hard)
    monkeypatch.chdir(tmp_path)
    before = data.read_text()
    for out in (link, hard, "./d.jsonl", tmp_path / "sub" / ".." / "d.jsonl"):
        one_line(capsys, split(data, out, tmp_path / "e.jsonl"), "data", "is the input file")
        one_line(capsys, ["data", "convert", str(data), "--out", str(out)], "data", "is the input file")
    assert data.read_text() == before and not (tmp_path / "e.jsonl").exists()


def test_two_outputs_that_are_one_file_through_a_symlink_are_refused(capsys, data, tmp_path):
    (tmp_path / "real.jsonl").write_text("")
    (tmp_path / "alias.jsonl").symlink_to(tmp_path / "real.jsonl")
    one_line(capsys, split(data, tmp_path / "real.jsonl", tmp_path / "alias.jsonl"), "data", "same file")


@pytest.mark.parametrize("fraction", ["1.5", "1", "-0.1", "nan", "inf"])
def test_split_fraction_outside_0_1_is_a_config_error(capsys, data, tmp_path, fraction):
    one_line(capsys, split(data, tmp_path / "t.jsonl", tmp_path / "e.jsonl", fraction), "config",
             f"--eval-split {fraction}")


def test_an_output_that_is_a_directory_is_one_line(capsys, data, tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    one_line(capsys, ["data", "convert", str(data), "--out", str(folder)], "data", str(folder), "is a directory")
    one_line(capsys, split(data, folder, tmp_path / "e.jsonl"), "data", "--train-out", "is a directory")
    assert list(folder.iterdir()) == [] and not (tmp_path / "e.jsonl").exists()


def test_an_output_under_a_file_is_one_line(capsys, data, tmp_path):
    one_line(capsys, ["data", "convert", str(data), "--out", str(data / "x.jsonl")], "data", "is a file, not a folder")


def test_convert_refuses_its_input_as_output(data):
    before = data.read_text()
    with pytest.raises(DataError, match="--out .* is the input file"):
        convert(data, data)
    assert data.read_text() == before


def test_a_failed_split_leaves_both_outputs_as_they_were(capsys, data, tmp_path, monkeypatch):
    train, held = tmp_path / "t.jsonl", tmp_path / "e.jsonl"
    train.write_text("old train\n")
    held.write_text("old eval\n")
    from onthejob.data import split as split_module

    real = split_module.split_examples

    class Broken:
        def to_record(self):
            raise RuntimeError("disk full")

    def fail_midway(*args, **kwargs):
        train_set, eval_set = real(*args, **kwargs)
        return train_set, [*eval_set, Broken()]  # the eval file fails after the train file is done

    monkeypatch.setattr(split_module, "split_examples", fail_midway)
    with pytest.raises(RuntimeError, match="disk full"):
        split_module.split_file(data, train_out=train, eval_out=held, eval_fraction=0.2, seed=0)
    assert train.read_text() == "old train\n" and held.read_text() == "old eval\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.jsonl", "e.jsonl", "t.jsonl"]  # no temp files left
