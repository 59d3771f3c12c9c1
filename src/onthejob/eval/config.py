"""The configs of ``ojt eval`` and ``ojt compare``: one comparison, two ways to name its arms.

    ojt compare compare.yaml --rag.k 3
    ojt eval runs/hr-demo --data examples/hr/eval.jsonl --max-new-tokens 64

``ojt compare`` runs the arms it is given (prompting, few-shot, RAG, fine-tuning, both); ``ojt
eval`` is the same comparison with two arms, the base model and the tuned run. Both share every
other setting: the questions, decoding, retrieval, the judge, the general-skills probe and the
leakage check (``Evaluation``).
"""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from onthejob.config import Section, cross_field
from onthejob.generate.sampling import SamplingParams
from onthejob.rag.config import RetrievalConfig

ARMS = {"prompt": "prompting", "few-shot": "few-shot", "rag": "RAG", "ft": "fine-tuning", "ft+rag": "fine-tuning + RAG"}
BUILTIN = "builtin"  # general: the probe set shipped with onthejob (onthejob/eval/general.jsonl)
MAX_SHOTS = 32


class JudgeConfig(Section):
    url: str | None = Field(None, description="grade every answer correct / partly / wrong / refused with a judge model on this OpenAI-compatible server (ojt serve, vLLM, a hosted API)")
    model: str | None = Field(None, description="the judge model's name on that server")

    @model_validator(mode="after")
    def _both_or_neither(self) -> JudgeConfig:
        if bool(self.url) != bool(self.model):
            raise cross_field(("url, model", "a judge needs both its URL and its model name; give both, or neither"))
        return self


class FewShotConfig(Section):
    data: str | None = Field(None, description="examples to show (any training format); none = the run's training files")
    k: int = Field(4, ge=1, le=MAX_SHOTS, description="demonstrations per question: the k examples whose questions are most like it")


class Evaluation(Section):
    """What every evaluation shares, whatever its arms."""

    data: str = Field(description="chat JSONL whose last message is the reference answer; optional 'facts', 'regex', 'json_schema'")
    base: str | None = Field(None, description="the base model; none = the run's base model, else the default model")
    system: str | None = Field(None, description="system prompt for every question (replaces the data's own)")
    sampling: SamplingParams = Field(default_factory=lambda: SamplingParams(max_new_tokens=128),
                                     description="decoding of every answer (greedy by default, so a rerun gives the same text)")
    rag: RetrievalConfig = Field(default_factory=RetrievalConfig, description="the document collection arms with RAG answer from (rag.collection)")
    batch_size: int = Field(16, ge=1, le=1024, description="questions answered at once")
    constrain_json: bool = Field(False, description="decode the answer of every question that carries a json_schema under that schema (constrained decoding), so its format check passes and the other metrics measure the content")
    seed: int = Field(0, ge=0, le=2**32 - 1, description="seed for the bootstrap intervals, and for sampling when sampling.seed is none")
    judge: JudgeConfig = Field(default_factory=JudgeConfig, description="an optional judge model")
    uncovered: str | None = Field(None, description="more eval questions (same format) that the documents do not cover: each is asked as if it carried covered: false")
    general: str | None = Field(BUILTIN, description="general-skills probe scored for every model: builtin (100 items shipped with onthejob), your own eval or Alpaca file, or none")
    exclude_leaks: bool = Field(False, description="leave out eval questions that resemble the run's training examples (they are flagged either way)")
    out: str | None = Field(None, description="folder for report.html/.md/.json; none = RUN/eval or RUN/compare, else ./eval-report or ./compare-report")

    @model_validator(mode="after")
    def _seeded_sampling(self) -> Evaluation:
        if self.sampling.seed is None:
            self.sampling.seed = self.seed
        if self.general is not None and self.general.strip().lower() in ("none", "off", ""):
            self.general = None  # --general none
        return self


class CompareConfig(Evaluation):
    """``ojt compare``: prompting vs few-shot vs RAG vs fine-tuning vs both, on the same questions."""

    arms: list[str] = Field(default_factory=lambda: list(ARMS), min_length=1, description=f"arms to run, in order: {', '.join(ARMS)}")
    run: str | None = Field(None, description="the fine-tuned run (needed by arms ft and ft+rag; its training files are few-shot's examples)")
    few_shot: FewShotConfig = Field(default_factory=FewShotConfig, description="the few-shot arm's demonstrations")

    @field_validator("arms", mode="before")
    @classmethod
    def _comma_list(cls, arms):
        if isinstance(arms, str):
            arms = [arms]
        if isinstance(arms, list) and all(isinstance(a, str) for a in arms):  # --arms prompt,ft (repeatable)
            arms = list(dict.fromkeys(p.strip() for a in arms for p in a.split(",") if p.strip()))
            unknown = [a for a in arms if a not in ARMS]
            if unknown:
                raise ValueError(f"unknown arm(s) {', '.join(unknown)}; choose from {', '.join(ARMS)}")
        return arms

    @model_validator(mode="after")
    def _inputs_for_arms(self) -> CompareConfig:
        problems = []
        if not self.run and any(a.startswith("ft") for a in self.arms):
            problems.append(("arms, run", "arms ft and ft+rag need the fine-tuned run: add --run RUN"))
        if "few-shot" in self.arms and not self.run and not self.few_shot.data:
            problems.append(("arms, few_shot.data", "arm few-shot needs examples to show: add --shots FILE, or --run RUN to use its training files"))
        if not self.rag.collection and any(a.endswith("rag") for a in self.arms):
            problems.append(("arms, rag.collection", "arms rag and ft+rag need a document collection: add --rag NAME (make one with ojt rag index)"))
        if problems:
            raise cross_field(*problems)
        return self


class EvalConfig(Evaluation):
    """``ojt eval``: a tuned run (or any model) on held-out questions, with its base beside it."""

    model: str = Field(description="the tuned run, or any model")
    vs_base: bool = Field(False, description="also evaluate the base model (the default when the model is a run folder)")
