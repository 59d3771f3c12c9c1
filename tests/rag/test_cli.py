"""``ojt rag index`` and ``ojt rag query`` run in-process: config files, flags over their keys,
positionals over both, and the fusion chosen on the command line."""

from __future__ import annotations

import json
import sqlite3

import pytest

from onthejob.errors import ConfigError
from onthejob.rag.answer import opened_retriever
from onthejob.rag.config import RetrievalConfig
from onthejob.rag.fuse import fuse
from onthejob.rag.stores import open_store
from tests.rag.helpers import FakeEmbedder, ojt_rag


@pytest.fixture
def fake_models(monkeypatch):
    """Index and query with the FakeEmbedder, whatever model name is asked for."""
    monkeypatch.setattr("onthejob.rag.index.Embedder", lambda name=None: FakeEmbedder())
    monkeypatch.setattr("onthejob.rag.answer.cached_embedder", lambda name: FakeEmbedder())


@pytest.fixture
def docs(tmp_path):
    d = tmp_path / "docs"
    d.mkdir()
    (d / "leave.md").write_text("# Leave\n\nStaff get 18 days of annual leave.\n\n# Sick\n\nSick leave is 14 days.\n")
    (d / "pay.md").write_text("# Pay\n\nSalaries are paid monthly; leave days unused are paid out.\n")
    (d / "travel.md").write_text("# Travel\n\nEconomy class for flights under six hours, days of travel count as work.\n")
    (d / "it.md").write_text("# Laptops\n\nLaptops are refreshed every three years.\n\n# Printers\n\nPrinters sit upstairs.\n")
    return d


def query(capsys, *argv: str) -> list[dict]:
    capsys.readouterr()
    assert ojt_rag("query", *argv, "--json") == 0
    return json.loads(capsys.readouterr().out)


def test_index_from_a_config_file_with_flags_and_paths_over_its_keys(tmp_path, docs, fake_models):
    store = f"sqlite:///{tmp_path / 'rag.sqlite3'}"
    config = tmp_path / "index.yaml"
    config.write_text(f"paths: [{docs}]\ncollection: hr\nchunk_tokens: 8\noverlap: 0\nstore: {store}\n")
    assert ojt_rag("index", "--config", str(config)) == 0
    assert ojt_rag("index", "--config", str(config), "--collection", "big", "--chunk-tokens", "256") == 0
    assert ojt_rag("index", "--config", str(config), "--collection", "pay", str(docs / "pay.md")) == 0
    with open_store(store) as s:
        infos = {i.name: (i.documents, i.chunks) for i in s.list()}
    assert infos == {"hr": (4, 8), "big": (4, 6), "pay": (1, 2)}  # 8 tokens cut the two longest sections in two
    with pytest.raises(ConfigError, match=str(config)) as e:
        config.write_text("collection: hr\nchunk_size: 8\n")
        ojt_rag("index", "--config", str(config))
    assert e.value.problems == ["paths: required", "chunk_size: unknown key; did you mean 'chunk_tokens'? (allowed "
                                "here: paths, collection, embed_model, chunk_tokens, overlap, text_key, store)"]


def test_query_from_a_config_file_with_flags_and_name_over_its_keys(tmp_path, docs, fake_models, capsys):
    store = f"sqlite:///{tmp_path / 'rag.sqlite3'}"
    ojt_rag("index", str(docs), "--collection", "hr", "--store", store)
    ojt_rag("index", str(docs / "it.md"), "--collection", "it", "--store", store)
    config = tmp_path / "retrieval.yaml"
    config.write_text(f"collection: hr\nk: 1\nmode: sparse\nstore: {store}\nthreshold: 0.5\n")
    [row] = query(capsys, "--config", str(config), "how many sick leave days")
    assert row["id"].endswith("leave.md#1") and row["score"] == row["sparse"]
    assert len(query(capsys, "--config", str(config), "-k", "3", "how many sick leave days")) == 3
    assert {r["doc"].rsplit("/", 1)[1] for r in query(capsys, "--config", str(config), "it", "printers laptops")} == {"it.md"}
    config.write_text("k: 2\n")
    with pytest.raises(ConfigError, match="no collection to query"):
        ojt_rag("query", "--config", str(config), "anything")


def test_query_fuses_by_rrf_when_the_flag_says_so(tmp_path, docs, fake_models, capsys):
    store = f"sqlite:///{tmp_path / 'rag.sqlite3'}"
    ojt_rag("index", str(docs), "--collection", "hr", "--store", store)
    question = "how many leave days are paid"
    rrf = query(capsys, "hr", question, "--fusion", "rrf", "-k", "4", "--store", store)
    relative = query(capsys, "hr", question, "-k", "4", "--store", store)

    vector = FakeEmbedder().encode([question])[0]
    with open_store(store) as s:
        dense = [(h.chunk.id, h.dense) for h in s.search("hr", vector, question, k=50, mode="dense")]
        sparse = [(h.chunk.id, h.sparse) for h in s.search("hr", vector, question, k=50, mode="sparse")]
    want = fuse(dense, sparse, mode="hybrid", k=4, method="rrf")
    assert len({round(f.score, 12) for f in want}) == 4  # no ties: the order is the fusion's alone
    assert [r["id"] for r in rrf] == [f.key for f in want]
    assert [r["score"] for r in rrf] == pytest.approx([f.score for f in want])
    assert [r["id"] for r in relative] != [r["id"] for r in rrf]  # the flag changed the ranking


def test_opened_retriever_closes_its_store_and_is_none_without_a_collection(tmp_path, docs, fake_models):
    store = f"sqlite:///{tmp_path / 'rag.sqlite3'}"
    ojt_rag("index", str(docs), "--collection", "hr", "--store", store)
    with opened_retriever(RetrievalConfig(collection="hr", store=store, k=2)) as retriever:
        wrapped, sources = retriever.prepare([{"role": "user", "content": "sick leave days"}])
    assert len(sources) == 2 and "Question: sick leave days" in wrapped[0]["content"]
    with pytest.raises(sqlite3.ProgrammingError, match="closed"):
        retriever.store.list()
    for config in (None, RetrievalConfig(k=3)):
        with opened_retriever(config) as nothing:
            assert nothing is None
