"""The training loop: forward, loss, backward, clip, optimizer step, schedule step, log,
maybe-evaluate, maybe-checkpoint. One code path for a CPU, a GPU or several processes.

    ojt train configs/hr-demo.yaml
    torchrun --nproc-per-node 2 -m onthejob train configs/hr-demo.yaml
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import signal
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from onthejob.data.pack import collate
from onthejob.errors import ConfigError, OjtError, RunError
from onthejob.synth import augment
from onthejob.train import checkpoint, config as cfg, rag as rag_data, replay, runfolder, select
from onthejob.train.attention import use_packed_attention
from onthejob.train.bf16 import hand_on_norm_outputs_in_bf16, store_frozen_weights_in_bf16
from onthejob.train.data import fingerprint, prepare
from onthejob.train.lora_forward import use_lean_lora_forward
from onthejob.train.loss import TrainForward, causal_lm
from onthejob.train.model import build, count_parameters
from onthejob.train.progress import Progress, describe_start, say
from onthejob.train.resume import reconcile
from onthejob.train.schedule import Plan, lr_lambda

FAULT_ENV = "ONTHEJOB_FAULT_AFTER_STEP"  # fault injection for tests: SIGKILL self after this step
MAX_BAD_STEPS = 3  # non-finite steps in a row (each skipped) before the run stops


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


@dataclass
class Session:
    """Everything the loop works with, built once by ``setup``."""

    config: cfg.TrainConfig
    acc: Any
    run_dir: Path
    tokenizer: Any
    data: Any
    plan: Plan
    total: int
    forward: Any
    optimizer: Any
    scheduler: Any
    params: list
    autocast: Any
    run_id: str | None = None
    step: int = 0
    state: dict = field(default_factory=dict)
    answers: Any = None  # select.AnswerCheck: eval questions answered at each evaluation, or None
    bf16: bool = False
    track: dict = field(default_factory=dict)  # best eval loss / facts recall so far, evaluations since (in checkpoints)


def run(config: cfg.TrainConfig, *, resume: Path | None = None, overwrite: bool = False) -> Path:
    """Train ``config`` into its output_dir (fresh: missing, empty or ``overwrite``), or continue the
    run folder ``resume`` from its newest usable checkpoint."""
    s = setup(config, resume, overwrite=overwrite)
    try:
        return _train(s)
    except (OjtError, OSError) as e:
        if s.acc.is_main_process:
            runfolder.mark_failed(s.run_dir, e)
        raise


def _train(s: Session) -> Path:
    config = s.config
    metrics = runfolder.Metrics(s.run_dir, resume_step=s.step if s.state else None, enabled=s.acc.is_main_process)
    progress = Progress(s.total, s.step, enabled=s.acc.is_main_process)
    s.track = {k: s.state.get(k) for k in ("best_eval_loss", "best_recall", "best_step", "last_recall")} | {"bad_evals": s.state.get("bad_evals", 0)}
    bad_steps = 0
    with StopFlag() as stop, contextlib.closing(progress):  # an error starts on a line of its own
        while s.step < s.total:
            loss, norm, tokens, seconds = train_step(s)
            s.step += 1
            lr = s.scheduler.get_last_lr()[0]
            bad_steps = 0 if math.isfinite(loss + norm) else bad_steps + 1
            if bad_steps:
                _non_finite(s, progress, loss, norm, bad_steps)
            progress.update(s.step, loss, lr, tokens, seconds)
            if s.step % config.log_every == 0 or s.step == s.total or bad_steps:
                metrics.log(step=s.step, epoch=round(s.plan.epoch_of(s.step), 4), loss=loss, grad_norm=norm, lr=lr, tokens=tokens,
                            tokens_per_s=tokens / seconds, **({"skipped": True} if bad_steps else {}))
            if s.data.eval_rows and ((config.eval_every and s.step % config.eval_every == 0) or s.step == s.total):
                evaluate_step(s, metrics, progress)
                maybe_stop_early(s, progress)
            if (config.save_every and s.step % config.save_every == 0) or stop.requested:
                save_checkpoint(s, s.track)
            if stop.requested and s.step < s.total:
                progress.close()
                say(f"stopped at step {s.step}/{s.total}; continue with: ojt train --resume {s.run_dir}")
                raise KeyboardInterrupt
            if os.environ.get(FAULT_ENV) == str(s.step):
                os.kill(os.getpid(), signal.SIGKILL)
    _finish(s, metrics)
    return s.run_dir


def evaluate_step(s: Session, metrics: runfolder.Metrics, progress: Progress) -> None:
    """Eval loss, and with ``select.by`` facts the facts recall of answers to the eval questions
    (the best weights kept in RUN/best/); logged, noted, and counted for early stopping: a better
    recall when selecting by answers, else a lower eval loss."""
    ev = evaluate(s)
    t = s.track
    better = lower_loss = t["best_eval_loss"] is None or ev["eval_loss"] < t["best_eval_loss"]
    if lower_loss:
        t["best_eval_loss"] = ev["eval_loss"]
    if s.answers is not None:
        ev["eval_facts_recall"] = t["last_recall"] = answer_recall(s)
        better = t["best_recall"] is None or ev["eval_facts_recall"] > t["best_recall"]  # a tie keeps the earlier step
        if better:
            t["best_recall"], t["best_step"] = ev["eval_facts_recall"], s.step
            save_best(s)
    t["bad_evals"] = 0 if better else t["bad_evals"] + 1
    metrics.log(step=s.step, **ev)
    recall = f", facts recall {ev['eval_facts_recall']:.3f}" if s.answers is not None else ""
    progress.note(f"step {s.step}: eval loss {ev['eval_loss']:.4f}, token accuracy {ev['eval_accuracy']:.1%}{recall}")


def maybe_stop_early(s: Session, progress: Progress) -> None:
    t, patience = s.track, s.config.early_stopping_patience
    if patience and t["bad_evals"] >= patience:
        what = f"facts recall (best {t['best_recall']:.3f})" if s.answers is not None else f"eval loss (best {t['best_eval_loss']:.4f})"
        progress.note(f"early stopping: no better {what} in {t['bad_evals']} evaluations")
        s.total = s.step


def _non_finite(s: Session, progress: Progress, loss: float, norm: float, in_a_row: int) -> None:
    """A step whose loss or gradient norm is not finite was skipped; a few in a row end the run."""
    what = f"loss {loss}" if not math.isfinite(loss) else f"gradient norm {norm}"
    if in_a_row < MAX_BAD_STEPS:
        progress.note(f"warning: step {s.step} skipped: {what} is not finite (the weights were not updated)")
        return
    raise RunError(f"training diverged: the {what} was not finite at {in_a_row} steps in a row, up to step {s.step}; "
                   f"the run stopped and wrote no final/",
                   fix=f"lower optim.lr (it is {s.config.optim.lr:g}) or set optim.grad_clip, and start again with --overwrite")


def train_step(s: Session) -> tuple[float, float, int, float]:
    """One optimizer step over this process's micro-batches: (loss per token, gradient norm, tokens,
    seconds). A step whose loss or gradient norm is not finite updates nothing."""
    t0 = time.perf_counter()
    acc, pad = s.acc, s.tokenizer.pad_token_id
    s.forward.train()
    batches = [collate([s.data.train_rows[i] for i in rows], pad) for rows in s.plan.micro_batches(s.step, acc.process_index)]
    n_step = acc.reduce(torch.tensor(sum(_supervised(b) for b in batches), device=acc.device), "sum").item()
    loss_sum = torch.zeros((), device=acc.device)
    for m, batch in enumerate(batches):
        sync = contextlib.nullcontext() if m == len(batches) - 1 else acc.no_sync(s.forward)
        with sync, s.autocast:
            part, _, _ = s.forward(**{k: v.to(acc.device) for k, v in batch.items()})
        # Normalise by the supervised tokens of the whole step (all micro-steps, all processes);
        # DDP averages gradients over processes, hence x num_processes.
        acc.backward(part * acc.num_processes / max(n_step, 1))
        loss_sum += part.detach()
    # max_norm inf measures the norm and scales by exactly 1.0: the same update as no clipping
    norm = float(acc.clip_grad_norm_(s.params, s.config.optim.grad_clip or math.inf))
    loss = acc.reduce(loss_sum, "sum").item() / max(n_step, 1)  # the same on every process
    if math.isfinite(loss + norm):
        s.optimizer.step()
        s.scheduler.step()
    else:  # the schedule still moves with the step; torch warns when that precedes any update
        with warnings.catch_warnings():  # only here: catching resets warnings' once-only memory
            warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step", category=UserWarning)
            s.scheduler.step()
    s.optimizer.zero_grad(set_to_none=True)
    tokens = acc.reduce(torch.tensor(sum(int((b["input_ids"] != pad).sum()) for b in batches), device=acc.device), "sum").item()
    return loss, norm, int(tokens), time.perf_counter() - t0


def setup(config: cfg.TrainConfig, resume: Path | None, *, overwrite: bool = False) -> Session:
    """Model, data, optimizer and schedule, restored from the last checkpoint when resuming."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    from onthejob.models.load import load_model

    acc = Accelerator(cpu=not torch.cuda.is_available())
    run_dir = Path(config.output_dir)
    run_id, ckpt = _open_run_folder(acc, run_dir, resume=resume is not None, overwrite=overwrite)
    set_seed(config.seed)
    base, tokenizer = load_model(config.model, on_convert=say)
    data = prepare(config, tokenizer, replay=_replay(config, base, tokenizer, run_dir), augment=_augment(config, base, tokenizer, run_dir),
                   rag=_rag(config, run_dir))  # before any adapter
    config = data.config  # with the small-data defaults (train/defaults.py) for what it left unset
    model = build(base, config)
    bf16 = use_bf16(config, acc.device)
    if bf16 and config.method != "full":  # full fine-tuning saves every weight: none may be rounded
        store_frozen_weights_in_bf16(model)
        use_lean_lora_forward(model)
        hand_on_norm_outputs_in_bf16(model)
    per_example = use_packed_attention(causal_lm(model).config)  # False for flash attention: it handles packed rows
    if ckpt:
        checkpoint.load_trainable(model, ckpt)
    micro = micro_batch(config, len(data.train_rows), acc.num_processes)
    plan = Plan(len(data.train_rows), micro_batch=micro, grad_accum=config.grad_accum, world=acc.num_processes, seed=config.seed)
    total = plan.total_steps(config.epochs, config.max_steps)
    answers, config = _answer_check(config, data, plan, acc)
    o = config.optim
    warmup = o.warmup_steps if o.warmup_steps is not None else int(o.warmup_ratio * total)
    params = [p for p in model.parameters() if p.requires_grad]
    # fused: one kernel for all parameters instead of a Python loop over each (CPU and CUDA)
    fused = acc.device.type in ("cpu", "cuda") and all(p.dtype in (torch.float32, torch.bfloat16, torch.float16) for p in params)
    optimizer = torch.optim.AdamW(params, lr=o.lr, betas=o.betas, weight_decay=o.weight_decay, fused=fused or None)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(warmup=warmup, total=total, schedule=o.schedule, min_ratio=o.min_lr_ratio))
    state = checkpoint.load_state(ckpt, optimizer, scheduler) if ckpt else {}
    forward = TrainForward(model, chunk=config.loss_chunk, per_example=per_example)
    if config.compile:
        forward = torch.compile(forward)
    forward, optimizer = acc.prepare(forward, optimizer)
    trainable, n_total = count_parameters(model)
    if acc.is_main_process:
        describe_start(config, data, plan, total, trainable, n_total, bf16, acc, resumed_at=state.get("step"))
        if not ckpt:
            info = {"run_id": run_id, "base_model": config.model, "method": config.method, "data": fingerprint(config), "trainable_params": trainable, "total_params": n_total, "system_prompt": data.system_prompt}
            runfolder.write_start(run_dir, cfg.to_yaml(config), info)
            if data.replayed:
                replay.save(run_dir, data.replayed)
            if data.augmented:
                augment.save(run_dir, data.augmented)
            if data.with_passages:
                rag_data.save(run_dir, data.with_passages)
        else:
            runfolder.update_info(run_dir, status="running", error=None, resumed=time.strftime("%Y-%m-%dT%H:%M:%S"))
    autocast = torch.autocast(acc.device.type, dtype=torch.bfloat16, enabled=bf16)
    return Session(config, acc, run_dir, tokenizer, data, plan, total, forward, optimizer, scheduler, params, autocast, run_id,
                   state.get("step", 0), state, answers=answers, bf16=bf16)


