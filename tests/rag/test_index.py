"""Incremental indexing: unchanged files cost nothing, changes replace only their own chunks,
deleted files go, unreadable files are reported after the rest is indexed, and a run killed mid-way
leaves the previous content."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from onthejob.errors import RagError
from onthejob.rag.index import index
from onthejob.rag.stores import open_store
from tests.rag.helpers import FakeEmbedder, make_pdf

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("ONTHEJOB_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture
def docs(tmp_path):
    d = tmp_path / "docs"
    (d / "sub").mkdir(parents=True)
    (d / "leave.md").write_text("# Leave\n\nStaff get 18 days of annual leave.\n\n# Sick\n\nSick leave is 14 days.\n")
    (d / "pay.txt").write_text("Salaries are paid monthly on the 25th.\n")
    (d / "sub" / "travel.md").write_text("# Travel\n\nEconomy class for flights under six hours.\n")
    return d


def state(collection: str) -> dict[str, list[tuple[str, str, bytes]]]:
    """doc -> [(chunk id, text, vector bytes)]: everything a reader of the collection sees."""
    with open_store() as store:
        return {doc: [(c.id, c.text, c.vector.tobytes()) for c in store.doc_chunks(collection, doc)]
                for doc in store.documents(collection)}


def test_first_run_indexes_everything_and_records_the_model(home, docs):
    report = index([docs], "hr", embedder=FakeEmbedder(), target_tokens=16, overlap=2, progress=False)
    assert len(report.added) == 3 and report.chunks_embedded == 4
    with open_store() as store:
        info = store.info("hr")
        hits = store.search("hr", FakeEmbedder().encode(["sick leave days"])[0], "sick leave days", k=1)
    assert (info.embed_model, info.dim, info.documents, info.chunks) == ("fake-embed", 64, 3, 4)
    assert hits[0].chunk.text == "Sick leave is 14 days."
    assert hits[0].chunk.meta == {"page": None, "heading": "Sick", "n": 1}


def test_unchanged_files_cost_nothing(home, docs, monkeypatch):
    index([docs], "hr", embedder=FakeEmbedder(), progress=False)
    before = state("hr")
    emb = FakeEmbedder()
    monkeypatch.setattr("onthejob.rag.index.read_file", lambda *a, **k: pytest.fail("an unchanged file was read"))
    report = index([docs], "hr", embedder=emb, progress=False)
    assert emb.calls == 0
    assert len(report.unchanged) == 3 and not (report.added or report.changed or report.deleted)
    assert state("hr") == before


def test_a_changed_file_replaces_only_its_own_chunks(home, docs):
    index([docs], "hr", embedder=FakeEmbedder(), target_tokens=16, overlap=2, progress=False)
    before = state("hr")
    leave = str((docs / "leave.md").resolve())
    (docs / "leave.md").write_text("# Leave\n\nStaff get 21 days of annual leave.\n\n# Sick\n\nSick leave is 14 days.\n")
    emb = FakeEmbedder()
    report = index([docs], "hr", embedder=emb, target_tokens=16, overlap=2, progress=False)
    assert report.changed == [leave] and len(report.unchanged) == 2
    assert (emb.texts, report.chunks_reused) == (1, 1)  # the sick-leave chunk kept its vector
    after = state("hr")
    assert {d: v for d, v in after.items() if d != leave} == {d: v for d, v in before.items() if d != leave}
    assert [t for _, t, _ in after[leave]] == ["Staff get 21 days of annual leave.", "Sick leave is 14 days."]
    assert after[leave][1] == before[leave][1]


def test_deleted_files_go_and_files_under_other_paths_stay(home, docs, tmp_path):
    other = tmp_path / "other.txt"
    other.write_text("Indexed on its own.")
    index([docs], "hr", embedder=FakeEmbedder(), progress=False)
    index([other], "hr", embedder=FakeEmbedder(), progress=False)
    (docs / "sub" / "travel.md").unlink()
    report = index([docs], "hr", embedder=FakeEmbedder(), progress=False)
    assert report.deleted == [str((docs / "sub" / "travel.md").resolve())]
    assert sorted(Path(d).name for d in state("hr")) == ["leave.md", "other.txt", "pay.txt"]
    other.unlink()  # a file given by name that is gone now is dropped too
    assert index([other], "hr", embedder=FakeEmbedder(), progress=False).deleted == [str(other.resolve())]
    with pytest.raises(RagError, match="no such file"):
        index([tmp_path / "never-there.txt"], "hr", embedder=FakeEmbedder(), progress=False)


def test_another_embedding_model_is_refused(home, docs):
    index([docs], "hr", embedder=FakeEmbedder(), progress=False)
    other = FakeEmbedder()
    other.name = "another-model"
    with pytest.raises(RagError, match="indexed with fake-embed, not another-model") as info:
        index([docs], "hr", embedder=other, progress=False)
    assert "--embed-model fake-embed" in info.value.fix


def test_unreadable_files_are_reported_after_the_others_are_indexed(home, docs):
    make_pdf(docs / "rules.pdf", [["Parking is free for staff."]])
    good = (docs / "rules.pdf").read_bytes()
    (docs / "truncated.pdf").write_bytes(good[: len(good) // 2])
    (docs / "sub" / "junk.pdf").write_bytes(b"these bytes were never a PDF\n" * 20)
    with pytest.raises(RagError) as info:
        index([docs], "hr", embedder=FakeEmbedder(), progress=False)
    lines = str(info.value).splitlines()
    assert lines[0] == "hr: 2 of 6 files could not be read; the other 4 are indexed. Fix or remove these and rerun (only they are read again):"
    assert lines[1].startswith(f"  {(docs / 'sub' / 'junk.pdf').resolve()}: not a PDF (it does not start with %PDF-)")
    assert lines[2].startswith(f"  {(docs / 'truncated.pdf').resolve()}: a damaged or truncated PDF (no %%EOF at its end)")
    assert len(lines) == 3
    assert sorted(Path(d).name for d in state("hr")) == ["leave.md", "pay.txt", "rules.pdf", "travel.md"]

    # fixed: the rerun reads only it; broken later: the file keeps what was indexed from it
    (docs / "truncated.pdf").write_bytes(good)
    (docs / "sub" / "junk.pdf").unlink()
    report = index([docs], "hr", embedder=FakeEmbedder(), progress=False)
    assert [Path(d).name for d in report.added] == ["truncated.pdf"] and len(report.unchanged) == 4
    before = state("hr")
    (docs / "rules.pdf").write_bytes(good[:-40])
    with pytest.raises(RagError, match=r"hr: 1 of 5 files could not be read"):
        index([docs], "hr", embedder=FakeEmbedder(), progress=False)
    assert state("hr") == before


@pytest.mark.parametrize("name", ["", "   ", "\t"])
def test_a_blank_collection_name_is_refused(home, docs, name):
    with pytest.raises(RagError, match=r"the collection name is empty") as info:
        index([docs], name, embedder=FakeEmbedder(), progress=False)
    assert "--collection" in info.value.fix
    with open_store() as store:
        assert store.list() == []


def test_sigkill_while_embedding_keeps_the_previous_content_and_a_rerun_completes(home, docs, tmp_path):
    index([docs], "hr", embedder=FakeEmbedder(), progress=False)
    before = state("hr")
    (docs / "pay.txt").write_text("Salaries are paid weekly now.\n")
    (docs / "new.md").write_text("# Parking\n\nFree parking for staff.\n")
    (docs / "sub" / "travel.md").unlink()
    marker = tmp_path / "embedding-started"
    script = tmp_path / "slow_index.py"
    script.write_text(textwrap.dedent(f"""
        from onthejob.rag.index import index
        from tests.rag.helpers import FakeEmbedder, make_pdf
        index([{str(docs)!r}], "hr", embedder=FakeEmbedder(delay=60, marker={str(marker)!r}), progress=False)
    """))
    # the script's own folder, not the checkout, heads sys.path: name the checkout for tests.rag
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "ONTHEJOB_HOME": str(home), "PYTHONPATH": path}
    proc = subprocess.Popen([sys.executable, str(script)], env=env, cwd=REPO)
    try:
        deadline = time.monotonic() + 30
        while not marker.exists():
            assert proc.poll() is None, "the indexing subprocess ended before embedding"
            assert time.monotonic() < deadline, "the indexing subprocess never started embedding"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert state("hr") == before  # the killed run left no trace

    report = index([docs], "hr", embedder=FakeEmbedder(), progress=False)
    assert (len(report.added), len(report.changed), len(report.deleted)) == (1, 1, 1)
    texts = {Path(d).name: [t for _, t, _ in chunks] for d, chunks in state("hr").items()}
    assert texts["pay.txt"] == ["Salaries are paid weekly now."]
    assert texts["new.md"] == ["Free parking for staff."] and "travel.md" not in texts

