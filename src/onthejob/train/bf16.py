"""bf16 where autocast would cast anyway: frozen linear weights stored in bf16, and the outputs of
norms that feed only linear layers handed on in bf16.

Under bf16 autocast every matmul casts its fp32 operands to bf16 on each use. Two kinds of those
casts are pure overhead, and the calls here remove them (only under bf16 autocast, and never for
full fine-tuning, which saves every weight):

* ``store_frozen_weights_in_bf16``: a frozen linear weight is otherwise cast on every forward and
  the copy kept for backward; stored in bf16 once, it takes half the memory and none of the copies.
* ``hand_on_norm_outputs_in_bf16``: in a Llama-style decoder the normalised hidden state feeds q,
  k, v (or gate and up) and their LoRA branches, each of which casts it separately, which kept up
  to ten bf16 copies of it for backward. A forward hook on the norm casts it once instead. The
  forward values are the ones autocast computes; the gradients reaching a hooked norm's output
  are summed in bf16 rather than in fp32.

Which norms qualify is observed, not assumed from the model's type: ``linear_only_norms`` runs one
tiny forward of the decoder body and records which functions consume each norm's output. A norm
qualifies when every consumer is ``F.linear``; one feeding a residual add (Gemma's post-attention
norm) or one whose output is returned rather than consumed (the final norm) does not.

Embeddings, norm weights, the residual stream, the LM head and everything trainable stay in fp32,
as autocast has them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from onthejob.train.loss import causal_lm

# Functions whose output stands for their input: what consumes it consumes the norm's output.
_PASS_THROUGH = {F.dropout, F.alpha_dropout, F.feature_alpha_dropout, torch.dropout}


def store_frozen_weights_in_bf16(model: nn.Module, dtype: torch.dtype = torch.bfloat16) -> int:
    """Store every frozen linear weight but the output head's in ``dtype``; returns how many were
    converted. Call only when training under autocast to ``dtype``."""
    head = model.get_output_embeddings()  # tied to the input embeddings in many models: left alone
    converted = 0
    for module in model.modules():
        if isinstance(module, nn.Linear) and module is not head:
            w = module.weight
            if not w.requires_grad and w.dtype in (torch.float32, torch.float16):  # not 4-bit
                module.weight.data = w.data.to(dtype)
                converted += 1
    # The loader maps the weights file into memory; the fp32 linear weights it held are unused
    # now, but the mapping (and every page of it read) stays while any tensor still points into
    # it. Copying the few frozen tensors left (embeddings, norms) lets it go.
    for p in model.parameters():
        if not p.requires_grad and p.dtype == torch.float32:
            p.data = p.data.clone()
    return converted


def hand_on_norm_outputs_in_bf16(model: nn.Module) -> list[str]:
    """Hook every norm that feeds only linear layers so that, under autocast, its output is cast
    to the autocast dtype once; returns the hooked norms' names."""
    names = linear_only_norms(model)
    for name in names:
        model.get_submodule(name).register_forward_hook(_to_autocast_dtype)
    return names


def linear_only_norms(model: nn.Module) -> list[str]:
    """Names (within ``model``) of the norms in its decoder body whose output is consumed only by
    ``F.linear``, as seen in one no-grad forward of four token ids."""
    body = causal_lm(model).model
    names = {module: name for name, module in model.named_modules()}
    norms = [m for m in body.modules() if _is_norm(m)]
    consumers = _observe(body, norms)
    return [names[m] for m in norms if consumers.get(m) and consumers[m] <= {F.linear}]


def _is_norm(module: nn.Module) -> bool:
    """A leaf whose only parameters are per-feature vectors (a scale, maybe a shift): RMSNorm or
    LayerNorm of any model's own class. (``_Consumers.watch`` also wants output shape == input.)"""
    params = list(module.parameters(recurse=False))
    return next(module.children(), None) is None and bool(params) and all(p.dim() == 1 for p in params)


def _observe(body: nn.Module, norms: list[nn.Module]) -> dict[nn.Module, set]:
    """The functions that consumed each norm's output in one tiny forward of ``body``."""
    recorder = _Consumers()
    handles = [m.register_forward_hook(recorder.watch, with_kwargs=True) for m in norms]
    training = [(m, m.training) for m in body.modules()]
    device = next(body.parameters()).device
    body.eval()  # no dropout: looking must not draw random numbers the run would have drawn
    try:
        # Under autocast, as in training: frozen weights may already be stored in bf16.
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16), recorder:
            body(input_ids=torch.arange(4, device=device)[None], use_cache=False)
    finally:
        for handle in handles:
            handle.remove()
        for module, mode in training:
            module.training = mode
    return recorder.consumers


class _Consumers(TorchFunctionMode):
    """Records, for each watched norm, every torch function that takes its output tensor (or a
    dropout of it) and gives back a new tensor. Calls that give back no tensor (``.shape``,
    ``.dtype``) or the very tensor they were given (``x.to(x.dtype)``) only look, and
    ``nn.Identity`` calls no function at all: what consumes its output consumes the norm's."""

    def __init__(self):
        super().__init__()
        self.consumers: dict[nn.Module, set] = {}
        # id(tensor) -> (norm, tensor); holding the tensor keeps its id from being reused
        self._owner: dict[int, tuple[nn.Module, torch.Tensor]] = {}

    def watch(self, module, args, kwargs, output):
        """Forward hook on a norm: from now on, the calls that take ``output`` are its consumers."""
        given = next((t for t in (*args, *kwargs.values()) if isinstance(t, torch.Tensor)), None)
        if isinstance(output, torch.Tensor) and given is not None and output.shape == given.shape:
            self._owner[id(output)] = (module, output)
            self.consumers.setdefault(module, set())

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        result = func(*args, **kwargs)
        inputs = _tensors((args, kwargs))
        norms = {self._owner[id(t)][0] for t in inputs if id(t) in self._owner}
        outputs = _tensors(result)
        if not norms or not outputs or any(o is i for o in outputs for i in inputs):
            return result
        for norm in norms:
            if func in _PASS_THROUGH:
                self._owner[id(result)] = (norm, result)
            else:
                self.consumers[norm].add(func)
        return result


def _tensors(obj) -> list[torch.Tensor]:
    """The tensors in a call's arguments or result, however nested in tuples, lists and dicts."""
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, dict):
        obj = list(obj.values())
    if isinstance(obj, (list, tuple)):
        return [t for item in obj for t in _tensors(item)]
    return []


def _to_autocast_dtype(module, args, output):
    device = output.device.type
    if torch.is_autocast_enabled(device):
        return output.to(torch.get_autocast_dtype(device))
    return output
