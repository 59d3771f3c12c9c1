"""The typed configs of ``ojt data synth`` and ``ojt data augment``, and the teacher both use.

    ojt data synth handbook.pdf --out train.jsonl --eval-out eval.jsonl --style "formal, brief"
    ojt data augment train.jsonl --paraphrases 4 --out aug.jsonl --teacher-url http://127.0.0.1:8000/v1
"""

from __future__ import annotations

from pydantic import Field

from onthejob.config import Section

MAX_EXAMPLES = 20  # worked examples shown to the teacher: each one lengthens every prompt
MAX_PER_PASSAGE = 50
MAX_PARAPHRASES = 50


class TeacherConfig(Section):
    model: str | None = Field(None, description="the teacher: a model name ojt knows or a local model or run folder (default: the embedded default model); with url, the name the endpoint serves (default: its first)")
    url: str | None = Field(None, description="an OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1 (ojt serve, Ollama, vLLM, llama.cpp's server); none = run the teacher here")
    key_env: str = Field("OPENAI_API_KEY", description="environment variable holding the endpoint's API key (none sent when it is unset)")
    concurrency: int = Field(8, ge=1, le=256, description="requests in flight to the endpoint")
    batch_size: int = Field(16, ge=1, le=1024, description="prompts a local teacher answers together")
    max_new_tokens: int = Field(160, ge=8, le=8192, description="longest reply")
    temperature: float = Field(0.0, ge=0, le=2, description="0 = greedy: the same prompt always gets the same reply, which resuming relies on")
    retries: int = Field(4, ge=0, le=20, description="retries of a failed request (connection, timeout, 429, 5xx), with exponential back-off")
    timeout: float = Field(300, gt=0, le=3600, description="seconds to wait for one reply from the endpoint")



class Example(Section):
    question: str = Field(min_length=1, max_length=2000, description="a question in the wording users write")
    answer: str = Field(min_length=1, max_length=4000, description="its answer in the style wanted")


class SynthConfig(Section):
    paths: list[str] = Field(min_length=1, description="documents or folders (.txt .md .html .pdf .docx .csv .jsonl)")
    out: str = Field(description="the training examples, chat JSONL (written atomically)")
    eval_out: str | None = Field(None, description="the eval questions, from passages kept out of training (chat JSONL with facts); none = no eval set")
    eval_split: float = Field(0.15, gt=0, lt=1, description="share of passages whose questions go to eval_out")
    per_passage: int = Field(3, ge=1, le=MAX_PER_PASSAGE, description="questions asked per passage (about its sentences with the most facts)")
    system: str | None = Field(None, description="system prompt written into every example (what the tuned assistant is told)")
    style: str | None = Field(None, description='how answers should read, e.g. "formal, brief"')
    examples: list[Example] = Field(default_factory=list, max_length=MAX_EXAMPLES, description="question/answer pairs the teacher imitates (--example 'QUESTION => ANSWER')")
    near_duplicate: float = Field(0.8, gt=0, le=1, description="a question whose word overlap (Jaccard) with one kept before is at least this is dropped")
    seed: int = Field(0, ge=0, description="which passages go to eval")
    cache: str | None = Field(None, description="the reply cache (SQLite); none = ONTHEJOB_HOME/synth/cache.sqlite3")
    teacher: TeacherConfig = Field(default_factory=TeacherConfig, description="the model that writes the questions and answers")


class AugmentConfig(Section):
    file: str = Field(description="training examples to paraphrase (any format ojt reads)")
    out: str = Field(description="originals and paraphrases, chat JSONL (written atomically)")
    paraphrases: int = Field(4, ge=1, le=MAX_PARAPHRASES, description="rewordings of each user question")
    answers: bool = Field(False, description="also reword answers, keeping their key facts verbatim (a paraphrase whose reworded answer loses one keeps the original answer)")
    cache: str | None = Field(None, description="the reply cache (SQLite); none = ONTHEJOB_HOME/synth/cache.sqlite3")
    teacher: TeacherConfig = Field(default_factory=TeacherConfig, description="the model that rewords")
