"""What a person watching a run sees: the derived numbers at start, then one progress bar."""

from __future__ import annotations

import sys

from tqdm import tqdm

from onthejob.console import say  # noqa: F401 - the training modules' say


def _m(n: float) -> str:
    return f"{n / 1e6:.1f}M" if n >= 1e5 else f"{n:,.0f}"


def describe_start(config, data, plan, total: int, trainable: int, n_total: int, bf16: bool, acc, *, resumed_at: int | None) -> None:
    method = {"ia3": "IA3", "full": "full fine-tuning"}.get(config.method) or f"LoRA r={config.lora.r} alpha={config.lora.alpha:g}"
    if config.method == "lora" and (config.lora.dora or config.lora.rslora):
        method += " (" + ", ".join(n for n, on in (("DoRA", config.lora.dora), ("rsLoRA", config.lora.rslora)) if on) + ")"
    mix = ", ".join(f"{n} from {p}" for p, n in data.counts.items())
    rows_tokens = data.train_tokens / max(1, len(data.train_rows))
    lines = [
        f"model      {config.model}, {method}" + (f", first {config.freeze_layers} layers frozen" if config.freeze_layers else ""),
        f"params     trainable {_m(trainable)} of {_m(n_total)} ({trainable / n_total:.2%})",
        f"examples   {data.n_train} for training ({mix}), {data.n_eval} for eval",
        f"tokens     {data.train_tokens:,} in {len(data.train_rows)} rows of <= {config.data.max_seq_len} ({data.supervised_tokens:,} supervised) per epoch",
        f"batch      {plan.micro_batch} rows x {config.grad_accum} accumulation x {acc.num_processes} process(es) = {plan.rows_per_step} rows (~{plan.rows_per_step * rows_tokens:,.0f} tokens) per step",
        f"steps      {total} ({plan.steps_per_epoch} per epoch), lr {config.optim.lr:g} {config.optim.schedule}",
        f"precision  {'bf16 autocast' if bf16 else 'fp32'} on {acc.device}",
        f"run        {config.output_dir}" + (f" (resumed at step {resumed_at})" if resumed_at is not None else ""),
    ] + [f"derived    {note}" for note in data.derived]
    say("\n".join(lines))


class Progress:
    """A tqdm bar over steps: loss, learning rate, tokens/s; tqdm's own ETA is the time left."""

    def __init__(self, total: int, start: int, *, enabled: bool):
        self.bar = tqdm(total=total, initial=start, unit="step", dynamic_ncols=True, disable=not enabled, file=sys.stderr)
        self.tokens = 0
        self.seconds = 0.0

    def update(self, step: int, loss: float, lr: float, tokens: int, seconds: float) -> None:
        self.tokens += tokens
        self.seconds += seconds
        self.bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}", tok_s=f"{self.tokens / max(self.seconds, 1e-9):,.0f}", refresh=False)
        self.bar.update(step - self.bar.n)

    def note(self, message: str) -> None:
        self.bar.write(message, file=sys.stderr)

    def close(self) -> None:
        self.bar.close()
