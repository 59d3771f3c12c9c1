"""Write an evaluation as report.json, report.md and one self-contained report.html.

    from onthejob.eval.report import write_reports
    paths = write_reports([base_eval, tuned_eval], "runs/hr-demo/eval", title="HR assistant")

The HTML has no external resources (inline CSS, plots as inline SVG drawn by matplotlib's Agg/SVG
backends), so it can be mailed or attached to a ticket as one file. Same inputs give byte-identical
files: nothing in them depends on the clock, and the SVG ids are salted with a fixed string.
"""

from __future__ import annotations

import html
import io
import math
import re
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

from onthejob.fsutil import write_json, write_text

QUALITY = ["facts_recall", "exact_match", "token_f1", "rouge_l", "format_valid", "judge"]  # 0..1, higher is better
GROUNDED = ["citation_precision", "answer_support", "abstained", "confidently_wrong"]  # the last: lower is better
COST = ["answer_tokens", "stopped", "latency_s", "tokens_per_s"]
SHOW = 8  # questions in the Markdown per-question table (the HTML shows all)

CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1300px;color:#1d2330;padding:0 16px}
h1{font-size:24px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #dde1e8;padding-bottom:4px}
table{border-collapse:collapse;margin:8px 0 16px;width:100%}th,td{border:1px solid #dde1e8;padding:5px 8px;text-align:left;vertical-align:top}
th{background:#f3f5f9;font-weight:600}td.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.ci{color:#6b7385;font-size:12px}.verdict{background:#eef6ee;border-left:4px solid #3c9a4b;padding:10px 14px;margin:12px 0}
.verdict p{margin:4px 0}.plots{display:flex;flex-wrap:wrap;gap:16px}.plots svg{max-width:100%;height:auto}
.ans{white-space:pre-wrap;max-width:420px}.score{color:#6b7385;font-size:12px;display:block;margin-top:4px}
.good{background:#f1f9f2}.bad{background:#fdf2f2}.sig{color:#2c7a3a;font-weight:600}.nsig{color:#8a6d1a}
.muted{color:#6b7385}mark{background:#fff1a8;padding:0 1px}
"""


def write_reports(
    evals: list,
    out_dir: str | Path,
    *,
    title: str,
    verdict: str | None = None,
    comparisons: list[dict] | None = None,
    leaks=None,
    tables: list[dict] | None = None,
    primary: str | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Path]:
    """Write the three reports into ``out_dir``; returns ``{"json": path, "md": path, "html": path}``.

    ``evals``: ``ModelEval``s (one per model or arm). ``comparisons``: paired-bootstrap results, each
    ``{"a", "b", "metric", "diff", "low", "high", "p_value", "significant"}``. ``leaks``: from
    ``run_leakage``. ``tables``: extra ``{"title", "columns", "rows"}`` tables (e.g. scores without
    leaked questions). ``primary``: the metric shown beside each answer (default: facts_recall when
    scored, else token_f1). ``extra``: more sections by name, kept in report.json and shown where
    the formats know them (``judge``: rubric and agreement; ``general``: the probe's lost/gained).
    """
    out = Path(out_dir)
    doc = _document(evals, title, verdict, comparisons or [], _leak_rows(leaks), tables or [], primary)
    doc.update({k: _clean(v) for k, v in (extra or {}).items() if v is not None})
    paths = {"json": out / "report.json", "md": out / "report.md", "html": out / "report.html"}
    write_json(paths["json"], doc)
    write_text(paths["md"], _markdown(doc))
    write_text(paths["html"], _html(doc))
    return paths


# ---------------------------------------------------------------------------------- the document


def _document(evals, title, verdict, comparisons, leaks, tables, primary) -> dict[str, Any]:
    models = [_clean(asdict(e) if is_dataclass(e) else dict(e)) for e in evals]
    for m in models:
        m["label"] = m.get("label") or m["name"]
    metrics = [k for k in QUALITY + GROUNDED + COST if any(_has(m["aggregates"].get(k)) for m in models)]
    metrics += sorted({k for m in models for k, v in m["aggregates"].items() if k not in metrics and _has(v)})
    primary = primary or ("facts_recall" if "facts_recall" in metrics else "token_f1")
    return {"title": title, "verdict": verdict, "primary": primary, "metrics": metrics, "models": models,
            "comparisons": _clean(comparisons), "leaks": leaks, "tables": _clean(tables)}


def _has(agg: dict | None) -> bool:
    return bool(agg) and agg.get("mean") is not None and (agg.get("n") or 0) > 0


def _clean(obj):
    """JSON-safe and stable: NaN/inf become None, tuples lists, Paths strings."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, (str, int, bool)) or obj is None:
        return obj
    if hasattr(obj, "item"):  # numpy scalars
        return _clean(obj.item())
    return str(obj)


def _leak_rows(leaks) -> list[dict]:
    rows = []
    for leak in leaks or []:
        get = leak.get if isinstance(leak, dict) else lambda k, leak=leak: getattr(leak, k, None)
        line = get("eval_line") if get("eval_line") is not None else get("line")
        rows.append({"line": line, "kind": get("kind"), "score": get("score"), "train": get("train")})
    return _clean(rows)


def _questions(models: list[dict]) -> list[dict]:
    """One row per question (by eval line, in first-seen order) with every model's answer."""
    rows: dict[Any, dict] = {}
    for i, m in enumerate(models):
        for ex in m["per_example"]:
            key = ex.get("line")
            row = rows.setdefault(key, {"line": key, "question": ex.get("question", ""),
                                        "reference": ex.get("reference", ""), "facts": ex.get("facts") or [],
                                        "answers": [None] * len(models)})
            row["answers"][i] = ex
    return list(rows.values())


# ---------------------------------------------------------------------------------- formatting


def _num(v, metric: str = "") -> str:
    if v is None:
        return "–"
    if metric == "latency_s":
        return f"{v:.2f} s"
    if metric in ("answer_tokens", "tokens_per_s") or abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.3f}"


def _ci(agg: dict | None, metric: str) -> tuple[str, str]:
    if not _has(agg):
        return "–", ""
    lo, hi = agg.get("low"), agg.get("high")
    ci = f"[{_num(lo, metric)}, {_num(hi, metric)}]" if lo is not None and hi is not None else ""
    return _num(agg["mean"], metric), ci


def _signed(v) -> str:
    return "–" if v is None else f"{v:+.3f}"


def _comparison_line(c: dict) -> tuple[str, ...]:
    sig = "significant" if c.get("significant") else "not significant"
    p = c.get("p_value")
    return (f"{c.get('a')} vs {c.get('b')}", str(c.get("metric", "")), _signed(c.get("diff")),
            f"{_signed(c.get('low'))} to {_signed(c.get('high'))}", "–" if p is None else f"{p:.4f}", sig)


def _summary_rows(doc) -> list[list[str]]:
    rows = []
    for m in doc["models"]:
        cells = [m["label"]]
        for k in doc["metrics"]:
            mean, ci = _ci(m["aggregates"].get(k), k)
            cells.append(f"{mean} {ci}".strip())
        cells += [_num(m.get("loss")), _num(m.get("perplexity")), _num(m.get("seconds"), "latency_s")]
        rows.append(cells)
    return rows


def _first_line(text: str, width: int) -> str:
    text = " ".join(str(text or "").split()).replace("|", "\\|").replace("<", "&lt;")
    return text[: width - 1] + "…" if len(text) > width else text


# ---------------------------------------------------------------------------------- Markdown


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return out + [""]


def _markdown(doc) -> str:
    out = [f"# {doc['title']}", ""]
    if doc["verdict"]:
        out += [f"> {line}" for line in doc["verdict"].splitlines()] + [""]
    out += ["## Summary (mean [95% CI])", ""]
    out += _md_table(["model"] + doc["metrics"] + ["loss", "perplexity", "seconds"], _summary_rows(doc))
    if doc["comparisons"]:
        out += ["## Paired comparisons (bootstrap)", ""]
        out += _md_table(["comparison", "metric", "difference", "95% CI", "p", ""],
                         [list(_comparison_line(c)) for c in doc["comparisons"]])
    for t in doc["tables"]:
        out += [f"## {t['title']}", ""] + _md_table(t["columns"], [[_cell(v) for v in r] for r in t["rows"]])
    if doc["leaks"]:
        out += [f"## Possible leakage: {len(doc['leaks'])} eval questions resemble training examples", ""]
        out += _md_table(["eval line", "kind", "score", "training example"],
                         [[r["line"], r["kind"], _num(r["score"]), r["train"]] for r in doc["leaks"]])
    out += _judge_md(doc.get("judge")) + _general_md(doc.get("general"))
    questions = _questions(doc["models"])
    out += [f"## First {min(SHOW, len(questions))} of {len(questions)} questions", ""]
    rows = [[q["line"], _first_line(q["question"], 60)] + [_first_line((a or {}).get("answer", ""), 50) for a in q["answers"]]
            for q in questions[:SHOW]]
    out += _md_table(["line", "question"] + [m["label"] for m in doc["models"]], rows)
    return "\n".join(out)


def _judge_md(judge: dict | None) -> list[str]:
    if not judge:
        return []
    out = ["## The judge's rubric", ""] + [f"- {line}" for line in judge["rubric"].splitlines()] + [""]
    for label, a in (judge.get("agreement") or {}).items():
        out.append(f"- {label}: judge and facts agree on {a['agree']} of {a['n']} answers; the judge alone credits "
                   f"lines {_lines(a['judge_only'])}; the facts alone credit lines {_lines(a['facts_only'])}")
    return out + [""]


def _general_md(general: dict | None) -> list[str]:
    if not general:
        return []
    out = [f"## General skills ({general['name']}, {general['n']} items)", "", general["sentence"], ""]
    for c in general.get("changes") or []:
        out.append(f"- {c['a']} lost lines {_lines(c['lost'])}; gained lines {_lines(c['gained'])}")
    return out + [""]


def _lines(lines: list | None) -> str:
    return ", ".join(str(x) for x in lines) if lines else "none"


def _fact_text(fact) -> str:
    return " / ".join(fact) if isinstance(fact, list) else str(fact)


def _cell(v) -> str:
    return _num(v) if isinstance(v, float) else ("–" if v is None else str(v))


# ---------------------------------------------------------------------------------- HTML


def _h(text) -> str:
    return html.escape("" if text is None else str(text), quote=True)


def _html_table(header: list[str], rows: list[list[str]], *, raw: bool = False, classes: list[str] | None = None) -> str:
    """``rows`` are escaped unless ``raw`` (cells already HTML)."""
    head = "".join(f"<th>{_h(c)}</th>" for c in header)
    body = []
    for i, r in enumerate(rows):
        cls = f' class="{classes[i]}"' if classes and classes[i] else ""
        body.append(f"<tr{cls}>" + "".join(f"<td>{c if raw else _h(c)}</td>" for c in r) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _html(doc) -> str:
    parts = [f"<h1>{_h(doc['title'])}</h1>",
             f"<p class=\"muted\">{len(doc['models'])} model(s) · primary metric: {_h(doc['primary'])}</p>"]
    if doc["verdict"]:
        parts.append('<div class="verdict">' + "".join(f"<p>{_h(x)}</p>" for x in doc["verdict"].splitlines()) + "</div>")
    parts += ["<h2>Summary (mean, 95% CI)</h2>", _summary_html(doc)]
    parts += ["<h2>Plots</h2>", '<div class="plots">', _quality_svg(doc), _latency_svg(doc), "</div>"]
    if doc["comparisons"]:
        rows = []
        for c in doc["comparisons"]:
            line = [_h(x) for x in _comparison_line(c)]
            line[-1] = f'<span class="{"sig" if c.get("significant") else "nsig"}">{line[-1]}</span>'
            rows.append(line)
        parts += ["<h2>Paired comparisons (bootstrap)</h2>",
                  _html_table(["comparison", "metric", "difference", "95% CI", "p", ""], rows, raw=True)]
    for t in doc["tables"]:
        parts += [f"<h2>{_h(t['title'])}</h2>", _html_table(t["columns"], [[_cell(v) for v in r] for r in t["rows"]])]
    if doc["leaks"]:
        parts += [f"<h2>Possible leakage: {len(doc['leaks'])} eval questions resemble training examples</h2>",
                  _html_table(["eval line", "kind", "score", "training example"],
                              [[r["line"], r["kind"], _num(r["score"]), r["train"]] for r in doc["leaks"]])]
    for section in (_judge_md(doc.get("judge")), _general_md(doc.get("general"))):
        if section:  # the same lines as the Markdown: a heading, then paragraphs and list items
            parts.append(f"<h2>{_h(section[0][3:])}</h2>")
            parts += [f"<p>{_h(line.removeprefix('- '))}</p>" for line in section[1:] if line]
    parts += ["<h2>Every question</h2>", _questions_html(doc)]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{_h(doc['title'])}</title><style>{CSS}</style></head><body>\n"
            + "\n".join(parts) + "\n</body></html>\n")


def _summary_html(doc) -> str:
    header = ["model"] + doc["metrics"] + ["loss", "perplexity", "seconds"]
    rows = []
    for m in doc["models"]:
        cells = [f"<b>{_h(m['label'])}</b><br><span class=\"ci\">{_h(m['name'])}</span>"]
        for k in doc["metrics"]:
            mean, ci = _ci(m["aggregates"].get(k), k)
            cells.append(f'<td class="n">{_h(mean)}<br><span class="ci">{_h(ci)}</span>')
        cells += [f'<td class="n">{_h(_num(v, u))}' for v, u in
                  ((m.get("loss"), ""), (m.get("perplexity"), ""), (m.get("seconds"), "latency_s"))]
        rows.append("<tr><td>" + cells[0] + "</td>" + "</td>".join(cells[1:]) + "</td></tr>")
    head = "".join(f"<th>{_h(c)}</th>" for c in header)
    return f"<table class=\"summary\"><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _questions_html(doc) -> str:
    primary = doc["primary"]
    header = ["line", "question", "reference", "facts"] + [m["label"] for m in doc["models"]]
    rows = []
    for q in _questions(doc["models"]):
        cells = [_h(q["line"]), f'<div class="ans">{_h(q["question"])}</div>',
                 f'<div class="ans">{_h(q["reference"])}</div>', _h("; ".join(_fact_text(f) for f in q["facts"]))]
        for a in q["answers"]:
            if a is None:
                cells.append('<span class="muted">–</span>')
                continue
            score = a.get(primary)
            shown = [f"{k} {_num(a.get(k))}" for k in (primary, "token_f1") if a.get(k) is not None]
            shown = list(dict.fromkeys(shown))
            cls = "" if score is None else ("good" if score >= 1.0 else "bad" if score <= 0.0 else "")
            cells.append(f'<div class="ans {cls}">{_marked(a.get("answer", ""), a.get("facts_found") or [])}</div>'
                         f'<span class="score">{_h(" · ".join(shown))}</span>{_found_html(a.get("facts_found") or [])}')
        rows.append(cells)
    return _html_table(header, rows, raw=True)


def _marked(answer: str, found: list[dict]) -> str:
    """The answer escaped, with each matched fact's span in <mark>."""
    spans = sorted((f["start"], f["end"]) for f in found if f.get("start") is not None)
    out, at = [], 0
    for start, end in spans:
        if start < at:  # overlapping matches: the first one shown
            continue
        out += [_h(answer[at:start]), f"<mark>{_h(answer[start:end])}</mark>"]
        at = end
    return "".join(out) + _h(answer[at:])


def _found_html(found: list[dict]) -> str:
    """One line per fact: ✓ with the words that matched (and how), or ✗."""
    if not found:
        return ""
    lines = []
    for f in found:
        if f.get("matched") is None:
            lines.append(f"✗ {_h(f['fact'])}")
        else:
            alt = "" if f["matched"] == f["fact"] else f" as “{_h(f['matched'])}”"
            how = " (by its words)" if f.get("how") == "words" else ""
            lines.append(f"✓ {_h(f['fact'])}{alt}{how}")
    return '<span class="score">' + "<br>".join(lines) + "</span>"


# ---------------------------------------------------------------------------------- plots


def _svg(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None}, bbox_inches="tight")
    plt.close(fig)
    text = buf.getvalue()
    text = text[text.index("<svg"):]  # drop the XML prolog and DOCTYPE: the SVG is inline
    return re.sub(r"\s*<metadata>.*?</metadata>", "", text, flags=re.DOTALL)  # RDF boilerplate


def _plotting():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # Fixed hash salt: matplotlib's SVG ids are otherwise random, and the report must repeat byte for byte.
    return plt, {"svg.hashsalt": "onthejob-report", "svg.fonttype": "path", "font.size": 10}


def _quality_svg(doc) -> str:
    metrics = [k for k in QUALITY if k in doc["metrics"]]
    if not metrics:
        return ""
    plt, rc = _plotting()
    with plt.rc_context(rc):
        fig, ax = plt.subplots(figsize=(7.5, 3.6))
        width = 0.8 / len(doc["models"])
        for i, m in enumerate(doc["models"]):
            means, err = [], [[], []]
            for k in metrics:
                agg = m["aggregates"].get(k) or {}
                mean = agg.get("mean") if _has(agg) else None
                means.append(mean or 0.0)
                lo, hi = agg.get("low"), agg.get("high")
                err[0].append(max(0.0, (mean or 0) - lo) if mean is not None and lo is not None else 0.0)
                err[1].append(max(0.0, hi - (mean or 0)) if mean is not None and hi is not None else 0.0)
            xs = [j + (i - (len(doc["models"]) - 1) / 2) * width for j in range(len(metrics))]
            ax.bar(xs, means, width, yerr=err, capsize=3, label=m["label"])
        ax.set_xticks(range(len(metrics)), metrics)
        ax.set_ylim(0, 1.05)
        ax.set_ylabel("mean (95% CI)")
        ax.set_title("Quality")
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
        ax.grid(axis="y", alpha=0.3)
        return _svg(fig)


def _latency_svg(doc) -> str:
    data = [[ex["latency_s"] for ex in m["per_example"] if isinstance(ex.get("latency_s"), (int, float))]
            for m in doc["models"]]
    if not any(data):
        return ""
    plt, rc = _plotting()
    with plt.rc_context(rc):
        fig, ax = plt.subplots(figsize=(5.5, 0.6 + 0.55 * len(data)))
        labels = [m["label"] for m in doc["models"]]
        ax.boxplot([d or [0.0] for d in data], orientation="horizontal", tick_labels=labels, showmeans=True)
        ax.invert_yaxis()
        ax.set_xlabel("seconds per answer")
        ax.set_title("Latency")
        ax.grid(axis="x", alpha=0.3)
        return _svg(fig)
