"""``ojt export``: a run as a GGUF file, an Ollama model or a merged folder, checked before it lands.

    ojt export runs/hr-demo --to gguf --quant q8_0 --out export/hr
    ojt export runs/hr-demo --to ollama --out export/hr-ollama
    ojt export runs/hr-demo --to merged --out export/hr-merged

Everything that can be refused is refused before any weights are read: a run without a final
adapter, an architecture or quant type the GGUF writer does not know, a template Ollama cannot
express, an output folder that exists, no questions for the check. Then the adapter is merged in
float32, the artefact written into a temporary folder beside ``--out``, the parity check run on
it there (``parity.py``), and only an artefact that passes is renamed into place, with
``export.json`` (what was exported from what, hashes, tool versions, the check's figures) and
``parity.md``. An interrupted or failed export leaves nothing at ``--out``.
"""

from __future__ import annotations

import datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from onthejob import fsutil
from onthejob.errors import ConfigError, DataError, ModelError, ParityError
from onthejob.export.config import ExportConfig
from onthejob.models.adapters import Located, locate

TOOLS = ("onthejob", "torch", "transformers", "peft", "gguf", "llama_cpp_python")


def run(config: ExportConfig, *, say=print) -> Path:
    """Export ``config.run``; returns the output folder. See the module docstring."""
    from onthejob.models.load import load_tokenizer

    found = _located(config.run)
    out = Path(config.out).expanduser()
    _check_out(out)
    tokenizer = load_tokenizer(found.tokenizer)
    _refuse_early(config, found, tokenizer)
    items = _questions(config, found) if config.check else []
    from onthejob.models.merge import merged_model, save_merged, stored_dtype

    say(f"export: merging {found.base_name} + {found.method} adapter" if found.adapter else f"export: loading {found.model}")
    model, tokenizer = merged_model(config.run, stored_dtype(found.model) if config.to == "merged" else None)
    name = config.name or _run_name(found)
    with fsutil.atomic_dir(out) as tmp:
        if config.to == "merged":
            save_merged(model, tokenizer, tmp, shard_size=config.shard_size)
            artefact = tmp
        else:
            artefact = tmp / f"{name}.{config.quant}.gguf"
            _write_gguf(model, tokenizer, artefact, config, found, name)
            if config.to == "ollama":
                from onthejob.export.modelfile import modelfile

                fsutil.write_text(tmp / "Modelfile", modelfile(tokenizer, gguf_name=artefact.name, system=_system(found)))
        del model
        parity = _check(config, found, artefact, items, tmp, say) if config.check else None
        fsutil.write_json(tmp / "export.json", _manifest(config, found, tokenizer, tmp, parity))
    say(_done(config, out, name))
    return out


def _check_out(out: Path) -> None:
    """Refuse, before the long parts, an ``--out`` that exists or could never be made."""
    if out.exists():
        raise ConfigError(f"--out {out} already exists; an export never overwrites",
                          fix="choose a new folder, or remove that one first")
    blocking = next((p for p in out.parents if p.exists()), None)
    if blocking is not None and not blocking.is_dir():
        raise ConfigError(f"--out {out}: {blocking} is a file, not a folder", fix="choose a folder path for --out")


def _located(run: str) -> Located:
    """A run, an adapter, or a plain model (a base exported as it is, to compare with a run's)."""
    found = locate(run)
    if found.method == "gguf":
        raise ModelError(f"{run} is a GGUF file already", fix="export the run it came from")
    return found


def _refuse_early(config: ExportConfig, found: Located, tokenizer) -> None:
    from transformers import AutoConfig

    if config.to == "merged":
        return
    from onthejob.export.gguf_file import check_supported

    try:
        model_config = AutoConfig.from_pretrained(found.model)
    except (OSError, ValueError) as e:
        raise ModelError(f"cannot read the config of {found.model}: {e}") from e
    check_supported(model_config, tokenizer, config.quant)
    if config.to == "ollama":
        from onthejob.export.modelfile import turns

        turns(tokenizer)


def _questions(config: ExportConfig, found: Located):
    from onthejob.eval.data import read_eval

    path = config.data or _run_eval_file(found)
    if path is None:
        raise DataError(f"no questions for the parity check: {found.run or config.run} names no data.eval file here",
                        fix="give --data FILE (eval JSONL), or skip the check with --no-check")
    return read_eval(path)[: config.max_questions]


