"""compare: four arms over the same questions with a tiny model, a tiny adapter and a fake retriever."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from onthejob.config import validate
from onthejob.errors import ConfigError
from onthejob.eval.compare import compare, pairs
from onthejob.eval.config import ARMS, CompareConfig
from onthejob.generate.sampling import SamplingParams
from tests.runs import make_run, save_base

QUESTIONS = ["What is the weather in Paris?", "How can I help you today?", "Is my printer broken?", "What is the answer?"]


class FakeRetriever:
    """Puts one passage before each question; the last question is not covered."""

    collection = "fake"

    def __init__(self):
        self.asked, self.closed = 0, False

    def prepare(self, messages):
        self.asked += 1
        if "answer" in messages[-1]["content"]:
            return None, []
        wrapped = [*messages[:-1], {"role": "user", "content": "[1] It is sunny.\n\nQuestion: " + messages[-1]["content"]}]
        return wrapped, [{"n": 1, "doc": "doc.md", "page": None, "heading": None, "text": "It is sunny."}]

    def close(self):
        self.closed = True


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("cmp")
    base = save_base(root / "base")
    run = make_run(root, base)
    data = root / "eval.jsonl"
    with open(data, "w") as f:
        for i, q in enumerate(QUESTIONS):
            record = {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": f"It is {i}."}],
                      "facts": ["It"]}
            f.write(json.dumps(record) + "\n")
    train = root / "train.jsonl"  # repeats question 2: a leak
    train.write_text(json.dumps({"messages": [{"role": "user", "content": QUESTIONS[1]},
                                              {"role": "assistant", "content": "x"}]}) + "\n")
    (run / "config.yaml").write_text(yaml.safe_dump({"data": {"train": [{"path": str(train)}]}}))
    return root, run, data


def run_compare(setup, out, retriever=None, arms=("prompt", "rag", "ft", "ft+rag")):
    _root, run, data = setup
    config = CompareConfig(data=str(data), arms=list(arms), run=str(run), rag={"collection": "fake"}, out=str(out),
                           sampling=SamplingParams(max_new_tokens=6), batch_size=4)
    return compare(config, retriever=retriever or FakeRetriever())


def test_four_arms_same_questions_and_reports(setup, tmp_path):
    retriever = FakeRetriever()
    result = run_compare(setup, tmp_path / "out", retriever)
    assert list(result.evals) == ["prompt", "rag", "ft", "ft+rag"]
    for arm, e in result.evals.items():
        assert [r["line"] for r in e.per_example] == [1, 2, 3, 4]
        assert e.label == ARMS[arm]
    assert retriever.asked == 8 and not retriever.closed  # the caller's retriever stays open
    assert result.evals["rag"].per_example[3]["retrieved"] is False  # nothing found: answered without the model
    ft, prompt = result.evals["ft"].per_example, result.evals["prompt"].per_example
    assert [r["answer"] for r in ft] != [r["answer"] for r in prompt]  # the adapter is used
    assert result.primary == "facts_recall"
    assert [(c["a"], c["b"]) for c in result.comparisons] == [("rag", "prompt"), ("ft", "prompt"), ("ft+rag", "prompt"), ("ft+rag", "ft")]
    headline, *lines = result.verdict.splitlines()
    assert "on facts_recall over 4 questions" in headline and "With only 4 questions the intervals are wide" in headline
    assert re.search(r"^RAG against prompting: \d vs \d of 4 correct; facts_recall [+-]\d\.\d\d, (not )?significant "
                     r"\(95% CI [+-]\d\.\d\d to [+-]\d\.\d\d, 4 questions\)\.$", lines[0])
    assert [leak.eval_line for leak in result.leaks] == [2]
    assert all(c["n"] == 3 for c in result.clean.values())  # every arm scored again without question 2
    page = result.paths["html"].read_text()
    assert all(ARMS[a] in page for a in ARMS) and "Without the leaked questions" in page


def test_quality_figures_repeat(setup, tmp_path):
    a = run_compare(setup, tmp_path / "a", arms=("prompt", "ft+rag"))
    b = run_compare(setup, tmp_path / "b", arms=("prompt", "ft+rag"))
    for arm in a.evals:
        strip = [{k: v for k, v in r.items() if k not in ("latency_s", "tokens_per_s")} for r in a.evals[arm].per_example]
        assert strip == [{k: v for k, v in r.items() if k not in ("latency_s", "tokens_per_s")} for r in b.evals[arm].per_example]
    assert a.comparisons == b.comparisons and a.verdict == b.verdict


def test_missing_inputs_name_the_flag():
    with pytest.raises(ConfigError, match="--run RUN"):
        validate(CompareConfig, {"data": "e.jsonl", "arms": "prompt,ft"})
    with pytest.raises(ConfigError) as e:
        validate(CompareConfig, {"data": "e.jsonl", "arms": ["rag", "ft+rag"]})
    assert "--rag NAME" in str(e.value) and "--run RUN" in str(e.value)
    with pytest.raises(ConfigError, match="choose from prompt, few-shot, rag, ft, ft\\+rag"):
        validate(CompareConfig, {"data": "e.jsonl", "arms": "prompt,lora", "run": "r"})
    assert validate(CompareConfig, {"data": "e.jsonl", "arms": "prompt, ft,ft", "run": "r"}).arms == ["prompt", "ft"]


def test_pairs():
    assert pairs(["prompt", "few-shot", "ft", "ft+rag"]) == [("few-shot", "prompt"), ("ft", "prompt"), ("ft+rag", "prompt"), ("ft+rag", "ft")]
    assert pairs(["ft", "ft+rag"]) == [("ft+rag", "ft")]


def test_few_shot_uncovered_questions_judge_and_general_probe(setup, tmp_path, monkeypatch):
    """The five-arm machinery on the tiny model: few-shot shows training examples, the uncovered
    file adds questions that only abstention scores, the judge's grades sit beside the facts, and
    the general probe runs once per model."""
    from tests.eval.test_judge import FakeJudge, endpoint  # noqa: F401 - the fake judge server

    root, run, data = setup
    uncovered = tmp_path / "uncovered.jsonl"
    uncovered.write_text(json.dumps({"messages": [{"role": "user", "content": "Can I bring my dog?"},
                                                  {"role": "assistant", "content": "Not covered."}]}) + "\n")
    from http.server import HTTPServer
    import threading

    FakeJudge.requests, FakeJudge.replies = [], ['{"grade": "correct", "reason": "fine"}'] * 15
    server = HTTPServer(("127.0.0.1", 0), FakeJudge)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    shown = []
    from onthejob.eval import fewshot

    real = fewshot.Shots.demonstrate
    monkeypatch.setattr(fewshot.Shots, "demonstrate", lambda self, m: shown.append(real(self, m)) or shown[-1])
    try:
        config = CompareConfig(data=str(data), arms=["prompt", "few-shot", "rag"], run=str(run), rag={"collection": "fake"},
                               out=str(tmp_path / "out"), uncovered=str(uncovered), sampling=SamplingParams(max_new_tokens=4),
                               judge={"url": f"http://127.0.0.1:{server.server_address[1]}/v1", "model": "j"}, batch_size=8)
        result = compare(config, retriever=FakeRetriever())
    finally:
        server.shutdown()
        server.server_close()
    assert list(result.evals) == ["prompt", "few-shot", "rag"]
    # few-shot: the one training example (question 2's copy) before every question
    assert len(shown) == 5 and all(m[0] == {"role": "user", "content": QUESTIONS[1]} for m in shown)
    rows = result.evals["rag"].per_example
    assert [r["line"] for r in rows] == [1, 2, 3, 4, 5] and rows[4]["covered"] is False
    assert all(r["abstained"] is None for r in rows[:4]) and rows[4]["abstained"] in (0.0, 1.0)
    assert result.n == 4  # the uncovered question has no facts: not in the primary metric
    assert len(FakeJudge.requests) == 15 and all(r["judge"] == "correct" for r in rows)
    report = json.loads(result.paths["json"].read_text())
    assert "correct: says what the reference says" in report["judge"]["rubric"]
    assert set(report["judge"]["agreement"]) == {"prompting", "few-shot", "RAG"}
    assert "judge and facts agree on" in result.verdict
    assert report["general"]["n"] == 100 and list(report["general"]["models"]) == ["base (general)"]
    assert result.verdict.splitlines()[-1].startswith("general skills: base passes ")


def test_shared_batches_answer_as_one_question_at_a_time(setup, tmp_path):
    """All five arms in two shared batches (the base model's arms ride on the run's model with
    its adapter off per row) give the greedy answers each arm gives one question at a time,
    with the base model loaded on its own."""
    from onthejob.eval.compare import default_base, model_groups
    from onthejob.eval.data import read_eval
    from onthejob.eval.fewshot import Shots
    from onthejob.eval.run import evaluate

    root, run, _ = setup
    words = ["leave", "printer", "salary", "holiday", "laptop", "badge", "parking", "travel", "pension", "sick"]
    data = tmp_path / "twenty.jsonl"
    with open(data, "w") as f:
        for i in range(20):
            q = f"Question {i}: what about the {words[i % 10]} rule" + " and its exceptions" * (i % 4) + "?"
            f.write(json.dumps({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": "It is."}],
                                "facts": ["It"]}) + "\n")
    arms = ["prompt", "few-shot", "rag", "ft", "ft+rag"]
    config = CompareConfig(data=str(data), arms=arms, run=str(run), rag={"collection": "fake"}, out=str(tmp_path / "out"),
                           sampling=SamplingParams(max_new_tokens=8), batch_size=8, general="none",
                           few_shot={"data": str(root / "train.jsonl")})
    result = compare(config, retriever=FakeRetriever())
    base = default_base(str(run))
    from onthejob.eval.compare import Arm

    groups = model_groups([Arm(a, ARMS[a], str(run) if a.startswith("ft") else base, a.endswith("rag")) for a in arms], str(run))
    assert len(groups) == 1 and [b for _, b in groups[0][1]] == [True, True, True, False, False]  # one model, one batch
    assert result.evals["prompt"].extra["batched_with"] == ["few-shot", "RAG", "fine-tuning", "fine-tuning + RAG"]
    items = read_eval(data)
    shots = Shots.from_files([str(root / "train.jsonl")], k=config.few_shot.k)
    for arm in arms:
        model = str(run) if arm.startswith("ft") else base
        alone = [evaluate(model, [item], params=config.sampling, batch_size=1, with_loss=False, progress=False,
                          rag=FakeRetriever() if arm.endswith("rag") else None, shots=shots if arm == "few-shot" else None
                          ).per_example[0]["answer"] for item in items]
        assert [r["answer"] for r in result.evals[arm].per_example] == alone, arm
    assert len({r["answer"] for r in result.evals["ft"].per_example} | {r["answer"] for r in result.evals["prompt"].per_example}) > 2
    # the reference loss of the base arms is the base model's, measured with the adapter off
    plain = evaluate(base, items, params=SamplingParams(max_new_tokens=1), progress=False)
    assert result.evals["prompt"].loss == pytest.approx(plain.loss, rel=1e-5)
    assert result.evals["ft"].loss != pytest.approx(plain.loss, rel=1e-3)


def test_a_run_trained_with_passages_laid_out_otherwise_is_warned_about(tmp_path, capsys):
    from onthejob.eval.compare import rag_as_trained
    from onthejob.rag.config import RetrievalConfig

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump({"data": {"rag": {"collection": "hr", "k": 5, "sentences": 3}}}))
    rag_as_trained(run, RetrievalConfig(collection="hr", k=5, sentences=3))
    assert "warning" not in capsys.readouterr().err
    rag_as_trained(run, RetrievalConfig(collection="hr", k=3))
    err = capsys.readouterr().err
    assert "trained with passages laid out otherwise" in err and "k 5 in training, 3 here; sentences 3 in training, None here" in err


def test_scores_on_the_questions_that_chose_final_are_called_optimistic(tmp_path, capsys):
    from onthejob.eval.compare import chose_final

    run, data = tmp_path / "run", tmp_path / "eval.jsonl"
    run.mkdir()
    data.write_text("")
    (run / "config.yaml").write_text(yaml.safe_dump({"data": {"eval": str(data)}}))
    (run / "run.json").write_text(json.dumps({"selected": {"step": 50, "last_step": 105}}))
    chose_final(run, tmp_path / "other.jsonl")
    assert "warning" not in capsys.readouterr().err
    chose_final(run, data)
    assert "chose" in (err := capsys.readouterr().err) and "step 50 of 105" in err and "optimistic" in err
    (run / "run.json").write_text(json.dumps({"selected": {"step": 105, "last_step": 105}}))  # the last step: no choice made
    chose_final(run, data)
    assert "warning" not in capsys.readouterr().err
