"""Build the model to train: the base model, then a PEFT adapter (LoRA, IA3) or full fine-tuning,
with the first N layers frozen on request."""

from __future__ import annotations

from torch import nn

from onthejob.errors import ConfigError
from onthejob.train.config import TrainConfig


def _layers(model: nn.Module) -> nn.ModuleList:
    inner = getattr(model, "model", None)
    layers = getattr(inner, "layers", None)
    if not isinstance(layers, nn.ModuleList):
        raise ConfigError("freeze_layers: this architecture has no model.layers list", fix="set freeze_layers: 0")
    return layers


def _linear_names(model: nn.Module) -> list[str]:
    """Names of every linear layer but the output head: what "all-linear" means, spelled out so
    PEFT accepts it together with layers_to_transform."""
    head = model.get_output_embeddings()
    return sorted({name.rsplit(".", 1)[-1] for name, m in model.named_modules() if isinstance(m, nn.Linear) and m is not head})


def build(model: nn.Module, config: TrainConfig) -> nn.Module:
    """Wrap ``model`` for the configured method; returns the module whose parameters train."""
    n_layers = len(_layers(model)) if config.freeze_layers else 0
    if config.freeze_layers and config.freeze_layers >= n_layers:
        raise ConfigError(f"freeze_layers: {config.freeze_layers} freezes every one of the {n_layers} layers", fix=f"use a value below {n_layers}")
    trained_layers = list(range(config.freeze_layers, n_layers)) if config.freeze_layers else None
    model.config.use_cache = False
    if config.method == "full":
        for layer in _layers(model)[: config.freeze_layers] if config.freeze_layers else []:
            layer.requires_grad_(False)
        if config.freeze_layers:
            model.get_input_embeddings().requires_grad_(False)
        out = model
    else:
        from peft import IA3Config, LoraConfig, TaskType, get_peft_model

        if config.method == "lora":
            lora = config.lora
            peft_config = LoraConfig(
                task_type=TaskType.CAUSAL_LM,
                r=lora.r,
                lora_alpha=lora.alpha,
                lora_dropout=lora.dropout,
                target_modules=_linear_names(model) if lora.target_modules == "all-linear" else lora.target_modules,
                use_rslora=lora.rslora,
                use_dora=lora.dora,
                layers_to_transform=trained_layers,
            )
        else:
            peft_config = IA3Config(
                task_type=TaskType.CAUSAL_LM,
                target_modules=config.ia3.target_modules,
                feedforward_modules=config.ia3.feedforward_modules,
            )
        out = get_peft_model(model, peft_config)
    if config.gradient_checkpointing:
        base = out.get_base_model() if hasattr(out, "get_base_model") else out
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if config.method != "full":
            base.enable_input_require_grads()
    return out


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total
