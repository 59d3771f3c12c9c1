"""The typed training config: every field has a default and a one-line description.

    ojt train configs/hr-demo.yaml --optim.lr 1e-4

Loading a config has no side effects (nothing is read but the YAML itself), so "every shipped
config validates" is a plain test. Unknown keys are rejected and *all* problems are reported at
once, each naming its dotted path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import Field, model_validator

from onthejob import config
from onthejob.config import Section, cross_field, merge, set_dotted  # noqa: F401 - train.config's own API
from onthejob.models.registry import DEFAULT_MODEL
from onthejob.rag.config import DEFAULT_TEMPLATE, MAX_SENTENCES, CollectionName, Template
from onthejob.rag.store import MODES
from onthejob.synth.config import MAX_PARAPHRASES, TeacherConfig

# Bounds on the sizes a config sets: far above any real run, low enough that a typo (1e11 rows)
# is an error naming the key rather than a run that exhausts memory or never ends.
MAX_SEQ_LEN = 1 << 20  # tokens per row
MAX_ROWS = 1 << 16  # rows per micro-step, micro-steps per step
MAX_STEPS = 10**9
MAX_EPOCHS = 10_000
MAX_RANK = 1 << 14
MAX_LAYERS = 10_000
MAX_WEIGHT = 1000  # mixing weight: copies of a dataset per epoch
MAX_REPLAY = 10_000  # base-model answers generated before training
MAX_PASSAGES = 100  # passages around one training question
MAX_SEED = 2**32 - 1  # numpy's seeds are 32-bit
Beta = Annotated[float, Field(ge=0, lt=1)]  # an AdamW moment decay: 1 or more never forgets, <0 diverges



class Dataset(Section):
    path: str = Field(description="a data file in any supported format (chat JSONL, Alpaca, ShareGPT, prompt/completion, CSV/TSV)")
    weight: float = Field(1.0, gt=0, le=MAX_WEIGHT, description="mixing weight: examples drawn per epoch = weight x examples in the file")
    format: str | None = Field(None, description="input format; null = detected from the file")
    map: dict[str, str] | None = Field(None, description="CSV/TSV column to role, e.g. {question: user, answer: assistant}")
    system: str | None = Field(None, description="a fixed system prompt added to every CSV/TSV example")


class ReplayConfig(Section):
    n: int = Field(100, ge=1, le=MAX_REPLAY, description="general prompts whose base-model answers are mixed into training")
    prompts: str | None = Field(None, description="a JSONL file of general prompts ({messages: [...]} ending in a user turn); null = the 200 shipped with onthejob")
    max_new_tokens: int = Field(128, ge=1, le=4096, description="longest base-model answer; answers cut at this length are left out")


class AugmentSection(Section):
    paraphrases: int = Field(4, ge=1, le=MAX_PARAPHRASES, description="rewordings of each training question mixed in, each pointing to its original (RUN/augment.jsonl)")
    answers: bool = Field(False, description="also reword the answers, keeping their key facts verbatim (a rewording that loses one keeps the original answer)")
    teacher: TeacherConfig | None = Field(None, description="the model that rewords; null (or one without url and model) = the run's own base model, before the adapter is put on")
    cache: str | None = Field(None, description="the teacher's reply cache (SQLite); null = ONTHEJOB_HOME/synth/cache.sqlite3")


class RagTrainSection(Section):
    collection: CollectionName = Field(min_length=1, description="the collection (ojt rag index) whose passages are retrieved for every training question")
    k: int = Field(5, ge=1, le=MAX_PASSAGES, description="passages retrieved for each question; train with the k the run will answer with (ojt compare --rag-k)")
    distractors: int = Field(1, ge=0, le=MAX_PASSAGES, description="random passages of the collection put in among them, so the model learns to pass over what does not answer")
    cite: bool = Field(True, description="end each answer with [n], the passage holding its facts, as the RAG prompt asks")
    not_covered: float = Field(0.0, ge=0, le=1, description="share of questions also trained with only passages that lack the answer, answering that the documents do not cover it")
    closed_book: bool = Field(True, description="also train every question without passages, so the run answers well both ways (ft and ft+rag)")
    store: str | None = Field(None, description="store URL holding the collection; none = the embedded store under ONTHEJOB_HOME")
    mode: Literal[MODES] = Field("hybrid", description="retrieval: hybrid (vectors and keywords), dense or sparse, as the run will answer")
    template: Template = Field(DEFAULT_TEMPLATE, description="the prompt wrapped around the passages, as the run will answer with it; holds {context} and {question}")
    sentences: int | None = Field(None, ge=1, le=MAX_SENTENCES, description="cut each passage to the N sentences sharing the most words with the question, as the run will answer (--rag-sentences); none = whole passages")


class DataConfig(Section):
    train: list[Dataset] = Field(default_factory=list, min_length=1, description="training datasets, mixed by weight")
    eval: str | None = Field(None, description="a separate eval file; null = hold out eval_split of the training data")
    eval_split: float = Field(0.0, ge=0, lt=1, description="fraction of the training data held out for eval when no eval file is given")
    train_on: Literal["all", "last", "sequence"] = Field("all", description="supervised tokens: every assistant turn, the last one, or the whole sequence")
    max_seq_len: int = Field(1024, ge=16, le=MAX_SEQ_LEN, description="longest row in tokens; longer examples are cut, shorter ones packed together")
    pack: bool = Field(True, description="pack several examples per row (attention never crosses examples)")
    replay: ReplayConfig | None = Field(None, description="self-distillation against forgetting: mix in the base model's own answers to general prompts, e.g. {n: 100}")
    augment: AugmentSection | None = Field(None, description="paraphrase augmentation: mix in rewordings of every training question (never of eval data), e.g. {paraphrases: 4}")
    rag: RagTrainSection | None = Field(None, description="retrieval-augmented fine-tuning: train every question with the passages a collection retrieves for it (RUN/rag.jsonl), e.g. {collection: hr, k: 5}")


class LoraSection(Section):
    r: int = Field(16, ge=1, le=MAX_RANK, description="rank of the low-rank update")
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
    betas: tuple[Beta, Beta] = Field((0.9, 0.999), description="AdamW betas")
    warmup_steps: int | None = Field(None, ge=0, le=MAX_STEPS, description="linear warm-up steps; null = warmup_ratio of all steps")
    warmup_ratio: float = Field(0.05, ge=0, lt=1, description="warm-up as a fraction of all steps, when warmup_steps is null")
    schedule: Literal["cosine", "linear", "constant"] = Field("cosine", description="learning-rate decay after warm-up")
    min_lr_ratio: float = Field(0.0, ge=0, le=1, description="the schedule decays to lr x min_lr_ratio")
    grad_clip: float | None = Field(1.0, gt=0, description="clip the global gradient norm to this; null = no clipping")


class SelectSection(Section):
    by: Literal["auto", "facts", "last"] = Field("auto", description="which weights become final/: facts = the evaluation whose greedy answers to data.eval's questions recall the most facts; last = the last step; auto = facts when data.eval lists facts")
    questions: int = Field(50, ge=1, le=MAX_REPLAY, description="data.eval questions with facts answered at each evaluation (the first N)")
    max_new_tokens: int = Field(128, ge=1, le=4096, description="longest answer at those evaluations")


class TrainConfig(Section):
    model: str = Field(DEFAULT_MODEL, description="base model: a known name, a local Hugging Face folder or a hub id")
    output_dir: str = Field("runs/run", description="the run folder: config, metrics, checkpoints and final/")
    data: DataConfig = Field(description="what to train on")
    method: Literal["lora", "ia3", "full"] = Field("lora", description="lora (PEFT, default), ia3 (PEFT) or full fine-tuning")
    lora: LoraSection | None = Field(None, description="LoRA settings (method: lora; defaults when left out)")
    ia3: IA3Section | None = Field(None, description="IA3 settings (method: ia3; defaults when left out)")
    freeze_layers: int = Field(0, ge=0, le=MAX_LAYERS, description="leave the first N transformer layers untouched")
    optim: OptimConfig = Field(default_factory=OptimConfig, description="optimizer and learning-rate schedule")
    epochs: float = Field(3, gt=0, le=MAX_EPOCHS, description="passes over the (mixed) training data; fractions allowed")
    max_steps: int | None = Field(None, ge=1, le=MAX_STEPS, description="stop after this many optimizer steps (overrides epochs)")
    micro_batch_size: int = Field(2, ge=1, le=MAX_ROWS, description="rows per forward/backward pass, per process")
    grad_accum: int = Field(1, ge=1, le=MAX_ROWS, description="micro-steps accumulated into one optimizer step")
    precision: Literal["auto", "bf16", "fp32"] = Field("auto", description="auto = bf16 autocast where the hardware supports it (CPUs included), else fp32")
    gradient_checkpointing: bool = Field(False, description="recompute activations in backward: less memory, ~30% slower")
    compile: bool = Field(False, description="torch.compile the model (opt-in; first steps are slow)")
    loss_chunk: int = Field(2048, ge=64, le=MAX_SEQ_LEN, description="supervised positions per chunk of the cross-entropy (bounds logits memory)")
    seed: int = Field(0, ge=0, le=MAX_SEED, description="seed for data order, splits, initialisation and dropout")
    eval_every: int = Field(0, ge=0, le=MAX_STEPS, description="evaluate every N steps (0 = only at the end)")
    early_stopping_patience: int | None = Field(None, ge=1, le=MAX_STEPS, description="stop after this many evaluations without a better facts recall (selecting by facts) or eval loss")
    select: SelectSection = Field(default_factory=SelectSection, description="selection by answers: the step whose answers recall the most facts becomes final/ (train/select.py)")
    save_every: int = Field(0, ge=0, le=MAX_STEPS, description="checkpoint every N steps (0 = only at the end and on Ctrl-C)")
    keep_checkpoints: int = Field(2, ge=1, le=1000, description="keep the last K checkpoints")
    log_every: int = Field(1, ge=1, le=MAX_STEPS, description="write metrics every N steps")

    @model_validator(mode="before")
    @classmethod
    def _own_section_only(cls, raw: Any) -> Any:
        """The chosen method's section gets its defaults when left out; another method's section
        holding only defaults is dropped (older run folders saved every section)."""
        if not isinstance(raw, dict):
            return raw
        raw, method = dict(raw), raw.get("method", "lora")
        for name, section in (("lora", LoraSection), ("ia3", IA3Section)):
            given = raw.get(name)
            if name == method and given is None:
                raw[name] = {}
            elif name != method and isinstance(given, dict) and _all_defaults(section, given):
                raw.pop(name)
        return raw

    @model_validator(mode="after")
    def _consistent(self) -> TrainConfig:
        problems = []
        for name in ("lora", "ia3"):
            if getattr(self, name) is not None and self.method != name:
                problems.append((f"{name}, method", f"{name} settings are given but method is {self.method!r}; drop the {name} section or set method: {name}"))
        if self.data.eval and self.data.eval_split:
            problems.append(("data.eval, data.eval_split", "give data.eval or data.eval_split, not both"))
        if self.method == "ia3" and self.freeze_layers:
            problems.append(("freeze_layers, method", "freeze_layers works with method lora or full, not ia3"))
        if self.select.by == "facts" and not self.data.eval:
            problems.append(("select.by, data.eval", "select.by facts needs an eval file whose questions list facts (data.eval)"))
        if self.early_stopping_patience and not (self.data.eval or self.data.eval_split):
            problems.append(("early_stopping_patience, data.eval, data.eval_split", "early_stopping_patience needs eval data (data.eval or data.eval_split)"))
        if problems:
            raise cross_field(*problems)
        return self


def _all_defaults(section: type[Section], given: dict) -> bool:
    try:
        return section.model_validate(given) == section()
    except ValueError:
        return False


def validate(raw: dict[str, Any], *, source: str = "config") -> TrainConfig:
    return config.validate(TrainConfig, raw, source=source)


def parse_overrides(args: list[str]) -> dict[str, Any]:
    """``["--optim.lr", "1e-4", "--gradient_checkpointing"]`` -> a nested dict of settings."""
    return config.parse_overrides(args, TrainConfig)


def load(path: str | Path | None, overrides: dict | list[str] | None = None, *, defaults: dict | None = None) -> TrainConfig:
    return config.load(TrainConfig, path, overrides, defaults=defaults)


def to_yaml(train_config: TrainConfig) -> str:
    """The resolved config as saved in a run folder: only the chosen method's section."""
    return yaml.safe_dump(train_config.model_dump(mode="json", exclude_none=True), sort_keys=False, allow_unicode=True)


def reference() -> list[str]:
    return config.reference(TrainConfig)
