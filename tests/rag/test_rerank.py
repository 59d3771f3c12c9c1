"""The cross-encoder reranker, reached from ``ojt rag query --reranker``: a tiny randomly
initialised cross-encoder built in the test decides the order of the fused candidates."""

from __future__ import annotations

import json
import re

import pytest

from onthejob.errors import RagError
from onthejob.rag.answer import Retriever
from onthejob.rag.config import RetrievalConfig
from tests.rag.helpers import FakeEmbedder, ojt_rag, tiny_cross_encoder

TEXTS = {
    "leave.md": "# Leave\n\nStaff get 18 days of annual leave.\n\n# Sick\n\nSick leave is 14 days.\n",
    "pay.md": "# Pay\n\nSalaries are paid monthly; leave days unused are paid out.\n",
    "travel.md": "# Travel\n\nEconomy class for flights under six hours, days of travel count as work.\n",
    "it.md": "# Laptops\n\nLaptops are refreshed every three years.\n\n# Printers\n\nPrinters sit upstairs.\n",
}
QUESTION = "how many leave days are paid"


@pytest.fixture
def collection(tmp_path, monkeypatch):
    monkeypatch.setattr("onthejob.rag.index.Embedder", lambda name=None: FakeEmbedder())
    monkeypatch.setattr("onthejob.rag.answer.cached_embedder", lambda name: FakeEmbedder())
    docs = tmp_path / "docs"
    docs.mkdir()
    for name, text in TEXTS.items():
        (docs / name).write_text(text)
    store = f"sqlite:///{tmp_path / 'rag.sqlite3'}"
    ojt_rag("index", str(docs), "--collection", "hr", "--store", store)
    return store


def test_the_reranker_orders_the_fused_candidates_by_its_own_scores(tmp_path, collection, capsys):
    from sentence_transformers import CrossEncoder

    words = re.findall(r"\w+", " ".join(TEXTS.values()) + " " + QUESTION)
    model = tiny_cross_encoder(tmp_path / "cross-encoder", words)
    capsys.readouterr()
    ojt_rag("query", "hr", QUESTION, "--store", collection, "-k", "3", "--reranker", str(model), "--json")
    reranked = json.loads(capsys.readouterr().out)

    with Retriever(RetrievalConfig(collection="hr", store=collection, k=50)) as plain:
        fused = plain.search(QUESTION)  # every candidate, in the fusion's order
    scores = CrossEncoder(str(model), device="cpu").predict([(QUESTION, h.chunk.text) for h in fused])
    order = sorted(range(len(fused)), key=lambda i: -scores[i])[:3]
    assert len(fused) > 3 and len({round(float(s), 6) for s in scores}) == len(fused)  # no ties to hide behind
    assert [r["id"] for r in reranked] == [fused[i].chunk.id for i in order]
    assert [r["score"] for r in reranked] == pytest.approx([float(scores[i]) for i in order], abs=1e-5)
    assert [r["dense"] for r in reranked] == pytest.approx([fused[i].dense for i in order])  # retrieval scores kept
    assert [r["id"] for r in reranked] != [h.chunk.id for h in fused[:3]]  # it did reorder


def test_a_reranker_that_does_not_load_is_refused_before_any_question(tmp_path, collection):
    with pytest.raises(RagError, match="cannot load the reranker") as e:
        Retriever(RetrievalConfig(collection="hr", store=collection, reranker=str(tmp_path / "no-such-model")))
    assert "CrossEncoder folder" in e.value.fix