def _answer_check(config: cfg.TrainConfig, data, plan: Plan, acc):
    """``select``'s check (None when final/ is the last step), and the config with eval_every
    once an epoch when selecting by answers and it was left at 0."""
    if acc.distributed_type.name == "FSDP":  # sharded weights cannot answer on one process
        if config.select.by == "facts":
            say("warning: select.by facts does not work with FSDP; final/ is the last step")
        return None, config
    answers = select.AnswerCheck.for_run(config, data.system_prompt)
    if answers is not None and "eval_every" not in config.model_fields_set:
        config = config.model_copy(update={"eval_every": plan.steps_per_epoch})
        data.derived.insert(0, f"eval_every {plan.steps_per_epoch}: once an epoch, so final/ is the step whose answers to "
                               f"{len(answers.items)} eval questions recall the most facts (select.by; train/select.py)")
    return answers, config


def answer_recall(s: Session) -> float:
    """Facts recall of the run's answers now, computed on the main process, the same on all."""
    recall = torch.zeros((), dtype=torch.float64, device=s.acc.device)
    if s.acc.is_main_process:
        s.forward.eval()
        with torch.no_grad():
            recall += s.answers(s.acc.unwrap_model(s.forward).model, s.tokenizer, bf16=s.bf16)
        s.forward.train()
    return float(s.acc.reduce(recall, "sum"))


