"""Judgements of served answers, kept in SQLite, and the training data they turn into.

    ojt data from-feedback feedback.db --out feedback.jsonl --pairs-out pairs.jsonl

``ojt serve`` records every answer it gives (``FeedbackStore.record_answer``) and stores what
people say about it through ``POST /v1/feedback`` (``add_feedback``): a rating (good or bad), a
corrected answer, a note. ``from_feedback`` turns the judgements into training data:

- An answer's *verdict* is its latest judgement that has a rating or a correction; a note alone
  changes nothing. Several judgements per answer are kept, only the verdict is exported.
- A correction (rated bad, or unrated) gives a training example: the conversation followed by the
  corrected answer. A correction rated good does too (the reviewer's own text wins).
- An answer rated good, without a correction, gives an example with the answer as it was given.
- An answer rated bad without a correction gives no example, nor does one with notes only; both
  are counted as ``skipped``.
- Preference pairs, in OpenAI's preference (DPO) format, come from every answer rated bad: one
  with its correction preferred, when it has one, and one with the latest answer rated good to
  the same conversation (same messages and tools) preferred, when there is one. A pair whose two
  answers are the same is left out.

Examples are canonical chat JSONL (``data/readers.py``'s ``chat`` format), with a ``source``
key saying where each came from, as ``ojt data synth`` writes it (the reader ignores it). The
conversation's earlier assistant turns get ``weight: 0``: nobody judged them, so training must
not learn them. Pairs carry nothing but OpenAI's keys. A stored conversation the chat reader
would refuse is left out and counted as ``invalid``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import secrets
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from onthejob.data.files import lone_surrogate, require_file
from onthejob.data.messages import Faults, chat_messages, json_kind, record_tools
from onthejob.data.outputs import check_outputs, write_jsonl_files
from onthejob.errors import DataError

RATINGS = ("good", "bad")
MAX_TEXT = 100_000  # characters of a correction or a note
MAX_REVIEWER = 200  # characters of a reviewer's name
SCHEMA_VERSION = 1
ANSWER_KEYS = ("role", "content", "tool_calls")  # what an answer keeps of the message it was

SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (
    response_id TEXT PRIMARY KEY,
    created INTEGER NOT NULL,
    model TEXT NOT NULL,
    messages TEXT NOT NULL,   -- JSON: the conversation answered
    tools TEXT,               -- JSON: OpenAI tool specs, or NULL
    answer TEXT NOT NULL,     -- JSON: the assistant message given
    request TEXT NOT NULL     -- JSON: the request body, for the record
);
CREATE INDEX IF NOT EXISTS answers_created ON answers(created);
CREATE TABLE IF NOT EXISTS feedback (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,  -- the order judgements came in: the latest wins
    id TEXT NOT NULL UNIQUE,
    response_id TEXT NOT NULL REFERENCES answers(response_id),
    created INTEGER NOT NULL,
    rating TEXT CHECK (rating IN ('good', 'bad')),
    correction TEXT,
    note TEXT,
    reviewer TEXT
);
CREATE INDEX IF NOT EXISTS feedback_answer ON feedback(response_id);
"""

FEEDBACK_COLUMNS = ("id", "response_id", "rating", "correction", "note", "reviewer", "created")
NO_STORE_FIX = "give the file of ojt serve's feedback_db setting, where it records its answers"


