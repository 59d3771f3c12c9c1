"""Stand-ins built inside the test: an embedder with no model to load, a tiny cross-encoder, a
minimal PDF, and ``ojt rag ...`` run in-process."""

from __future__ import annotations

import argparse
import hashlib
import re
import time
from pathlib import Path

import numpy as np


class FakeEmbedder:
    """Hashed bag of words: texts sharing words get close vectors; no model to load.

    ``delay`` seconds of sleep in each ``encode`` and a ``marker`` file touched as it starts let a
    test kill an indexing process while it embeds."""

    name, dim = "fake-embed", 64

    def __init__(self, delay: float = 0.0, marker: str | None = None):
        self.calls, self.texts, self.delay, self.marker = 0, 0, delay, marker

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def encode(self, texts, progress=None) -> np.ndarray:
        self.calls += 1
        self.texts += len(texts)
        if self.marker:
            Path(self.marker).touch()
        if self.delay:
            time.sleep(self.delay)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)  # (N, dim)
        for row, text in enumerate(texts):
            for word in re.findall(r"[a-z0-9]+", text.lower()):
                out[row, int(hashlib.md5(word.encode()).hexdigest(), 16) % self.dim] += 1
        out[:, 0] += 1e-3  # no zero rows
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def tiny_cross_encoder(folder: Path, words: list[str], *, seed: int = 0) -> Path:
    """A randomly initialised 2-layer BERT scoring (query, passage) pairs with one logit, saved
    where sentence-transformers' ``CrossEncoder`` loads it. Wide initial weights, so that random
    passages get clearly different scores."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *dict.fromkeys(w.lower() for w in words)]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tokenizer = BertTokenizerFast(vocab_file=str(folder / "vocab.txt"))
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128, num_labels=1, initializer_range=0.5)
    BertForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def make_pdf(path, pages: list[list[str]]) -> None:
    """A minimal PDF with a real text layer: one list of lines per page ("" = blank line)."""

    def esc(s: str) -> str:
        return s.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")

    n = len(pages)
    objs = [b"<< /Type /Catalog /Pages 2 0 R >>",
            f"<< /Type /Pages /Kids [{' '.join(f'{4 + 2 * i} 0 R' for i in range(n))}] /Count {n} >>".encode(),
            b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    for i, lines in enumerate(pages):
        stream = "BT /F1 11 Tf 72 740 Td 14 TL " + " ".join(f"({esc(line)}) Tj T*" for line in lines) + " ET"
        objs.append(f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >> "
                    f"/Contents {5 + 2 * i} 0 R >>".encode())
        objs.append(f"<< /Length {len(stream)} >>\nstream\n{stream}\nendstream".encode())
    out, offsets = b"%PDF-1.4\n", []
    for i, obj in enumerate(objs, start=1):
        offsets.append(len(out))
        out += f"{i} 0 obj\n".encode() + obj + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objs) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{o:010d} 00000 n \n".encode() for o in offsets)
    out += f"trailer\n<< /Size {len(objs) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    path.write_bytes(out)


def ojt_rag(*argv: str) -> int:
    """``ojt rag ARGV...`` in this process, through the same parser the ``ojt`` command builds."""
    from onthejob.rag.cli import register

    parser = argparse.ArgumentParser(prog="ojt")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["rag", *argv])
    return args.func(args)
