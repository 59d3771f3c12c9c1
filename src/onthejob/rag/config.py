"""The typed RAG configs: what ``ojt rag index`` builds and how passages are retrieved.

    ojt rag index --config index.yaml --chunk-tokens 128
    ojt rag query --config retrieval.yaml "How many days of annual leave?"

    from onthejob.config import load
    from onthejob.rag.config import IndexConfig, RetrievalConfig
    config = load(RetrievalConfig, "retrieval.yaml", {"k": 3})

``RetrievalConfig`` is also the ``rag`` section of the stages that answer questions (chat,
generate, eval, compare): ``onthejob.rag.answer.opened_retriever(config.rag)`` opens it, and
``RAG_FLAGS`` names its flags there. Built
on onthejob.config: unknown keys are rejected and every problem is reported at once.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field, model_validator

from onthejob.config import Section, cross_field
from onthejob.rag.chunk import DEFAULT_OVERLAP, DEFAULT_TARGET, MIN_TARGET
from onthejob.rag.embed import DEFAULT_EMBED_MODEL
from onthejob.rag.fuse import METHODS
from onthejob.rag.store import MODES

# Read off real scores: see onthejob.rag.answer's docstring. For all-MiniLM-L6-v2 only.
DEFAULT_THRESHOLD = 0.30
DEFAULT_TEMPLATE = (
    "Answer the question using only the numbered passages below. After each statement, cite the "
    "passage it comes from as [1], [2], ... If the passages do not contain the answer, say so.\n\n"
    "{context}\n\nQuestion: {question}"
)
MAX_SENTENCES = 1000  # of one passage, with passage compression
MAX_CHUNK_TOKENS = 8192  # the longest input of common embedding models; most take 256-512


def named(collection: str | None) -> str | None:
    """A collection name, refused when blank (as ``index`` refuses it; min_length lets spaces by)."""
    if collection is not None and not collection.strip():
        raise ValueError("the collection name is empty; name one, e.g. hr")
    return collection


def checked_template(template: str) -> str:
    """``template`` when it holds both placeholders, else the ValueError a config reports."""
    missing = missing_placeholders(template)
    if missing:
        raise ValueError(f"lacks {' and '.join(missing)}; write both {{context}} and {{question}} in it")
    return template


def missing_placeholders(template: str) -> list[str]:
    """The placeholders a prompt template must hold and ``template`` lacks."""
    return [p for p in ("{context}", "{question}") if p not in template]


CollectionName = Annotated[str, AfterValidator(named)]  # a collection name, not blank
Template = Annotated[str, AfterValidator(checked_template)]  # a RAG prompt template with both placeholders


class IndexConfig(Section):
    paths: list[str] = Field(min_length=1, description="files or folders to index (.txt .md .html .pdf .docx .csv .jsonl)")
    collection: CollectionName = Field(min_length=1, description="the collection to create or update")
    embed_model: str | None = Field(None, description=f"embedding model: a known name or a sentence-transformers folder; none = the collection's, else {DEFAULT_EMBED_MODEL}")
    chunk_tokens: int = Field(DEFAULT_TARGET, ge=MIN_TARGET, le=MAX_CHUNK_TOKENS, description="target chunk size in tokens of the embedding model")
    overlap: int = Field(DEFAULT_OVERLAP, ge=0, le=MAX_CHUNK_TOKENS // 2, description="tokens repeated between neighbouring chunks")
    text_key: str | None = Field(None, description="for .csv/.jsonl: the column holding the text; none = every column as 'key: value'")
    store: str | None = Field(None, description="store URL: sqlite:////abs/file.sqlite3 or postgresql://...; none = the embedded store under ONTHEJOB_HOME")

    @model_validator(mode="after")
    def _overlap_fits(self) -> IndexConfig:
        # The chunker's own rule (onthejob.rag.chunk): a chunk must hold more new text than repeated text.
        if self.overlap >= self.chunk_tokens // 2:
            raise cross_field(("overlap, chunk_tokens", f"overlap ({self.overlap}) must be less than half of "
                               f"chunk_tokens ({self.chunk_tokens}), so under {self.chunk_tokens // 2}"))
        return self


class RetrievalConfig(Section):
    collection: CollectionName | None = Field(None, description="the collection to retrieve passages from; none = answer without documents")
    k: int = Field(5, ge=1, le=1000, description="passages kept: put in the prompt, or shown by ojt rag query")
    store: str | None = Field(None, description="store URL holding the collection; none = the embedded store under ONTHEJOB_HOME")
    mode: Literal[MODES] = Field("hybrid", description="hybrid: vectors and keywords (BM25) fused; dense: vectors only; sparse: keywords only")
    fusion: Literal[METHODS] = Field("relative", description="how hybrid mode merges its two rankings: relative (min-max normalised scores mixed) or rrf (reciprocal rank fusion)")
    candidates: int = Field(50, ge=1, le=10_000, description="candidates each ranking (dense, keywords) shortlists before fusion; with a reranker, how many it reorders")
    threshold: float = Field(DEFAULT_THRESHOLD, ge=-1, le=1, description="answer 'not covered' without the model when the best passage's cosine similarity is below this (tuned for all-minilm-l6-v2)")
    reranker: str | None = Field(None, description="a sentence-transformers CrossEncoder folder (a hub id only with a network) that reorders the fused candidates before k are kept; none = no reranking")
    embed_model: str | None = Field(None, description="the query embedding model, which must be the collection's; none = the collection's own")
    template: Template = Field(DEFAULT_TEMPLATE, description="the prompt wrapped around the passages; holds {context} and {question}")
    sentences: int | None = Field(None, ge=1, le=MAX_SENTENCES, description="cut each passage to the N sentences sharing the most words with the question (rag/compress.py); none = whole passages")


METAVARS = {"collection": "NAME", "k": "K", "store": "URL", "embed_model": "MODEL", "reranker": "MODEL",
            "text_key": "KEY"}
# A stage config's ``rag`` section as flags: --rag NAME, --rag-k K, --rag-store URL, --rag-mode, ...
# (besides --rag.KEY): ``add_options(p, StageConfig, aliases=RAG_FLAGS, skip=RAG_SKIP, metavars=RAG_METAVARS)``
RAG_FLAGS = {f"rag.{name}": f"--rag-{name.replace('_', '-')}" for name in RetrievalConfig.model_fields} | {"rag.collection": "--rag"}
RAG_METAVARS = {f"rag.{key}": metavar for key, metavar in METAVARS.items()}
RAG_SKIP = ("rag.template",)  # a prompt template is set in a config file: a flag's help would print it whole