def save_best(s: Session) -> None:
    """The weights of the best evaluation so far, in RUN/best/ until the run ends."""
    from onthejob.fsutil import atomic_dir

    if s.acc.is_main_process:
        with atomic_dir(select.best_dir(s.run_dir)) as tmp:
            checkpoint.save_model_files(s.acc.unwrap_model(s.forward).model, s.tokenizer, tmp)
    s.acc.wait_for_everyone()


def _replay(config: cfg.TrainConfig, base, tokenizer, run_dir: Path):
    """``data.replay``'s examples as ``prepare`` wants them (None without replay): the base answers
    before any adapter is put on it, or on resume those saved in RUN/replay.jsonl."""
    if config.data.replay is None:
        return None
    return lambda system: replay.replay_examples(config.data.replay, base, tokenizer, system=system,
                                                 seed=config.seed, run_dir=run_dir, say=say)


def _rag(config: cfg.TrainConfig, run_dir: Path):
    """``data.rag``'s passage-wrapped examples as ``prepare`` wants them (None without it): retrieved
    now, or on resume those saved in RUN/rag.jsonl."""
    if config.data.rag is None:
        return None
    return rag_data.RunRag(config.data.rag, seed=config.seed, run_dir=run_dir, say=say)


def _augment(config: cfg.TrainConfig, base, tokenizer, run_dir: Path):
    """``data.augment``'s paraphrases as ``prepare`` wants them (None without it): reworded by the
    base before any adapter is put on it (or by data.augment.teacher), or on resume those saved
    in RUN/augment.jsonl."""
    if config.data.augment is None:
        return None
    return augment.RunAugment(config.data.augment, config.model, base, tokenizer, run_dir=run_dir, say=say)