def _run_eval_file(found: Located) -> str | None:
    from onthejob.config import read_yaml

    if found.run is None or not (found.run / "config.yaml").is_file():
        return None
    path = (read_yaml(found.run / "config.yaml").get("data") or {}).get("eval")
    return path if isinstance(path, str) and Path(path).is_file() else None


def _write_gguf(model, tokenizer, path: Path, config: ExportConfig, found: Located, name: str) -> None:
    from tqdm import tqdm

    from onthejob.data.template import end_of_turn_ids
    from onthejob.export.gguf_file import write_gguf

    eot = end_of_turn_ids(tokenizer)
    with tqdm(total=len(model.state_dict()), desc=f"writing {path.name}", unit="tensor", leave=False) as bar:
        write_gguf(model, tokenizer, path, quant=config.quant, chat_template=tokenizer.chat_template,
                   eot_id=eot[0] if eot else None, pre=_known_pre(found.base_name), name=name,
                   on_tensor=lambda _: bar.update())


def _known_pre(base_name: str) -> str | None:
    """The pre-tokenizer a known model's own GGUF records (models/registry.py), if it is one."""
    from onthejob.models.registry import KNOWN

    if base_name not in KNOWN:
        return None
    import gguf

    field = gguf.GGUFReader(str(KNOWN[base_name].gguf_path())).fields.get("tokenizer.ggml.pre")
    return str(field.contents()) if field is not None else None


def _check(config: ExportConfig, found: Located, artefact: Path, items, tmp: Path, say):
    from tqdm import tqdm

    from onthejob.export.parity import check

    with tqdm(total=2 * len(items), desc="parity check", unit="answer", leave=False) as bar:
        parity = check(config.run, artefact=artefact, kind=config.to, items=items, max_new_tokens=config.max_new_tokens,
                       max_recall_drop=config.max_recall_drop, context=config.context, progress=bar.update)
    table = parity.table()
    if not parity.passed:
        raise ParityError("the export answers worse than the run, so it was not written: " + "; ".join(parity.problems)
                          + "\n" + table, fix=None)
    fsutil.write_text(tmp / "parity.md", f"# Parity of {artefact.name} with {found.run or config.run}\n\n{table}\n")
    fsutil.write_json(tmp / "parity.json", parity.to_json())
    say(table)
    return parity


def _manifest(config: ExportConfig, found: Located, tokenizer, folder: Path, parity) -> dict[str, Any]:
    import hashlib

    adapter = found.adapter / "adapter_model.safetensors" if found.adapter else None
    files = {p.name: {"bytes": p.stat().st_size, "sha256": fsutil.file_hash(p)}
             for p in sorted(folder.iterdir()) if p.is_file() and p.name != "export.json"}
    return {
        "run": str(found.run or config.run), "base": found.base_name, "method": found.method,
        "adapter_sha256": fsutil.file_hash(adapter) if adapter and adapter.is_file() else None,
        "to": config.to, "quant": config.quant if config.to != "merged" else None,
        "chat_template_sha256": hashlib.sha256((tokenizer.chat_template or "").encode()).hexdigest(),
        "system_prompt": _system(found),
        "check": parity.summary | {"passed": parity.passed} if parity else None,
        "files": files, "versions": _versions(),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def _versions() -> dict[str, str]:
    out = {}
    for tool in TOOLS:
        try:
            out[tool] = metadata.version(tool.replace("_", "-"))
        except metadata.PackageNotFoundError:
            out[tool] = "not installed"
    return out


def _system(found: Located) -> str | None:
    from onthejob.models.adapters import trained_system_prompt

    return trained_system_prompt(found.run) if found.run else None


def _run_name(found: Located) -> str:
    return (found.run or found.adapter or Path(found.model)).name


def _done(config: ExportConfig, out: Path, name: str) -> str:
    if config.to == "ollama":
        return f"export: wrote {out}; load it into Ollama with: ollama create {name} -f {out / 'Modelfile'}"
    if config.to == "merged":
        return f"export: wrote {out}; load it with AutoModelForCausalLM.from_pretrained('{out}') or: vllm serve {out}"
    return f"export: wrote {out / f'{name}.{config.quant}.gguf'}; run it with llama.cpp, or: ojt eval {out / f'{name}.{config.quant}.gguf'}"
