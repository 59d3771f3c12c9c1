"""How tokens are picked and when an answer stops: the sampling config every stage shares.

    from onthejob.generate.sampling import SamplingParams
    params = SamplingParams(max_new_tokens=64, temperature=0.7, seed=1)

It is a typed config like the others (onthejob/config.py): ``ojt chat``, ``ojt generate``,
``ojt eval``/``compare`` take it as flags or as the ``sampling:`` section of their YAML (where
bad values are ``ConfigError``s naming each key), and the server builds one per request. Picking
a token by these settings is the engine's (``engine.pick``): reading a config needs no torch.
"""

from __future__ import annotations

from pydantic import Field, field_validator

from onthejob.config import Section

MAX_NEW_TOKENS = 32768  # longest answer anyone may ask for; a server caps it lower (max_tokens)
MAX_STOP = 16  # stop strings per answer
SEED_RANGE = (-(2**63), 2**64 - 1)  # what torch's generator takes


class SamplingParams(Section):
    """How to pick tokens and when to stop."""

    max_new_tokens: int = Field(256, ge=1, le=MAX_NEW_TOKENS, description="longest answer in tokens (the end-of-turn token counts)")
    temperature: float = Field(0.0, ge=0, le=100, description="0 = greedy (the most likely token); higher = more varied")
    top_p: float = Field(1.0, gt=0, le=1, description="nucleus sampling: sample from the smallest set of tokens with this probability mass")
    stop: list[str] = Field(default_factory=list, max_length=MAX_STOP, description="stop at the first of these strings; the text is cut before it")
    seed: int | None = Field(None, ge=SEED_RANGE[0], le=SEED_RANGE[1], description="same seed + same prompt = same sample; none = unseeded")
    ignore_eos: bool = Field(False, description="go on past end-of-turn tokens (kept in token_ids); for benchmarks")

    @field_validator("stop")
    @classmethod
    def _no_empty_stop(cls, stops: list[str]) -> list[str]:
        if any(not s for s in stops):
            raise ValueError("an empty stop string would stop at once")
        return stops
