"""The RAG configs: every problem reported at once with its dotted path, sizes bounded, and the
``--rag...`` flags read back as a RetrievalConfig."""

from __future__ import annotations


import pytest

from onthejob.config import load
from onthejob.errors import ConfigError
from onthejob.rag.answer import retriever_from
from onthejob.rag.config import DEFAULT_THRESHOLD, IndexConfig, RetrievalConfig


def test_index_config_reports_every_problem_at_once(tmp_path):
    f = tmp_path / "index.yaml"
    f.write_text("paths: [docs]\ncollection: hr\nchunk_size: 128\noverlapp: 8\nchunk_tokens: many\n")
    with pytest.raises(ConfigError) as e:
        load(IndexConfig, f)
    problems = e.value.problems
    assert len(problems) == 3, problems
    assert problems[0].startswith("chunk_tokens: ") and "'many'" in problems[0]
    assert problems[1].startswith("chunk_size: unknown key") and "allowed here: paths, collection" in problems[1]
    assert problems[2].startswith("overlapp: unknown key; did you mean 'overlap'?")
    assert str(f) in str(e.value)


def test_index_config_bounds_chunk_sizes():
    base = {"paths": ["docs"], "collection": "hr"}
    assert load(IndexConfig, None, {**base, "chunk_tokens": 8, "overlap": 3}).overlap == 3
    for bad, where in (({"chunk_tokens": 4}, "chunk_tokens: "), ({"chunk_tokens": 100_000}, "chunk_tokens: "),
                       ({"overlap": -1}, "overlap: "), ({"chunk_tokens": 64, "overlap": 32}, "overlap, chunk_tokens: ")):
        with pytest.raises(ConfigError) as e:
            load(IndexConfig, None, {**base, **bad})
        assert [p for p in e.value.problems if p.startswith(where)], e.value.problems
    with pytest.raises(ConfigError) as e:
        load(IndexConfig, None, {})
    assert e.value.problems == ["paths: required", "collection: required"]


def test_a_blank_collection_name_is_refused():
    for config, rest in ((IndexConfig, {"paths": ["docs"]}), (RetrievalConfig, {})):
        with pytest.raises(ConfigError) as e:
            load(config, None, {**rest, "collection": " \t"})
        assert e.value.problems == ["collection: the collection name is empty; name one, e.g. hr (got ' \\t')"]


def test_retrieval_config_defaults_and_checks():
    config = RetrievalConfig()
    assert (config.collection, config.k, config.mode, config.fusion, config.candidates, config.reranker) == \
        (None, 5, "hybrid", "relative", 50, None)
    assert config.threshold == DEFAULT_THRESHOLD
    with pytest.raises(ConfigError) as e:
        load(RetrievalConfig, None, {"fusion": "borda", "mode": "bm25", "template": "{question} only"})
    assert [p.split(":")[0] for p in e.value.problems] == ["mode", "fusion", "template"]
    assert "lacks {context}" in e.value.problems[2]


def rag_section(*argv: str):
    """The ``rag`` section a stage's command line (``ojt generate``) loads."""
    from onthejob import cli, config as cfg
    from onthejob.generate.config import GenerateConfig

    args = cli.build_parser().parse_args(["generate", "m", "--input", "q.jsonl", "--out", "a.jsonl", *argv])
    return cfg.load(GenerateConfig, None, cfg.overrides(args)).rag


def test_rag_flags_old_and_new_spellings_make_a_retrieval_config():
    config = rag_section("--rag", "hr", "--rag-k", "3", "--rag-store", "sqlite:///x.sqlite3", "--rag-fusion", "rrf",
                         "--rag.mode", "sparse", "--rag-threshold", "0.5", "--rag-reranker", "models/ce")
    assert config == RetrievalConfig(collection="hr", k=3, store="sqlite:///x.sqlite3", fusion="rrf", mode="sparse",
                                     threshold=0.5, reranker="models/ce")
    assert retriever_from(rag_section()) is None
    assert retriever_from(rag_section("--rag-k", "3")) is None  # no collection named: no retrieval, as before
    with pytest.raises(ConfigError, match=r"rag\.k: Input should be greater than or equal to 1"):
        rag_section("--rag", "hr", "--rag-k", "0")

