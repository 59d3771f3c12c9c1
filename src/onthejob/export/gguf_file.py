"""Write a merged model as one GGUF file with the ``gguf`` package's writer and tensor-name map.

    from onthejob.export.gguf_file import write_gguf
    write_gguf(model, tokenizer, "hr.q8_0.gguf", quant="q8_0")

What goes in, so that llama.cpp and Ollama answer as the run does:
  * the weights under llama.cpp's tensor names; the query and key projections are permuted from
    the Hugging Face rotary layout (two halves) back to llama.cpp's (interleaved pairs);
  * 1-D tensors (norms) in float32; 2-D ones in the chosen type. With a 4- or 5-bit type the
    token embedding stays q8_0: with tied embeddings it is the output layer too, the tensor a
    small model is most sensitive to (llama.cpp's own quantizer keeps it higher as well);
  * the tokenizer: tokens, types, merges, special ids, the end-of-turn id, no BOS added on
    encode (the chat template writes what the run's prompts held), and the run's chat template
    as ``tokenizer.chat_template``.

Only Llama-family models with a byte-level BPE tokenizer are written; anything else is refused
by name (``check_supported``) before any weights are read.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from onthejob.errors import ModelError

ARCHITECTURES = ("llama", "mistral")  # config.model_type values llama.cpp runs as "llama"
# --quant values, each a type the gguf package can write (numpy quantizers; no llama.cpp build).
QUANTS = {"f32": "F32", "f16": "F16", "bf16": "BF16", "q8_0": "Q8_0", "q5_1": "Q5_1", "q5_0": "Q5_0",
          "q4_1": "Q4_1", "q4_0": "Q4_0"}
FILE_TYPES = {"f32": "ALL_F32", "f16": "MOSTLY_F16", "bf16": "MOSTLY_BF16", "q8_0": "MOSTLY_Q8_0",
              "q5_1": "MOSTLY_Q5_1", "q5_0": "MOSTLY_Q5_0", "q4_1": "MOSTLY_Q4_1", "q4_0": "MOSTLY_Q4_0"}
LOW_BIT = ("q5_1", "q5_0", "q4_1", "q4_0")
# Pre-tokenizers llama.cpp knows, by what the Hugging Face tokenizer.json holds. A known model
# (models/registry.py) brings the name its own GGUF records, which wins.
BYTE_LEVEL_ONLY = "gpt-2"  # llama.cpp's name for the GPT-2 split pattern


def check_supported(config: Any, tokenizer, quant: str) -> None:
    """Refuse, naming what is supported, a model or quant type this writer cannot export."""
    if quant not in QUANTS:
        raise ModelError(f"unknown quant type {quant!r}", fix="use one of: " + ", ".join(QUANTS))
    kind = getattr(config, "model_type", None)
    if kind not in ARCHITECTURES:
        raise ModelError(f"cannot export a {kind!r} model to GGUF: supported are the Llama-family architectures "
                         + ", ".join(ARCHITECTURES),
                         fix="export it with --to merged and convert that with llama.cpp's convert_hf_to_gguf.py")
    scaling = _rope_scaling(config)
    if scaling not in (None, "default"):
        raise ModelError(f"cannot export a model with {scaling!r} rope scaling to GGUF yet (plain rotary embeddings only)",
                         fix="export it with --to merged")
    if _tokenizer_json(tokenizer).get("model", {}).get("type") != "BPE":
        raise ModelError("cannot export this tokenizer to GGUF: only byte-level BPE tokenizers are supported",
                         fix="export it with --to merged")


def write_gguf(model, tokenizer, path: str | Path, *, quant: str, chat_template: str, eot_id: int | None,
               pre: str | None = None, name: str = "", on_tensor: Callable[[str], None] | None = None) -> None:
    """Write ``model`` (a plain transformers Llama, float32) and ``tokenizer`` to ``path``."""
    import gguf

    config = model.config
    check_supported(config, tokenizer, quant)
    writer = gguf.GGUFWriter(str(path), gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.LLAMA])
    _hyperparameters(writer, config, quant, name)
    _tokenizer(writer, tokenizer, config, chat_template=chat_template, eot_id=eot_id, pre=pre)
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, config.num_hidden_layers)
    tied = bool(getattr(config, "tie_word_embeddings", False))
    for hf_name, tensor in model.state_dict().items():
        if tied and hf_name == "lm_head.weight":
            continue  # llama.cpp uses token_embd for the output when there is no output.weight
        if "rotary_emb" in hf_name:
            continue
        gguf_name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if gguf_name is None:
            raise ModelError(f"no GGUF name for the tensor {hf_name}", fix="export it with --to merged")
        data = _llama_layout(hf_name, tensor.detach().float().cpu().numpy(), config)
        encoded, qtype = _encode(data, gguf_name, quant)
        writer.add_tensor(gguf_name, encoded, raw_dtype=qtype)
        if on_tensor:
            on_tensor(gguf_name)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def _hyperparameters(writer, config, quant: str, name: str) -> None:
    import gguf

    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    writer.add_name(name or "onthejob export")
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(heads)
    writer.add_head_count_kv(getattr(config, "num_key_value_heads", None) or heads)
    writer.add_rope_dimension_count(head_dim)
    if head_dim != config.hidden_size // heads:
        writer.add_key_length(head_dim)
        writer.add_value_length(head_dim)
    writer.add_rope_freq_base(float(_rope_theta(config)))
    writer.add_layer_norm_rms_eps(float(config.rms_norm_eps))
    writer.add_vocab_size(config.vocab_size)
    writer.add_file_type(int(getattr(gguf.LlamaFileType, FILE_TYPES[quant])))
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)


def _tokenizer(writer, tokenizer, config, *, chat_template: str, eot_id: int | None, pre: str | None) -> None:
    import gguf

    spec = _tokenizer_json(tokenizer)
    writer.add_tokenizer_model("gpt2")  # llama.cpp's name for byte-level BPE
    writer.add_tokenizer_pre(pre or _pre_tokenizer(spec))
    vocab = tokenizer.get_vocab()
    by_id = {i: t for t, i in vocab.items()}
    added = {a.content: a for a in tokenizer.added_tokens_decoder.values()}
    tokens, types = [], []
    for i in range(config.vocab_size):  # the embedding can be larger than the vocabulary
        text = by_id.get(i)
        if text is None:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
        elif text in added:
            tokens.append(text)
            types.append(gguf.TokenType.CONTROL if added[text].special else gguf.TokenType.USER_DEFINED)
        else:
            tokens.append(text)
            types.append(gguf.TokenType.NORMAL)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(_merges(spec))
    for kind in ("bos", "eos", "unk", "pad"):
        token_id = getattr(tokenizer, f"{kind}_token_id", None)
        if token_id is not None:
            getattr(writer, {"unk": "add_unk_token_id", "pad": "add_pad_token_id"}.get(kind, f"add_{kind}_token_id"))(token_id)
    if eot_id is not None:
        writer.add_eot_token_id(eot_id)
    # Our engine encodes rendered prompts without adding specials: the template writes any BOS.
    writer.add_add_bos_token(False)
    writer.add_add_eos_token(False)
    writer.add_chat_template(chat_template)


def _pre_tokenizer(spec: dict) -> str:
    pre = spec.get("pre_tokenizer") or {}
    if pre.get("type") == "ByteLevel" and pre.get("use_regex", True):
        return BYTE_LEVEL_ONLY
    raise ModelError(f"cannot tell llama.cpp how to pre-tokenize for this tokenizer ({json.dumps(pre)[:120]})",
                     fix="export a model onthejob knows (ojt models), or use --to merged")


def _merges(spec: dict) -> list[str]:
    merges = spec.get("model", {}).get("merges") or []
    # tokenizers writes merges as "a b" strings (older files) or [a, b] pairs (newer ones).
    return [m if isinstance(m, str) else " ".join(m) for m in merges]


def _tokenizer_json(tokenizer) -> dict:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise ModelError("cannot export a slow (Python) tokenizer to GGUF", fix="export it with --to merged")
    return json.loads(backend.to_str())


def _llama_layout(hf_name: str, data, config):
    """Undo the Hugging Face permutation of q/k rows: llama.cpp rotates interleaved pairs."""
    heads = config.num_attention_heads
    if hf_name.endswith("q_proj.weight"):
        return _permute(data, heads)
    if hf_name.endswith("k_proj.weight"):
        return _permute(data, getattr(config, "num_key_value_heads", None) or heads)
    return data


def _permute(weights, heads: int):
    # (heads * head_dim, hidden): each head's rows [half a | half b] become [a0 b0 a1 b1 ...]
    rows = weights.shape[0]
    return (weights.reshape(heads, 2, rows // heads // 2, *weights.shape[1:])
            .swapaxes(1, 2).reshape(weights.shape))


def _encode(data, gguf_name: str, quant: str):
    """(bytes or array to store, its GGML type) for one tensor."""
    import numpy as np
    from gguf import GGMLQuantizationType as T
    from gguf import quants

    if data.ndim == 1 or quant == "f32":
        return data.astype(np.float32), T.F32
    if quant == "f16":
        return data.astype(np.float16), T.F16
    kind = "q8_0" if quant in LOW_BIT and gguf_name == "token_embd.weight" else quant
    qtype = getattr(T, QUANTS[kind])
    block, _ = quants.GGML_QUANT_SIZES[qtype]
    if data.shape[-1] % block:
        return data.astype(np.float16), T.F16  # rows that do not fill whole blocks cannot be quantized
    return quants.quantize(data, qtype), qtype


def _rope_theta(config) -> float:
    params = getattr(config, "rope_parameters", None) or {}
    return params.get("rope_theta") or getattr(config, "rope_theta", None) or 10000.0


def _rope_scaling(config) -> str | None:
    params = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
    return params.get("rope_type") or params.get("type")
