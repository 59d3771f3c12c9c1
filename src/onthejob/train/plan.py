"""``ojt plan CONFIG``: peak memory and time per epoch, estimated before training.

    ojt plan configs/hr-demo.yaml
    ojt plan configs/hr-demo.yaml --gpu H100 --gpu "RTX 4090"

The data is read, checked and packed exactly as ``ojt train`` would (so the token counts are the
run's own), and the model's shape is read from its config; no weights are loaded. Then:

* **time** = matmul FLOPs / (matmul peak x efficiency) + attention + per-token overhead. On this
  machine the matmul peak is measured (a second of large matmuls in the run's dtype); the
  efficiencies and the per-token overhead were measured on CPUs running ``ojt train`` (see
  ``CPU_*`` below). On a named GPU the peak is the card's dense bf16 (or fp32) figure and the
  whole step is assumed to run at ``GPU_MFU`` of it: a rough figure, printed as such.
* **memory** = the process (Python, torch, transformers) + weights (frozen linear weights in bf16
  under bf16 LoRA) + for each trained parameter its fp32 value, gradient and two AdamW moments +
  the activations kept for backward by one micro-batch + the loss's logits chunk.

FLOPs per trained token, N the parameters of the linear layers: forward 2N; backward 2N for the
activation gradients, +2N for the weight gradients of full fine-tuning, +2N for the forward that
gradient checkpointing runs again. Attention adds 6 n d_q per layer for an example of n tokens.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from onthejob.train.config import TrainConfig

GIB = 2**30
# Measured on 2 AMD EPYC (Zen 4) cores with ``ojt train``, SmolLM2-135M, LoRA r16, rows of 512;
# the overheads fitted to tests/train/measure_run.py on test_plan's two configs: hr-demo 336-411
# tokens/s (the low end inside the full test suite), checkpointed 186-226; estimates in the middle.
CPU_PROCESS_BYTES = 0.40 * GIB  # python + torch + transformers + peft + accelerate, imported
CPU_MATMUL_EFFICIENCY = 0.85  # of the measured large-matmul peak, for the model's (T x d) matmuls
CPU_ATTENTION_EFFICIENCY = 0.12  # PyTorch's CPU flash attention on ~200-token examples, fp32
CPU_ATTENTION_EFFICIENCY_BF16 = 0.085  # onthejob's bf16 matmul attention (train/attention.py), same examples
CPU_OVERHEAD_S_PER_TOKEN_LAYER = 62e-6  # element-wise work per token and layer, x 1/threads
CPU_OVERHEAD_S_PER_MICRO_STEP_LAYER = 5.2e-3  # Python and dispatch per micro-step and layer
CPU_CHECKPOINT_OVERHEAD = (1.5, 2.0)  # gradient checkpointing: x per-token work, x per-micro-step work
ACT_PER_HIDDEN = 20  # activation bytes kept per hidden unit, per token and layer (bf16 autocast)
ACT_PER_INTERMEDIATE = 8  # and per MLP unit
CPU_WORKSPACE_BYTES = 0.6 * GIB  # allocator slack and autograd's working memory beyond the tensors kept
CPU_LOADING_SLACK_BYTES = 0.15 * GIB
GPU_MFU = 0.35  # assumed share of a GPU's dense peak that a whole training step reaches
GPU_PROCESS_BYTES = 1.0 * GIB  # CUDA context and allocator slack

# Dense tensor-core peaks (TFLOP/s, bf16 with fp32 accumulation; fp32 for cards without bf16)
# and memory (GiB), from the vendors' data sheets.
GPUS: dict[str, tuple[float, float, bool]] = {
    "H200": (989, 141, True),
    "H100": (989, 80, True),
    "A100 80GB": (312, 80, True),
    "A100": (312, 40, True),
    "L40S": (362, 48, True),
    "A10G": (70, 24, True),
    "L4": (121, 24, True),
    "RTX 4090": (165, 24, True),
    "RTX 3090": (71, 24, True),
    "T4": (8.1, 16, False),
}


@dataclass
class Shape:
    """What the estimate needs to know about a model, from its config alone."""

    layers: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    tied: bool

    @classmethod
    def of(cls, model_config) -> Shape:
        c = model_config
        heads = c.num_attention_heads
        head_dim = getattr(c, "head_dim", None) or c.hidden_size // heads
        return cls(
            layers=c.num_hidden_layers, hidden=c.hidden_size, intermediate=c.intermediate_size, heads=heads,
            kv_heads=getattr(c, "num_key_value_heads", None) or heads, head_dim=head_dim, vocab=c.vocab_size,
            tied=bool(getattr(c, "tie_word_embeddings", False)),
        )

    @property
    def linear_params(self) -> int:
        """Weights of the decoder's linear layers (q, k, v, o and the three MLP matrices)."""
        h, d = self.hidden, self.head_dim
        attention = h * self.heads * d * 2 + h * self.kv_heads * d * 2
        return self.layers * (attention + 3 * h * self.intermediate)

    @property
    def embedding_params(self) -> int:
        return self.vocab * self.hidden * (1 if self.tied else 2)

    @property
    def params(self) -> int:
        return self.linear_params + self.embedding_params + (self.layers * 2 + 1) * self.hidden  # + norms

    def lora_params(self, r: int, targets: str | list[str]) -> int:
        h, d, i = self.hidden, self.head_dim, self.intermediate
        shapes = {"q_proj": (h, self.heads * d), "k_proj": (h, self.kv_heads * d), "v_proj": (h, self.kv_heads * d),
                  "o_proj": (self.heads * d, h), "gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h)}
        names = shapes if targets == "all-linear" else [t for t in targets if t in shapes]
        return self.layers * sum(r * (shapes[n][0] + shapes[n][1]) for n in names)

    def activation_bytes(self, bf16: bool) -> float:
        """Bytes one token keeps for backward in one decoder layer (measured layout of a Llama-style
        layer under bf16 autocast: fp32 residual-stream tensors, bf16 matmul inputs)."""
        h, i, kv = self.hidden, self.intermediate, self.kv_heads * self.head_dim
        scale = 1.0 if bf16 else 1.6  # fp32 keeps the matmul inputs at 4 bytes, not 2
        return scale * (ACT_PER_HIDDEN * h + ACT_PER_INTERMEDIATE * i + 8 * kv)


@dataclass
class Estimate:
    where: str
    tokens_per_s: float
    seconds_per_epoch: float
    peak_bytes: float
    memory_bytes: float | None  # what the device has, when known

    def to_dict(self) -> dict:
        return {"where": self.where, "tokens_per_s": round(self.tokens_per_s, 1), "seconds_per_epoch": round(self.seconds_per_epoch, 1),
                "peak_gib": round(self.peak_bytes / GIB, 2), "memory_gib": None if self.memory_bytes is None else round(self.memory_bytes / GIB, 1), "fits": self.fits}

    @property
    def fits(self) -> bool:
        return self.memory_bytes is None or self.peak_bytes < 0.9 * self.memory_bytes


@dataclass
class Workload:
    """The run's data as the estimate sees it: per epoch, and per optimizer step."""

    tokens: int  # per epoch
    supervised: int
    rows: int
    steps: int  # per epoch
    rows_per_step: int
    row_tokens: float  # mean tokens in a row
    attention_n: float  # sum(n^2) / sum(n) over the examples: the mean "context" a token attends over


def workload(config: TrainConfig, data) -> Workload:
    from onthejob.train.schedule import Plan

    plan = Plan(len(data.train_rows), micro_batch=config.micro_batch_size, grad_accum=config.grad_accum, world=1, seed=config.seed)
    lengths = [n for row in data.train_rows for n in row.lengths]
    return Workload(
        tokens=data.train_tokens, supervised=data.supervised_tokens, rows=len(data.train_rows),
        steps=plan.steps_per_epoch, rows_per_step=plan.rows_per_step,
        row_tokens=data.train_tokens / max(1, len(data.train_rows)),
        attention_n=sum(n * n for n in lengths) / max(1, sum(lengths)),
    )


def flops_per_token(shape: Shape, config: TrainConfig, work: Workload) -> tuple[float, float]:
    """(matmul FLOPs, attention FLOPs) per trained token."""
    n_lin = shape.linear_params
    full = config.method == "full"
    passes = 2 + 2 + (2 if full else 0) + (2 if config.gradient_checkpointing else 0)
    matmul = passes * n_lin
    if config.method == "lora":
        matmul += 6 * shape.lora_params(config.lora.r, config.lora.target_modules)
    head = shape.vocab * shape.hidden
    matmul += (6 if full else 4) * head * work.supervised / max(1, work.tokens)
    attention = shape.layers * 6 * work.attention_n * shape.heads * shape.head_dim
    return matmul, attention


def peak_memory(shape: Shape, config: TrainConfig, work: Workload, *, bf16: bool, gpu: bool) -> float:
    lean = bf16 and config.method != "full"
    n_lin, n_other = shape.linear_params, shape.params - shape.linear_params
    weights = (2 if lean else 4) * n_lin + 4 * n_other
    trained = shape.params if config.method == "full" else (shape.lora_params(config.lora.r, config.lora.target_modules) if config.method == "lora" else 0)
    states = 16 * trained  # fp32 value, gradient, two AdamW moments
    tokens = config.micro_batch_size * min(config.data.max_seq_len, work.row_tokens * 1.15)
    per_layer = shape.activation_bytes(bf16)
    if config.gradient_checkpointing:  # layer inputs kept, one layer's activations rebuilt at a time
        activations = tokens * (shape.layers * 4 * shape.hidden + per_layer)
    else:
        activations = tokens * shape.layers * per_layer
    supervised = tokens * work.supervised / max(1, work.tokens)
    logits = min(config.loss_chunk, supervised) * shape.vocab * 8  # bf16 logits, fp32 log-probs, bf16 grads
    process = GPU_PROCESS_BYTES if gpu else CPU_PROCESS_BYTES + CPU_WORKSPACE_BYTES
    training = process + weights + states + activations + logits
    if gpu:
        return training
    # Loading maps the fp32 weights file and, under lean bf16, converts from it: a peak of its own.
    loading = CPU_PROCESS_BYTES + CPU_LOADING_SLACK_BYTES + 4 * shape.params + (2 * n_lin if lean else 0)
    return max(training, loading)


def matmul_peak(dtype: torch.dtype, seconds: float = 0.5, *, device: str = "cpu", n: int = 1024) -> float:
    """FLOP/s of this machine's best n x n matmul in ``dtype`` over about ``seconds``."""
    a, b = (torch.randn(n, n, device=device).to(dtype) for _ in range(2))
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    a @ b  # warm-up
    sync()
    best, deadline = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        t0 = time.perf_counter()
        a @ b
        sync()
        best = max(best, 2 * n**3 / (time.perf_counter() - t0))
    return best


def here(shape: Shape, config: TrainConfig, work: Workload, *, bf16: bool) -> Estimate:
    import psutil

    threads = torch.get_num_threads()
    peak = matmul_peak(torch.bfloat16 if bf16 else torch.float32)
    attn_rate = peak * (CPU_ATTENTION_EFFICIENCY_BF16 if bf16 else CPU_ATTENTION_EFFICIENCY)
    matmul, attention = flops_per_token(shape, config, work)
    per_token_work, per_step_work = CPU_CHECKPOINT_OVERHEAD if config.gradient_checkpointing else (1.0, 1.0)
    micro_step_tokens = config.micro_batch_size * work.row_tokens
    per_token = (
        matmul / (peak * CPU_MATMUL_EFFICIENCY)
        + attention / attn_rate
        + shape.layers * CPU_OVERHEAD_S_PER_TOKEN_LAYER / threads * (shape.hidden / 576) * per_token_work
        + shape.layers * CPU_OVERHEAD_S_PER_MICRO_STEP_LAYER * per_step_work / micro_step_tokens
    )
    tokens_per_s = 1 / per_token
    return Estimate(
        where=f"this machine ({threads} CPU threads, {'bf16' if bf16 else 'fp32'} matmul {peak / 1e9:.0f} GFLOP/s measured)",
        tokens_per_s=tokens_per_s,
        seconds_per_epoch=work.tokens / tokens_per_s,
        peak_bytes=peak_memory(shape, config, work, bf16=bf16, gpu=False),
        memory_bytes=psutil.virtual_memory().total,
    )


def on_gpu(name: str, shape: Shape, config: TrainConfig, work: Workload) -> Estimate:
    tflops, memory_gib, has_bf16 = GPUS[name]
    bf16 = has_bf16 and config.precision != "fp32"
    matmul, attention = flops_per_token(shape, config, work)
    tokens_per_s = tflops * 1e12 * GPU_MFU / (matmul + attention)
    return Estimate(
        where=f"{name} ({tflops:g} TFLOP/s {'bf16' if bf16 else 'fp32'}, {GPU_MFU:.0%} of it assumed)",
        tokens_per_s=tokens_per_s,
        seconds_per_epoch=work.tokens / tokens_per_s,
        peak_bytes=peak_memory(shape, config, work, bf16=bf16, gpu=True),
        memory_bytes=memory_gib * GIB,
    )


def gpu_name(text: str) -> str:
    """Match a GPU name loosely: "h100", "4090", "a100 80gb"."""
    from onthejob.errors import ConfigError

    want = text.lower().replace("-", " ").replace("_", " ")
    hits = [n for n in GPUS if n.lower() == want] or [n for n in GPUS if want in n.lower()]
    if len(hits) != 1:
        raise ConfigError(f"--gpu {text}: unknown GPU", fix="use one of: " + ", ".join(GPUS))
    return hits[0]


DEFAULT_GPUS = ["H100", "A100", "RTX 4090"]


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def plan_report(config: TrainConfig, gpus: list[str] | None = None) -> tuple[list[Estimate], str]:
    """Estimates for this machine and each GPU, and the text ``ojt plan`` prints."""
    from transformers import AutoConfig

    from onthejob.models.load import load_tokenizer, resolve
    from onthejob.train.data import prepare
    from onthejob.train.loop import use_bf16
    from onthejob.train.rag import RunRag

    names = [gpu_name(g) for g in (gpus or DEFAULT_GPUS)]
    shape = Shape.of(AutoConfig.from_pretrained(resolve(config.model)))
    rag = RunRag(config.data.rag, seed=config.seed, say=lambda line: None) if config.data.rag else None
    data = prepare(config, load_tokenizer(config.model), rag=rag)  # passages retrieved as the run would (quick)
    config = data.config  # what the run will use, small-data defaults included
    work = workload(config, data)
    bf16 = use_bf16(config, torch.device("cpu"))
    estimates = [here(shape, config, work, bf16=bf16)] + [on_gpu(n, shape, config, work) for n in names]
    method = {"ia3": "IA3", "full": "full fine-tuning"}.get(config.method) or f"LoRA r{config.lora.r}"
    epochs = config.epochs if not config.max_steps else config.max_steps / work.steps
    lines = [
        f"model      {config.model}: {shape.params / 1e6:,.1f}M parameters, {method}"
        + (", gradient checkpointing" if config.gradient_checkpointing else ""),
        f"data       {data.n_train} examples, {work.tokens:,} tokens in {work.rows} rows of <= {config.data.max_seq_len}; "
        f"{work.steps} steps of {work.rows_per_step} rows per epoch, {epochs:g} epochs",
        "",
        f"{'where':58} {'tokens/s':>9} {'per epoch':>10} {'whole run':>10} {'peak memory':>12}",
    ]
    for e in estimates:
        memory = f"{e.peak_bytes / GIB:.1f} GiB" + ("" if e.fits else " (too much)")
        lines.append(f"{e.where:58} {e.tokens_per_s:9,.0f} {_duration(e.seconds_per_epoch):>10} {_duration(e.seconds_per_epoch * epochs):>10} {memory:>12}")
    lines += [f"derived    {note}" for note in data.derived]
    lines += ["", "Estimates: this machine's within about 30% (measured matmul speed, calibrated costs); the GPUs' rougher (an assumed share of the data-sheet peak)."]
    return estimates, "\n".join(lines)
