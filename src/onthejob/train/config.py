"""The typed training config: every field has a default and a one-line description.

    ojt train configs/hr-demo.yaml --optim.lr 1e-4

Loading a config has no side effects (nothing is read but the YAML itself), so "every shipped
config validates" is a plain test. Unknown keys are rejected and *all* problems are reported at
once, each naming its dotted path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from onthejob.errors import ConfigError
from onthejob.models.registry import DEFAULT_MODEL


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class Dataset(Section):
    path: str = Field(description="a data file in any supported format (chat JSONL, Alpaca, ShareGPT, prompt/completion, CSV/TSV)")
    weight: float = Field(1.0, gt=0, description="mixing weight: examples drawn per epoch = weight x examples in the file")
    format: str | None = Field(None, description="input format; null = detected from the file")
    map: dict[str, str] | None = Field(None, description="CSV/TSV column to role, e.g. {question: user, answer: assistant}")
    system: str | None = Field(None, description="a fixed system prompt added to every CSV/TSV example")


class DataConfig(Section):
    train: list[Dataset] = Field(default_factory=list, min_length=1, description="training datasets, mixed by weight")
    eval: str | None = Field(None, description="a separate eval file; null = hold out eval_split of the training data")
    eval_split: float = Field(0.0, ge=0, lt=1, description="fraction of the training data held out for eval when no eval file is given")
    train_on: Literal["all", "last", "sequence"] = Field("all", description="supervised tokens: every assistant turn, the last one, or the whole sequence")
    max_seq_len: int = Field(1024, ge=16, description="longest row in tokens; longer examples are cut, shorter ones packed together")
    pack: bool = Field(True, description="pack several examples per row (attention never crosses examples)")


class LoraSection(Section):
    r: int = Field(16, ge=1, description="rank of the low-rank update")
    alpha: float = Field(32, gt=0, description="scaling numerator: the update is scaled by alpha / r (alpha / sqrt(r) with rslora)")
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout on the adapter input")
    target_modules: str | list[str] = Field("all-linear", description='"all-linear" or a list of module names, e.g. [q_proj, v_proj]')
    rslora: bool = Field(False, description="rank-stabilised LoRA scaling (alpha / sqrt(r))")
    dora: bool = Field(False, description="weight-decomposed LoRA (DoRA); slower, sometimes better")


class IA3Section(Section):
    target_modules: list[str] | None = Field(None, description="modules to scale; null = PEFT's default for the architecture")
    feedforward_modules: list[str] | None = Field(None, description="which targets are feed-forward (scaled on the input); null = PEFT's default")


class OptimConfig(Section):
    lr: float = Field(1e-3, gt=0, description="peak learning rate (AdamW); 1e-3 suits LoRA on small models, use ~2e-4 for 7B+ or full fine-tuning")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay")
    betas: tuple[float, float] = Field((0.9, 0.999), description="AdamW betas")
    warmup_steps: int | None = Field(None, ge=0, description="linear warm-up steps; null = warmup_ratio of all steps")
    warmup_ratio: float = Field(0.05, ge=0, lt=1, description="warm-up as a fraction of all steps, when warmup_steps is null")
    schedule: Literal["cosine", "linear", "constant"] = Field("cosine", description="learning-rate decay after warm-up")
    min_lr_ratio: float = Field(0.0, ge=0, le=1, description="the schedule decays to lr x min_lr_ratio")
    grad_clip: float | None = Field(1.0, gt=0, description="clip the global gradient norm to this; null = no clipping")


class TrainConfig(Section):
    model: str = Field(DEFAULT_MODEL, description="base model: a known name, a local Hugging Face folder or a hub id")
    output_dir: str = Field("runs/run", description="the run folder: config, metrics, checkpoints and final/")
    data: DataConfig = Field(description="what to train on")
    method: Literal["lora", "ia3", "full"] = Field("lora", description="lora (PEFT, default), ia3 (PEFT) or full fine-tuning")
    lora: LoraSection = Field(default_factory=LoraSection, description="LoRA settings (method: lora)")
    ia3: IA3Section = Field(default_factory=IA3Section, description="IA3 settings (method: ia3)")
    freeze_layers: int = Field(0, ge=0, description="leave the first N transformer layers untouched")
    optim: OptimConfig = Field(default_factory=OptimConfig, description="optimizer and learning-rate schedule")
    epochs: float = Field(3, gt=0, description="passes over the (mixed) training data; fractions allowed")
    max_steps: int | None = Field(None, ge=1, description="stop after this many optimizer steps (overrides epochs)")
    micro_batch_size: int = Field(2, ge=1, description="rows per forward/backward pass, per process")
    grad_accum: int = Field(1, ge=1, description="micro-steps accumulated into one optimizer step")
    precision: Literal["auto", "bf16", "fp32"] = Field("auto", description="auto = bf16 autocast where the hardware supports it (CPUs included), else fp32")
    gradient_checkpointing: bool = Field(False, description="recompute activations in backward: less memory, ~30% slower")
    compile: bool = Field(False, description="torch.compile the model (opt-in; first steps are slow)")
    loss_chunk: int = Field(2048, ge=64, description="supervised positions per chunk of the cross-entropy (bounds logits memory)")
    seed: int = Field(0, description="seed for data order, splits, initialisation and dropout")
    eval_every: int = Field(0, ge=0, description="evaluate every N steps (0 = only at the end)")
    early_stopping_patience: int | None = Field(None, ge=1, description="stop after this many evaluations without a better eval loss")
    save_every: int = Field(0, ge=0, description="checkpoint every N steps (0 = only at the end and on Ctrl-C)")
    keep_checkpoints: int = Field(2, ge=1, description="keep the last K checkpoints")
    log_every: int = Field(1, ge=1, description="write metrics every N steps")

    @model_validator(mode="after")
    def _eval_source(self) -> TrainConfig:
        if self.data.eval and self.data.eval_split:
            raise ValueError("give data.eval or data.eval_split, not both")
        if self.method == "ia3" and self.freeze_layers:
            raise ValueError("freeze_layers works with method lora or full, not ia3")
        if self.early_stopping_patience and not (self.data.eval or self.data.eval_split):
            raise ValueError("early_stopping_patience needs eval data (data.eval or data.eval_split)")
        return self


def _loc(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _explain(err: dict) -> str:
    where, kind = _loc(err["loc"]), err["type"]
    if kind == "extra_forbidden":
        return f"{where}: unknown key (check the spelling; docs/config.md lists every key)"
    if kind == "missing":
        return f"{where}: required"
    return f"{where}: {err['msg']} (got {err.get('input')!r})"


def validate(raw: dict[str, Any], *, source: str = "config") -> TrainConfig:
    try:
        return TrainConfig.model_validate(raw)
    except ValidationError as e:
        problems = [_explain(err) for err in e.errors()]
        raise ConfigError(f"{source}: {len(problems)} problem(s)", problems) from None


def parse_overrides(args: list[str]) -> dict[str, Any]:
    """``["--optim.lr", "1e-4", "--epochs=2"]`` -> ``{"optim": {"lr": 1e-4}, "epochs": 2}``."""
    out: dict[str, Any] = {}
    it = iter(args)
    for arg in it:
        if not arg.startswith("--") or len(arg) < 3:
            raise ConfigError(f"unexpected argument {arg!r}", fix="overrides look like --section.key VALUE")
        key, eq, value = arg[2:].partition("=")
        if not eq:
            value = next(it, None)
            if value is None:
                raise ConfigError(f"--{key} has no value", fix=f"write --{key} VALUE")
        set_dotted(out, key.replace("-", "_"), yaml.safe_load(value))
    return out


def set_dotted(tree: dict[str, Any], key: str, value: Any) -> None:
    """``set_dotted(t, "optim.lr", 1e-4)`` sets ``t["optim"]["lr"]``, making sections as needed."""
    *parents, leaf = key.split(".")
    for part in parents:
        tree = tree.setdefault(part, {})
    tree[leaf] = value


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def load(path: str | Path | None, overrides: list[str] | None = None, *, defaults: dict | None = None) -> TrainConfig:
    raw: dict[str, Any] = dict(defaults or {})
    source = str(path) if path else "command line"
    if path:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: no such config file", fix="see configs/ for examples")
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f"{path}:{mark.line + 1}" if mark else str(path)
            raise ConfigError(f"{where}: not valid YAML ({getattr(e, 'problem', e)})") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of keys, got {type(loaded).__name__}")
        raw = merge(raw, loaded)
    raw = merge(raw, parse_overrides(overrides or []))
    return validate(raw, source=source)


def to_yaml(config: TrainConfig) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False, allow_unicode=True)


def reference(model: type[BaseModel] = TrainConfig, prefix: str = "") -> list[str]:
    """One line per key, ``dotted.key (default): description``; the config reference in docs/."""
    lines = []
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        sub = field.annotation
        if isinstance(sub, type) and issubclass(sub, BaseModel):
            lines.append(f"- `{key}`: {field.description}")
            lines.extend(reference(sub, key + "."))
        else:
            default = "required" if field.is_required() else repr(field.get_default(call_default_factory=True))
            lines.append(f"- `{key}` (default `{default}`): {field.description}")
    return lines
