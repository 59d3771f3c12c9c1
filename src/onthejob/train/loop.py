"""The training loop: forward, loss, backward, clip, optimizer step, schedule step, log,
maybe-evaluate, maybe-checkpoint. One code path for a CPU, a GPU or several processes.

    ojt train configs/hr-demo.yaml
    torchrun --nproc-per-node 2 -m onthejob train configs/hr-demo.yaml
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from pathlib import Path

import torch

from onthejob.data.pack import collate
from onthejob.errors import RunError
from onthejob.train import checkpoint, config as cfg, runfolder
from onthejob.train.data import fingerprint, prepare
from onthejob.train.loss import TrainForward
from onthejob.train.model import build, count_parameters
from onthejob.train.progress import Progress, describe_start, say
from onthejob.train.resume import reconcile
from onthejob.train.schedule import Plan, lr_lambda

FAULT_ENV = "ONTHEJOB_FAULT_AFTER_STEP"  # fault injection for tests: SIGKILL self after this step


def use_bf16(config: cfg.TrainConfig, device: torch.device) -> bool:
    if config.precision != "auto":
        return config.precision == "bf16"
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


class StopFlag:
    """First Ctrl-C asks the loop to checkpoint and stop after the current step; a second one aborts."""

    def __init__(self):
        self.requested = False

    def __enter__(self):
        self._old = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, *_):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        say("\nstopping after this step and saving a checkpoint (Ctrl-C again to abort without saving)")

    def __exit__(self, *exc):
        signal.signal(signal.SIGINT, self._old)


def run(config: cfg.TrainConfig, *, resume: Path | None = None) -> Path:
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    from onthejob.models.load import load_model

    acc = Accelerator(cpu=not torch.cuda.is_available())
    run_dir = Path(config.output_dir)
    ckpt = checkpoint.latest(run_dir) if resume else None
    if resume and ckpt is None:
        say(f"{run_dir} has no complete checkpoint yet; starting from the beginning")
    set_seed(config.seed)
    base, tokenizer = load_model(config.model, on_convert=say)
    model = build(base, config)
    if ckpt:
        checkpoint.load_trainable(model, ckpt)
    data = prepare(config, tokenizer)
    plan = Plan(len(data.train_rows), micro_batch=config.micro_batch_size, grad_accum=config.grad_accum, world=acc.num_processes, seed=config.seed)
    total = plan.total_steps(config.epochs, config.max_steps)
    warmup = config.optim.warmup_steps if config.optim.warmup_steps is not None else int(config.optim.warmup_ratio * total)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.optim.lr, betas=config.optim.betas, weight_decay=config.optim.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(warmup=warmup, total=total, schedule=config.optim.schedule, min_ratio=config.optim.min_lr_ratio))
    step, state = 0, {}
    if ckpt:
        state = checkpoint.load_state(ckpt, optimizer, scheduler)
        step = state["step"]
    forward = TrainForward(model, chunk=config.loss_chunk)
    if config.compile:
        forward = torch.compile(forward)
    forward, optimizer = acc.prepare(forward, optimizer)
    bf16 = use_bf16(config, acc.device)
    trainable, n_total = count_parameters(model)
    if acc.is_main_process:
        describe_start(config, data, plan, total, trainable, n_total, bf16, acc, resumed_at=step if ckpt else None)
        if not ckpt:
            runfolder.write_start(run_dir, cfg.to_yaml(config), {"base_model": config.model, "method": config.method, "data": fingerprint(config), "trainable_params": trainable, "total_params": n_total})
    metrics = runfolder.Metrics(run_dir, resume_step=step if ckpt else None, enabled=acc.is_main_process)
    best, bad_evals = state.get("best_eval_loss"), state.get("bad_evals", 0)

    def save(at: int) -> None:
        _save(acc, run_dir, at, forward, tokenizer, optimizer, scheduler, {"best_eval_loss": best, "bad_evals": bad_evals, "epoch": plan.epoch_of(at)}, config.keep_checkpoints)

    progress = Progress(total, step, enabled=acc.is_main_process)
    autocast = torch.autocast(acc.device.type, dtype=torch.bfloat16, enabled=bf16)
    with StopFlag() as stop:
        while step < total:
            forward.train()
            batches = [collate([data.train_rows[i] for i in rows], tokenizer.pad_token_id) for rows in plan.micro_batches(step, acc.process_index)]
            n_step = acc.reduce(torch.tensor(sum(_supervised(b) for b in batches), device=acc.device), "sum").item()
            loss_sum = torch.zeros((), device=acc.device)
            t0 = time.perf_counter()
            for m, batch in enumerate(batches):
                sync = contextlib.nullcontext() if m == len(batches) - 1 else acc.no_sync(forward)
                with sync, autocast:
                    part, _, _ = forward(**{k: v.to(acc.device) for k, v in batch.items()})
                # Normalise by the supervised tokens of the whole step (all micro-steps, all
                # processes); DDP averages gradients over processes, hence x num_processes.
                acc.backward(part * acc.num_processes / max(n_step, 1))
                loss_sum += part.detach()
            if config.optim.grad_clip:
                acc.clip_grad_norm_(params, config.optim.grad_clip)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            loss = acc.reduce(loss_sum, "sum").item() / max(n_step, 1)
            tokens = acc.reduce(torch.tensor(sum(int((b["input_ids"] != tokenizer.pad_token_id).sum()) for b in batches), device=acc.device), "sum").item()
            progress.update(step, loss, scheduler.get_last_lr()[0], tokens, time.perf_counter() - t0)
            if step % config.log_every == 0 or step == total:
                metrics.log(step=step, epoch=round(plan.epoch_of(step), 4), loss=loss, lr=scheduler.get_last_lr()[0], tokens=tokens, tokens_per_s=tokens / (time.perf_counter() - t0))
            if data.eval_rows and ((config.eval_every and step % config.eval_every == 0) or step == total):
                ev = evaluate(forward, data.eval_rows, tokenizer.pad_token_id, config.micro_batch_size, acc, autocast)
                metrics.log(step=step, **ev)
                progress.note(f"step {step}: eval loss {ev['eval_loss']:.4f}, token accuracy {ev['eval_accuracy']:.1%}")
                if best is None or ev["eval_loss"] < best:
                    best, bad_evals = ev["eval_loss"], 0
                else:
                    bad_evals += 1
                if config.early_stopping_patience and bad_evals >= config.early_stopping_patience:
                    progress.note(f"early stopping: no better eval loss in {bad_evals} evaluations (best {best:.4f})")
                    total = step
            if (config.save_every and step % config.save_every == 0) or stop.requested:
                save(step)
            if stop.requested and step < total:
                progress.close()
                say(f"stopped at step {step}/{total}; continue with: ojt train --resume {run_dir}")
                raise KeyboardInterrupt
            if os.environ.get(FAULT_ENV) == str(step):
                os.kill(os.getpid(), signal.SIGKILL)
    progress.close()
    _finish(acc, run_dir, forward, tokenizer, metrics, step)
    return run_dir


def _supervised(batch: dict) -> int:
    return int((batch["labels"][:, 1:] != -100).sum())


@torch.no_grad()
def evaluate(forward, rows, pad_id: int, micro_batch: int, acc, autocast) -> dict[str, float]:
    forward.eval()
    mine = rows[acc.process_index :: acc.num_processes]
    loss = torch.zeros((), device=acc.device)
    hits = torch.zeros((), device=acc.device)
    count = torch.zeros((), device=acc.device)
    for i in range(0, len(mine), micro_batch):
        batch = collate(mine[i : i + micro_batch], pad_id)
        with autocast:
            part, correct, n = forward(**{k: v.to(acc.device) for k, v in batch.items()})
        loss += part.float()
        hits += correct
        count += n
    loss, hits, count = (acc.reduce(t, "sum").item() for t in (loss, hits, count))
    forward.train()
    return {"eval_loss": loss / max(count, 1), "eval_accuracy": hits / max(count, 1), "eval_tokens": int(count)}


def _save(acc, run_dir, step, forward, tokenizer, optimizer, scheduler, state, keep) -> None:
    model = acc.unwrap_model(forward).model
    state_dict = acc.get_state_dict(forward) if acc.distributed_type.name == "FSDP" else None
    if state_dict is not None:
        state_dict = {k.removeprefix("model."): v for k, v in state_dict.items()}
    if acc.is_main_process:
        checkpoint.save(run_dir, step=step, model=model, tokenizer=tokenizer, optimizer=optimizer, scheduler=scheduler, state=state, keep=keep, state_dict=state_dict)
    acc.wait_for_everyone()


def _finish(acc, run_dir: Path, forward, tokenizer, metrics, step: int) -> None:
    from onthejob.fsutil import atomic_dir

    model = acc.unwrap_model(forward).model
    if acc.is_main_process:
        with atomic_dir(run_dir / "final") as tmp:
            checkpoint.save_model_files(model, tokenizer, tmp)
        metrics.plot(run_dir / "loss.png")
        runfolder.update_info(run_dir, status="finished", steps=step, finished=time.strftime("%Y-%m-%dT%H:%M:%S"))
        say(f"done: {run_dir / 'final'}  (loss curve: {run_dir / 'loss.png'})")
    acc.wait_for_everyone()


def resume_config(run_dir: Path, overrides: list[str]) -> cfg.TrainConfig:
    saved = run_dir / "config.yaml"
    if not saved.is_file():
        raise RunError(f"{run_dir} has no config.yaml: not a run folder", fix="name the output_dir of an earlier `ojt train`")
    config = cfg.load(saved, overrides)
    return reconcile(run_dir, cfg.load(saved), config, fingerprint)


if __name__ == "__main__":  # pragma: no cover - `python -m onthejob.train.loop CONFIG`
    run(cfg.load(sys.argv[1], sys.argv[2:]))
