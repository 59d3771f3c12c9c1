"""Selection by answers, not loss: with an eval file whose questions carry facts, every
evaluation also answers them (greedy, with the run's own weights of that step) and scores the
answers' facts recall; the step with the best recall becomes ``final/``.

    select: {by: auto, questions: 50}     # the default: by facts when data.eval has them

Eval loss keeps falling after the answers are as good as they get: the model grows surer of the
reference wording while it starts to mix up facts. Recall of the facts the answer must state is
what users judge a run by, so it picks the weights. Ties go to the earlier step (fewer updates,
less forgetting). The last step is always evaluated, so the choice is never worse than the last
step on these questions. ``early_stopping_patience`` then counts evaluations without a better
recall.

When selecting by facts and ``eval_every`` is left at 0, the run evaluates once an epoch.
"""

from __future__ import annotations

from pathlib import Path

from onthejob.errors import ConfigError


class AnswerCheck:
    """The questions of ``data.eval`` that carry facts, answered and scored at each evaluation."""

    def __init__(self, items, *, max_new_tokens: int):
        self.items, self.max_new_tokens = items, max_new_tokens

    @classmethod
    def for_run(cls, config, system_prompt: str | None) -> AnswerCheck | None:
        """The check ``config.select`` asks for, or None (select.by last, or auto without facts)."""
        from onthejob.eval.data import read_eval

        by = config.select.by
        if by == "last" or config.data.eval is None:
            return None
        # questions that offer tools are answered with calls, not facts: they are left to ojt eval
        items = [i for i in read_eval(config.data.eval) if i.facts and not i.raw.get("tools")][: config.select.questions]
        if not items:
            if by == "facts":
                raise ConfigError(f"select.by facts, but no question of {config.data.eval} lists facts",
                                  fix='give questions "facts": [...] (what a right answer states), or set select.by: last')
            return None
        for item in items:  # asked as the run will be asked: with the training system prompt
            if system_prompt and not any(m.get("role") == "system" for m in item.messages):
                item.messages = [{"role": "system", "content": system_prompt}, *item.messages]
        return cls(items, max_new_tokens=config.select.max_new_tokens)

    def __call__(self, model, tokenizer, *, bf16: bool) -> float:
        """Mean facts recall of ``model``'s greedy answers (the model goes back to training after)."""
        from onthejob.eval.facts import fact_recall
        from onthejob.generate.engine import Engine
        from onthejob.generate.sampling import SamplingParams

        engine = Engine(model, tokenizer, dtype="bfloat16" if bf16 else "float32", prefix_cache=0)
        params = SamplingParams(max_new_tokens=self.max_new_tokens, temperature=0.0)
        answers = engine.generate([i.messages for i in self.items], params)
        return sum(fact_recall(a.text, i.facts) for a, i in zip(answers, self.items)) / len(self.items)


def best_dir(run_dir: Path) -> Path:
    """Where the best weights so far wait until the run ends (then they become final/)."""
    return run_dir / "best"
