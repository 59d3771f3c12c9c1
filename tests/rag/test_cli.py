"""``ojt rag index`` and ``ojt rag query`` run in-process: config files, flags over their keys,
positionals over both, the fusion chosen on the command line, the exit code of a partly unreadable
folder, and (in a fresh process, with the real logging setup) what reaches stderr."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from onthejob.errors import ConfigError, RagError
from onthejob.rag.answer import opened_retriever
from onthejob.rag.config import RetrievalConfig
from onthejob.rag.fuse import fuse
from onthejob.rag.stores import open_store
from tests.rag.helpers import FakeEmbedder, make_pdf, ojt_rag

REPO = Path(__file__).resolve().parents[2]


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


def test_an_unreadable_file_fails_the_command_after_the_rest_is_indexed(tmp_path, docs, fake_models, capsys):
    from onthejob.cli import main

    store = f"sqlite:///{tmp_path / 'rag.sqlite3'}"
    (docs / "broken.pdf").write_bytes(b"%PDF-1.4 cut short")
    assert main(["rag", "index", str(docs), "--collection", "hr", "--store", store]) == RagError.exit_code
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("error: hr: 1 of 5 files could not be read") and "broken.pdf" in err[1]
    assert "internal error" not in "".join(err)
    with open_store(store) as s:
        assert s.info("hr").documents == 4


def test_a_blank_collection_name_is_a_config_error(docs, fake_models):
    for name in ("", "  "):
        with pytest.raises(ConfigError) as e:
            ojt_rag("index", str(docs), "--collection", name)
        assert [p for p in e.value.problems if p.startswith("collection: ")], e.value.problems


def ojt_subprocess(tmp_path, *argv: str) -> subprocess.CompletedProcess:
    """``ojt ARGV...`` through ``onthejob.cli.main`` in a fresh process (so that its logging setup is
    the real one, not pytest's), indexing with the FakeEmbedder."""
    script = tmp_path / "ojt_fake.py"
    script.write_text(textwrap.dedent("""
        import sys
        import onthejob.rag.index
        from tests.rag.helpers import FakeEmbedder
        onthejob.rag.index.Embedder = lambda name=None: FakeEmbedder()
        from onthejob.cli import main
        sys.exit(main(sys.argv[1:]))
    """))
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "ONTHEJOB_HOME": str(tmp_path / "home"), "PYTHONPATH": path}
    return subprocess.run([sys.executable, str(script), *argv], env=env, cwd=REPO, capture_output=True, text=True, timeout=120)


def test_pdf_library_warnings_show_only_with_debug(tmp_path):
    pdf = tmp_path / "docs" / "skewed.pdf"
    pdf.parent.mkdir()
    make_pdf(pdf, [["Annual leave is 18 days."]])
    data = pdf.read_bytes()  # a startxref pointing off its table: pypdf recovers, and warns
    pdf.write_bytes(data.replace(b"startxref\n", b"startxref\n1"))
    store = f"sqlite:///{tmp_path / 'rag.sqlite3'}"
    quiet = ojt_subprocess(tmp_path, "rag", "index", str(pdf.parent), "--collection", "hr", "--store", store)
    assert quiet.returncode == 0, quiet.stderr
    assert "WARNING" not in quiet.stderr and "startxref" not in quiet.stderr
    pdf.write_bytes(data.replace(b"startxref\n", b"startxref\n2"))  # changed, so read again
    loud = ojt_subprocess(tmp_path, "--debug", "rag", "index", str(pdf.parent), "--collection", "hr", "--store", store)
    assert loud.returncode == 0, loud.stderr
    assert "WARNING: incorrect startxref pointer" in loud.stderr