def _open_run_folder(acc, run_dir: Path, *, resume: bool, overwrite: bool) -> tuple[str | None, Path | None]:
    """Before anything loads: a fresh run gets an empty, writable folder and a new run id; a resumed
    one its own id and newest usable checkpoint. Leftovers of a killed run are removed either way."""
    if resume:
        run_id = runfolder.read_info(run_dir).get("run_id")
        if acc.is_main_process:
            _clean(run_dir)
        acc.wait_for_everyone()
        ckpt = checkpoint.latest(run_dir, run_id, warn=say)
        if ckpt is None:
            say(f"{run_dir} has no complete checkpoint yet; starting from the beginning")
        return run_id, ckpt
    runfolder.check_fresh(run_dir, overwrite=overwrite)
    acc.wait_for_everyone()
    run_id = runfolder.start_fresh(run_dir) if acc.is_main_process else None
    acc.wait_for_everyone()
    return run_id, None


def _clean(run_dir: Path) -> None:
    freed = runfolder.clean_debris(run_dir)
    if freed:
        say(f"removed {freed / 2**20:.1f} MB left behind by an interrupted run in {run_dir}")


def micro_batch(config: cfg.TrainConfig, rows: int, world: int) -> int:
    """Rows per micro-batch: config.micro_batch_size, but never more than each process's share of
    the training rows (a batch cannot hold more distinct rows than there are; before this bound, a
    typo like 1e11 repeated the rows until memory ran out). A step larger than the data warns."""
    if rows < world:
        raise ConfigError(f"{world} processes but only {rows} training row(s): each process needs at least one",
                          fix="train on more data, or with fewer processes")
    micro = min(config.micro_batch_size, rows // world)
    if micro < config.micro_batch_size:
        say(f"warning: micro_batch_size {config.micro_batch_size} is more than the {rows} training rows"
            f"{f' shared by {world} processes' if world > 1 else ''}; using {micro} (rows are examples packed up to data.max_seq_len tokens)")
    step = micro * config.grad_accum * world
    if step > rows:
        say(f"warning: a step takes {step} rows but the data has {rows}, so some rows count twice in each step; "
            f"lower grad_accum to at most {max(1, rows // (micro * world))}")
    return micro


def _supervised(batch: dict) -> int:
    return int((batch["labels"][:, 1:] != -100).sum())


@torch.no_grad()
def evaluate(s: Session) -> dict[str, float]:
    """Loss and next-token accuracy on the eval rows, summed over every process's share."""
    acc = s.acc
    s.forward.eval()
    mine = s.data.eval_rows[acc.process_index :: acc.num_processes]
    totals = torch.zeros(3, device=acc.device)  # loss sum, correct, tokens
    for i in range(0, len(mine), s.config.micro_batch_size):
        batch = collate(mine[i : i + s.config.micro_batch_size], s.tokenizer.pad_token_id)
        with s.autocast:
            part, correct, n = s.forward(**{k: v.to(acc.device) for k, v in batch.items()})
        totals += torch.stack([part.float(), correct.float(), torch.tensor(float(n), device=acc.device)])
    loss, hits, count = acc.reduce(totals, "sum").tolist()
    s.forward.train()
    return {"eval_loss": loss / max(count, 1), "eval_accuracy": hits / max(count, 1), "eval_tokens": int(count)}


def save_checkpoint(s: Session, extra: dict) -> None:
    acc = s.acc
    model = acc.unwrap_model(s.forward).model
    state_dict = None
    if acc.distributed_type.name == "FSDP":  # shards must be gathered; every process takes part
        state_dict = {k.removeprefix("model."): v for k, v in acc.get_state_dict(s.forward).items()}
    if acc.is_main_process:
        _check_finite(s, "checkpoint")
        state = {**extra, "epoch": s.plan.epoch_of(s.step)}
        checkpoint.save(s.run_dir, step=s.step, model=model, tokenizer=s.tokenizer, optimizer=s.optimizer, scheduler=s.scheduler,
                        state=state, keep=s.config.keep_checkpoints, run_id=s.run_id, state_dict=state_dict)
    acc.wait_for_everyone()


def _finish(s: Session, metrics: runfolder.Metrics) -> None:
    from onthejob.fsutil import atomic_dir

    model = s.acc.unwrap_model(s.forward).model
    t, best = s.track, select.best_dir(s.run_dir)
    chosen = s.answers is not None and t.get("best_step") not in (None, s.step) and best.is_dir()
    if s.acc.is_main_process:
        _check_finite(s, "final/")
        with atomic_dir(s.run_dir / "final") as tmp:
            if chosen:  # the best evaluation's weights, not the last step's
                shutil.copytree(best, tmp, dirs_exist_ok=True)
            else:
                checkpoint.save_model_files(model, s.tokenizer, tmp)
            checkpoint.fault_point("final")
        if s.answers is not None:
            step = t["best_step"] if chosen else s.step
            runfolder.update_info(s.run_dir, selected={"by": "facts_recall", "step": step, "facts_recall": t["best_recall"],
                                                        "last_step": s.step, "last_facts_recall": t["last_recall"],
                                                        "questions": len(s.answers.items)})
            say(f"final/ is step {step}: facts recall {t['best_recall']:.3f} on {len(s.answers.items)} eval questions"
                + (f" (the last step, {s.step}, had {t['last_recall']:.3f})" if chosen else " (the last step)"))
        shutil.rmtree(best, ignore_errors=True)
        metrics.plot(s.run_dir / "loss.png")
        runfolder.update_info(s.run_dir, status="finished", steps=s.step, finished=time.strftime("%Y-%m-%dT%H:%M:%S"))
        say(f"done: {s.run_dir / 'final'}  (loss curve: {s.run_dir / 'loss.png'})")
    s.acc.wait_for_everyone()


def _check_finite(s: Session, what: str) -> None:
    """Never save weights that are not finite: a NaN adapter answers nothing but looks like a result."""
    if not all(bool(torch.isfinite(p).all()) for p in s.params):
        raise RunError(f"the trained weights are not finite at step {s.step}, so {what} was not written",
                       fix=f"lower optim.lr (it is {s.config.optim.lr:g}) or set optim.grad_clip, and start again with --overwrite")


def resume_config(run_dir: Path, overrides: list[str]) -> cfg.TrainConfig:
    saved = run_dir / "config.yaml"
    if not saved.is_file():
        raise RunError(f"{run_dir} has no config.yaml: not a run folder", fix="name the output_dir of an earlier `ojt train`")
    config = cfg.load(saved, overrides)
    return reconcile(run_dir, cfg.load(saved), config, fingerprint)


if __name__ == "__main__":  # pragma: no cover - `python -m onthejob.train.loop CONFIG`
    run(cfg.load(sys.argv[1], sys.argv[2:]))
