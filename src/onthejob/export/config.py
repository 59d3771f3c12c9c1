"""The typed config of ``ojt export``.

    ojt export runs/hr-demo --to gguf --quant q8_0 --out export/hr
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from onthejob.config import Section

KINDS = ("gguf", "ollama", "merged")


class ExportConfig(Section):
    run: str = Field(description="the run folder to export (or its final/ adapter folder); a model name or folder exports that model as it is")
    to: Literal["gguf", "ollama", "merged"] = Field("gguf", description="gguf: one file for llama.cpp; ollama: that file and a Modelfile; merged: a safetensors model folder (transformers, vLLM, TGI)")
    quant: str = Field("q8_0", description="GGUF weight type: f32, f16, bf16, q8_0, q5_1, q5_0, q4_1, q4_0 (gguf and ollama only)")
    out: str = Field(description="a new folder for the export (it must not exist; written atomically)")
    check: bool = Field(True, description="answer the eval questions with the export and with the run side by side, and fail when the export answers worse")
    data: str | None = Field(None, description="questions for the check (eval JSONL with facts); none = the run's data.eval")
    max_questions: int = Field(100, ge=1, le=10000, description="questions the check asks at most (the first ones of the file)")
    max_new_tokens: int = Field(128, ge=1, le=4096, description="longest answer in the check, in tokens")
    max_recall_drop: float = Field(0.05, ge=0, le=1, description="the check fails when the export's mean facts recall is more than this below the run's")
    context: int = Field(4096, ge=256, le=131072, description="tokens of context llama.cpp holds while checking a GGUF")
    shard_size: str = Field("2GB", pattern=r"^\d+(\.\d+)?(KB|MB|GB)$", description="largest safetensors shard of a merged export")
    name: str | None = Field(None, description="the model's name in the GGUF and the ollama create hint; none = the run folder's name")