class FeedbackStore:
    """An embedded SQLite database of answers and their judgements at ``path``.

    One connection per call, in WAL mode, so the server's threads (and processes) can call it at
    once. Answers are bounded: past ``max_answers``, the oldest answers that have no feedback are
    deleted; answers someone judged are kept."""

    def __init__(self, path: str | Path, *, max_answers: int = 100_000):
        if max_answers < 1:
            raise ValueError(f"max_answers must be at least 1, not {max_answers}")
        self.path = Path(path)
        self.max_answers = max_answers
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self._connect() as db:
                db.execute("PRAGMA journal_mode=WAL")  # persistent: readers never wait for a writer
                _check_version(db, self.path)
                db.executescript(SCHEMA)
                db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except (sqlite3.Error, OSError) as e:
            raise DataError(f"{self.path}: cannot open the feedback database: {e}",
                            fix="give a file path in a writable folder (not a folder, not another file)") from e

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)  # transactions are explicit
        try:
            db.execute("PRAGMA foreign_keys=ON")
            db.execute("PRAGMA synchronous=NORMAL")  # WAL: an app crash loses nothing committed
            yield db
        finally:
            db.close()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction that holds the write lock from its start, so a check and the write
        it allows (the answer exists -> add its feedback) see the same database."""
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def record_answer(self, response_id: str, *, model: str, messages: list[dict], tools: list[dict] | None,
                      answer: dict, request: dict, created: int | None = None) -> None:
        """Keep one answer the server gave: ``messages`` the conversation it answered (canonical
        chat messages), ``tools`` its OpenAI tool specs or None, ``answer`` the assistant message
        given, ``request`` the raw request body. Raises ValueError for a malformed argument or a
        ``response_id`` already recorded; prunes the oldest unjudged answers past the bound."""
        _require(isinstance(response_id, str) and response_id, "response_id must be a non-empty string")
        _require(isinstance(model, str), "model must be a string")
        _require(isinstance(messages, list) and all(isinstance(m, dict) for m in messages),
                 "messages must be a list of message objects")
        _require(tools is None or isinstance(tools, list), "tools must be a list of tool specs or None")
        _require(isinstance(answer, dict) and answer.get("role") == "assistant",
                 'answer must be an assistant message {"role": "assistant", ...}')
        row = (response_id, int(time.time()) if created is None else int(created), model, _json("messages", messages),
               None if not tools else _json("tools", tools), _json("answer", answer), _json("request", request))
        with self._transaction() as db:
            try:
                db.execute("INSERT INTO answers VALUES (?, ?, ?, ?, ?, ?, ?)", row)
            except sqlite3.IntegrityError as e:
                raise ValueError(f"response {response_id!r} is already recorded") from e
            excess = db.execute("SELECT count(*) FROM answers").fetchone()[0] - self.max_answers
            if excess > 0:
                db.execute(
                    "DELETE FROM answers WHERE response_id IN (SELECT response_id FROM answers a WHERE NOT EXISTS "
                    "(SELECT 1 FROM feedback f WHERE f.response_id = a.response_id) ORDER BY created, rowid LIMIT ?)",
                    (excess,))

    def add_feedback(self, response_id: str, *, rating: str | None, correction: str | None = None,
                     note: str | None = None, reviewer: str | None = None) -> dict:
        """Store one judgement of a recorded answer and return it (with its id ``fb-...`` and
        ``created``, unix seconds). Blank texts count as absent; at least one of rating,
        correction and note must be given. Raises KeyError when ``response_id`` was never
        recorded or was pruned, ValueError for a rating other than good/bad/None or a text past
        its bound (``MAX_TEXT`` characters; ``MAX_REVIEWER`` for the reviewer)."""
        if rating is not None and rating not in RATINGS:
            raise ValueError(f"rating must be 'good', 'bad' or null, not {rating!r}")
        correction = _text("correction", correction, MAX_TEXT)
        note = _text("note", note, MAX_TEXT)
        reviewer = _text("reviewer", reviewer, MAX_REVIEWER)
        if rating is None and correction is None and note is None:
            raise ValueError("feedback needs a rating ('good' or 'bad'), a correction or a note")
        stored = {"id": f"fb-{secrets.token_hex(12)}", "response_id": response_id, "rating": rating,
                  "correction": correction, "note": note, "reviewer": reviewer, "created": int(time.time())}
        with self._transaction() as db:
            if db.execute("SELECT 1 FROM answers WHERE response_id = ?", (response_id,)).fetchone() is None:
                raise KeyError(response_id)
            db.execute("INSERT INTO feedback (id, response_id, created, rating, correction, note, reviewer) "
                       "VALUES (:id, :response_id, :created, :rating, :correction, :note, :reviewer)", stored)
        return stored

    def answer(self, response_id: str) -> dict | None:
        """The recorded answer (response_id, created, model, messages, tools, answer), or None
        when it was never recorded or was pruned; what a ``previous_response_id`` continues."""
        with self._connect() as db:
            row = db.execute("SELECT response_id, created, model, messages, tools, answer FROM answers "
                             "WHERE response_id = ?", (response_id,)).fetchone()
        if row is None:
            return None
        return {"response_id": row[0], "created": row[1], "model": row[2], "messages": json.loads(row[3]),
                "tools": json.loads(row[4]) if row[4] else None, "answer": json.loads(row[5])}

    def feedback(self, response_id: str) -> list[dict]:
        """Every judgement of ``response_id``, oldest first; KeyError when it is not recorded."""
        with self._connect() as db:
            if db.execute("SELECT 1 FROM answers WHERE response_id = ?", (response_id,)).fetchone() is None:
                raise KeyError(response_id)
            rows = db.execute(f"SELECT {', '.join(FEEDBACK_COLUMNS)} FROM feedback WHERE response_id = ? "
                              "ORDER BY seq", (response_id,)).fetchall()
        return [dict(zip(FEEDBACK_COLUMNS, row, strict=True)) for row in rows]

    def recent(self, *, prefix: str = "", limit: int = 200) -> list[dict]:
        """Recorded answers whose response_id starts with ``prefix``, newest first (at most
        ``limit``), each as ``answer()`` gives it plus ``feedback``, its judgements oldest first."""
        like = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        with self._connect() as db:
            ids = [r[0] for r in db.execute("SELECT response_id FROM answers WHERE response_id LIKE ? ESCAPE '\\' "
                                            "ORDER BY created DESC, rowid DESC LIMIT ?", (like, max(0, limit)))]
        out = []
        for response_id in ids:
            answer = self.answer(response_id)
            if answer is not None:
                out.append({**answer, "feedback": self.feedback(response_id)})
        return out


def _require(ok: Any, message: str) -> None:
    if not ok:
        raise ValueError(message)


def _json(name: str, value: Any) -> str:
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name} cannot be stored as JSON: {e}") from e
    _require(not lone_surrogate(text), f"{name} holds a lone surrogate, which is not text")
    return text


def _text(name: str, value: Any, limit: int) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    _require(isinstance(value, str), f"{name} must be a string, not {json_kind(value)}")
    _require(len(value) <= limit, f"{name} is {len(value):,} characters; at most {limit:,} are kept")
    _require(not lone_surrogate(value), f"{name} holds a lone surrogate, which is not text")
    return value


def _check_version(db: sqlite3.Connection, path: Path) -> None:
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise DataError(f"{path}: a feedback database of a newer onthejob (schema {version}, this one reads "
                        f"{SCHEMA_VERSION})", fix="upgrade onthejob")


# ------------------------------------------------------------------------------------------------
# The export


@dataclass
class Judged:
    """One answer and its verdict, as the export reads them."""

    response_id: str
    messages: list[dict]
    tools: list[dict] | None
    answer: dict
    feedback_id: str
    created: int
    rating: str | None
    correction: str | None
    reviewer: str | None

    @property
    def conversation(self) -> str:
        """What two answers must share to answer the same conversation."""
        payload = json.dumps([self.messages, self.tools or []], sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(payload.encode()).hexdigest()


def from_feedback(db: str | Path, out: str | Path, pairs_out: str | Path | None = None) -> dict[str, int]:
    """``ojt data from-feedback``: write the training examples (and, with ``pairs_out``, the
    preference pairs) of the judgements in ``db``, all files or none; see the module docstring.
    Returns the counts: answers judged, examples (corrected + rated_good), pairs, skipped, invalid."""
    outputs = [("--out", out)] + ([("--pairs-out", pairs_out)] if pairs_out is not None else [])
    check_outputs([db, f"{db}-wal", f"{db}-shm"], outputs)
    judged, notes_only = _read_judged(db)
    examples, pairs, counts = export_records(judged)
    counts["answers"] = len(judged) + notes_only
    counts["skipped"] += notes_only
    if not examples:
        raise DataError(f"{db}: no judgement gives a training example ({counts['answers']} answer(s) judged, "
                        f"{counts['skipped']} rated bad without a correction or with notes only, "
                        f"{counts['invalid']} unreadable); nothing written",
                        fix="rate good answers 'good' and give bad ones a correction (POST /v1/feedback)")
    write_jsonl_files([(out, examples)] + ([(pairs_out, pairs)] if pairs_out is not None else []))
    return counts


def export_records(judged: list[Judged]) -> tuple[list[dict], list[dict], dict[str, int]]:
    """``(examples, pairs, counts)`` of answers with their verdicts, in the order given."""
    counts = {"examples": 0, "corrected": 0, "rated_good": 0, "pairs": 0, "skipped": 0, "invalid": 0}
    examples, pairs = [], []
    good = {j.conversation: j.answer for j in judged if j.rating == "good" and j.correction is None}
    for j in judged:
        if j.rating == "bad":
            better = ([_assistant(j.correction)] if j.correction is not None else []) + (
                [good[j.conversation]] if j.conversation in good else [])
            for pair in (_pair(j, b) for b in better):
                if pair is not None and pair not in pairs[-1:]:  # a correction that is the good answer: once
                    pairs.append(pair)
        wanted = _assistant(j.correction) if j.correction is not None else j.answer if j.rating == "good" else None
        if wanted is None:
            counts["skipped"] += 1
            continue
        canonical = _canonical(j, wanted)
        if canonical is None:
            counts["invalid"] += 1
            continue
        examples.append(_example(j, *canonical))
        counts["corrected" if j.correction is not None else "rated_good"] += 1
    counts["examples"], counts["pairs"] = len(examples), len(pairs)
    return examples, pairs, counts


def _assistant(text: str) -> dict:
    return {"role": "assistant", "content": text}


def _canonical(j: Judged, output: dict) -> tuple[list[dict], list[dict] | None] | None:
    """The conversation followed by ``output``, as the chat reader would return it; None when
    the reader would report a fault (the stored conversation would not train)."""
    faults = Faults(j.response_id, 0)
    output = {k: v for k, v in output.items() if k in ANSWER_KEYS}
    messages = chat_messages([*j.messages, output], faults)
    tools = record_tools({"tools": j.tools}, faults)
    return None if messages is None or faults.problems else (messages, tools)


def _example(j: Judged, messages: list[dict], tools: list[dict] | None) -> dict:
    context = [{**m, "weight": 0} if m["role"] == "assistant" else m for m in messages[:-1]]
    record: dict[str, Any] = {"messages": [*context, messages[-1]]}
    if tools:
        record["tools"] = tools
    record["source"] = {"response_id": j.response_id, "feedback_id": j.feedback_id, "reviewer": j.reviewer,
                        "created": j.created}
    return record


def _pair(j: Judged, preferred: dict) -> dict | None:
    better, worse = _canonical(j, preferred), _canonical(j, j.answer)
    if better is None or worse is None or better[0][-1] == worse[0][-1]:
        return None
    given: dict[str, Any] = {"messages": better[0][:-1]}
    if better[1]:
        given["tools"] = better[1]
    return {"input": given, "preferred_output": [better[0][-1]], "non_preferred_output": [worse[0][-1]]}


def _read_judged(db: str | Path) -> tuple[list[Judged], int]:
    """Every answer with a verdict, oldest answer first, and how many have notes only."""
    has_verdict = "(rating IS NOT NULL OR correction IS NOT NULL)"
    with _read_only(db) as conn:
        try:
            rows = conn.execute(
                "SELECT a.response_id, a.messages, a.tools, a.answer, f.id, f.created, f.rating, f.correction, "
                "f.reviewer FROM answers a JOIN feedback f ON f.seq = (SELECT max(seq) FROM feedback "
                f"WHERE response_id = a.response_id AND {has_verdict}) ORDER BY a.created, a.rowid"
            ).fetchall()
            notes_only = conn.execute(
                "SELECT count(DISTINCT response_id) FROM feedback f WHERE NOT EXISTS (SELECT 1 FROM feedback "
                f"WHERE response_id = f.response_id AND {has_verdict})").fetchone()[0]
        except sqlite3.Error as e:
            raise DataError(f"{db}: not a feedback database ({e})", fix=NO_STORE_FIX) from e
    try:
        return [Judged(r[0], json.loads(r[1]), json.loads(r[2]) if r[2] else None, json.loads(r[3]), *r[4:])
                for r in rows], notes_only
    except (TypeError, ValueError) as e:
        raise DataError(f"{db}: a stored answer is not JSON ({e}); the database is damaged",
                        fix="restore it from a backup") from e


@contextlib.contextmanager
def _read_only(db: str | Path) -> Iterator[sqlite3.Connection]:
    """A read-only connection to an existing database: reading must never create one."""
    require_file(Path(db), str(db))
    try:
        conn = sqlite3.connect(f"{Path(db).resolve().as_uri()}?mode=ro", uri=True, timeout=30)
    except sqlite3.Error as e:
        raise DataError(f"{db}: cannot open the feedback database: {e}", fix=NO_STORE_FIX) from e
    try:
        yield conn
    finally:
        conn.close()
