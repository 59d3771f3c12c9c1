// Compare: pick questions, arms and a run, run ojt compare as a job, show its report.
// Review: judge answers (good / bad, the correct answer), save them as training data.
"use strict";
const ARMS = ["prompt", "few-shot", "rag", "ft", "ft+rag"];

OJT.pages.compare = {
  async render(el, params) {
    const h = OJT.h;
    if (params.get("job")) return OJT.pages.compare.report(el, params.get("job"));
    const [files, runs, collections] = await Promise.all([OJT.dataFiles(), OJT.runNames(), OJT.collectionNames()]);
    const data = OJT.select("cmp-data", files, files[0]);
    const run = OJT.select("cmp-run", [["", "none"], ...runs], runs[runs.length - 1] || "");
    const rag = OJT.select("cmp-rag", [["", "none"], ...collections], "");
    const base = OJT.select("cmp-base", [["", "the run's base (or the default model)"], ...((OJT.info && OJT.info.models) || [])], "");
    const tokens = h("input", { type: "number", id: "cmp-max-tokens", value: "128", min: "1", max: "4096" });
    const arms = ARMS.map((a) => h("label", {}, h("input", { type: "checkbox", id: `arm-${a}`, value: a, checked: a === "prompt" || a === "ft" }), ` ${a}`));
    const list = h("div", { id: "cmp-questions" });
    const loadQuestions = async () => {
      if (!data.value) return;
      const qs = await OJT.api("GET", `/api/compare/questions?path=${encodeURIComponent(data.value)}`);
      list.replaceChildren(h("p", { class: "muted" }, `${qs.length} questions; pick the ones to ask `,
        h("button", { class: "plain", onclick: () => list.querySelectorAll("input").forEach((c) => (c.checked = true)) }, "all"),
        h("button", { class: "plain", onclick: () => list.querySelectorAll("input").forEach((c) => (c.checked = false)) }, "none")),
        OJT.table(["", "question", "reference"], qs.map((q) => [h("input", { type: "checkbox", class: "cmp-q", value: String(q.line) }), q.question, q.reference])));
    };
    data.addEventListener("change", () => loadQuestions().catch(OJT.showError));
    el.append(OJT.section("Compare on held-out questions",
      h("div", {}, h("label", {}, "questions from ", data), h("label", {}, "fine-tuned run ", run), h("label", {}, "collection ", rag),
        h("label", {}, "base model ", base), h("label", {}, "longest answer ", tokens)),
      h("div", {}, "arms: ", arms),
      h("button", { id: "cmp-start", onclick: async () => {
        const lines = [...list.querySelectorAll("input.cmp-q:checked")].map((c) => parseInt(c.value, 10));
        const job = await OJT.api("POST", "/api/compare", {
          data: data.value, lines: lines.length ? lines : null, run: run.value || null, rag: rag.value || null, base: base.value || null,
          arms: ARMS.filter((a) => document.getElementById(`arm-${a}`).checked), max_new_tokens: parseInt(tokens.value, 10),
        });
        location.hash = `#/compare?job=${job.id}`;
      } }, "Start compare"), list));
    await loadQuestions();
  },

  async report(el, jobId) {
    const h = OJT.h;
    const status = h("div", { id: "job-status" });
    const log = h("pre", { id: "job-log" });
    const out = h("div", { id: "cmp-report" });
    el.append(OJT.section("Compare", status, h("details", {}, h("summary", { text: "log" }), log)), out);
    OJT.watchJob(jobId, status, log, async (job) => {
      if (job.status !== "done") return;
      const r = await OJT.api("GET", `/api/compare/${jobId}`);
      OJT.pages.compare.show(out, r, jobId);
    });
  },

  show(out, r, jobId) {
    const h = OJT.h;
    const doc = r.report;
    const primary = doc.primary;
    const models = doc.models;
    const plot = h("canvas", { id: "cmp-plot", width: 560, height: 44 + 34 * models.length });
    const byLine = {};
    models.forEach((m, i) => m.per_example.forEach((ex) => {
      const row = (byLine[ex.line] = byLine[ex.line] || { q: ex.question, ref: ex.reference, answers: [] });
      row.answers[i] = ex;
    }));
    out.replaceChildren(OJT.section("Report",
      h("p", { id: "cmp-verdict" }, h("strong", { text: doc.verdict || "" })),
      OJT.table(["arm", `${primary} [95% CI]`, ...doc.metrics.filter((k) => k !== primary).slice(0, 4)], models.map((m) => {
        const a = m.aggregates[primary] || {};
        return [m.label, `${OJT.fmt(a.mean)} [${OJT.fmt(a.low)}, ${OJT.fmt(a.high)}]`,
          ...doc.metrics.filter((k) => k !== primary).slice(0, 4).map((k) => OJT.fmt((m.aggregates[k] || {}).mean))];
      }), { id: "cmp-table" }),
      (doc.comparisons || []).length ? h("div", {}, h("h3", { text: "Paired differences" }), OJT.table(["", "metric", "difference [95% CI]", "p", "significant"],
        doc.comparisons.map((c) => [`${c.a} vs ${c.b}`, c.metric, `${OJT.fmt(c.diff)} [${OJT.fmt(c.low)}, ${OJT.fmt(c.high)}]`, OJT.fmt(c.p_value), c.significant ? "yes" : "no"]), { id: "cmp-diffs" })) : "",
      h("div", {}, plot),
      h("p", {}, OJT.fileLink(r.html, "full report (report.html)"), " · ",
        h("a", { href: `#/review?source=compare:${jobId}`, id: "cmp-review" }, "review these answers")),
      h("h3", { text: "Every answer" }),
      OJT.table(["question", "reference", ...models.map((m) => m.label)], Object.values(byLine).map((row) => [row.q, row.ref,
        ...models.map((m, i) => { const ex = row.answers[i] || {}; return h("div", {}, ex.answer || "", h("div", { class: "muted" }, `${primary} ${OJT.fmt(ex[primary])}`)); })]),
      { id: "cmp-answers" })));
    // One bar per arm with its confidence interval.
    const ctx = plot.getContext("2d");
    ctx.font = "12px system-ui";
    const axisY = 20 + 34 * models.length;
    ctx.strokeStyle = "#d0d5dd"; ctx.fillStyle = "#667085";
    [0, 0.25, 0.5, 0.75, 1].forEach((t) => {
      ctx.beginPath(); ctx.moveTo(120 + 400 * t, 14); ctx.lineTo(120 + 400 * t, axisY); ctx.stroke();
      ctx.fillText(String(t), 114 + 400 * t, axisY + 14);
    });
    ctx.fillText(primary, 4, axisY + 14);
    models.forEach((m, i) => {
      const a = m.aggregates[primary] || {};
      const y = 20 + i * 34, x0 = 120, w = 400;
      ctx.fillStyle = "#1d2330"; ctx.fillText(m.label, 4, y + 14);
      ctx.fillStyle = COLORS[i % COLORS.length]; ctx.fillRect(x0, y, Math.max(2, w * (a.mean || 0)), 20);
      ctx.fillStyle = "#1d2330"; ctx.fillText(OJT.fmt(a.mean), x0 + w * Math.max(a.high || 0, a.mean || 0) + 6, y + 14);
      if (a.low !== null && a.high !== null && a.low !== undefined) {
        ctx.strokeStyle = "#1d2330"; ctx.beginPath(); ctx.moveTo(x0 + w * a.low, y + 10); ctx.lineTo(x0 + w * a.high, y + 10); ctx.stroke();
      }
    });
  },
};

OJT.pages.review = {
  async render(el, params) {
    const h = OJT.h;
    const jobs = (await OJT.api("GET", "/api/jobs?kind=compare")).filter((j) => j.status === "done");
    const sources = [...jobs.map((j) => [`compare:${j.id}`, `${j.title} (${j.id})`]), ["playground", "playground answers"]];
    const source = OJT.select("rv-source", sources, params.get("source") || (sources[0] && sources[0][0]));
    const reviewer = h("input", { type: "text", id: "rv-reviewer", value: localStorage.getItem("ojt-reviewer") || "", placeholder: "your name" });
    const items = h("div", { id: "rv-items" });
    const result = h("div", { id: "rv-export-result" });
    const arm = h("select", { id: "rv-arm" });
    const count = h("span", { id: "rv-count", class: "muted" });
    let list = [];
    const counted = () => {
      const cards = [...items.querySelectorAll(".card")];
      count.textContent = `${cards.filter((c) => /judged-/.test(c.className)).length} of ${cards.length} judged`;
    };
    const draw = () => {
      const shown = list.filter((it) => !arm.value || it.label === arm.value);
      items.replaceChildren(...shown.map((it) => OJT.pages.review.card(it, reviewer, counted)));
      if (!shown.length) items.textContent = "nothing to review here yet";
      counted();
    };
    const load = async () => {
      list = await OJT.api("GET", `/api/review/items?source=${encodeURIComponent(source.value)}`);
      const labels = [...new Set(list.map((it) => it.label))];
      arm.replaceChildren(...[["", `every answer (${labels.length} arms)`], ...labels.map((l) => [l, l])].map(([v, t]) => h("option", { value: v }, t)));
      draw();
    };
    source.addEventListener("change", () => load().catch(OJT.showError));
    arm.addEventListener("change", draw);
    reviewer.addEventListener("change", () => localStorage.setItem("ojt-reviewer", reviewer.value));
    el.append(OJT.section("Review answers",
      h("p", { class: "muted" }, "Mark each answer good or bad and write the correct answer where it is wrong. Saved judgements become training examples (corrections and good answers) and preference pairs (correction preferred over the bad answer)."),
      h("div", {}, h("label", {}, "answers from ", source), h("label", {}, "show ", arm), h("label", {}, "reviewer ", reviewer), count, " ",
        h("button", { id: "rv-export", onclick: async () => {
          const r = await OJT.api("POST", "/api/review/save");
          result.replaceChildren(h("p", {}, `${r.examples} training examples (${r.corrected} corrected, ${r.rated_good} rated good) → `,
            OJT.fileLink(r.examples_path), `; ${r.pairs} preference pairs → `, OJT.fileLink(r.pairs_path)));
        } }, "Save as training data")),
      result, items));
    if (source.value) await load();
  },

  card(it, reviewer, onJudged) {
    const h = OJT.h;
    const last = (it.feedback || []).filter((f) => f.rating || f.correction).slice(-1)[0];
    const card = h("div", { class: `card${last && last.rating ? ` judged-${last.rating}` : ""}`, "data-id": it.id });
    const correction = h("textarea", { class: "rv-correction", placeholder: "the correct answer (when this one is wrong)" });
    if (last && last.correction) correction.value = last.correction;
    const state = h("span", { class: "rv-state muted", text: last ? `${last.rating || "corrected"} by ${last.reviewer || "?"} ${new Date(last.created * 1000).toLocaleString()}` : "" });
    const judge = async (rating) => {
      const body = { source: it.source, arm: it.arm, line: it.line, id: it.id, rating, correction: correction.value || null, reviewer: reviewer.value || null };
      const fb = await OJT.api("POST", "/api/review", body);
      card.className = `card${rating ? ` judged-${rating}` : ""}`;
      state.textContent = `${rating || "corrected"} by ${fb.reviewer || "?"} ${new Date(fb.created * 1000).toLocaleString()}`;
      if (onJudged) onJudged();
    };
    card.append(h("div", {}, h("strong", { text: it.label }), it.line ? h("span", { class: "muted", text: ` · question line ${it.line}` }) : ""),
      h("div", {}, h("strong", { text: "Q: " }), it.question),
      it.reference ? h("div", { class: "muted" }, "reference: ", it.reference) : "",
      it.answer.trim() ? h("div", { class: "turn assistant", text: it.answer }) : h("div", { class: "turn assistant empty", text: "(empty answer)" }),
      correction,
      h("div", {}, h("button", { class: "rv-good", onclick: () => judge("good") }, "Good"),
        h("button", { class: "rv-bad plain", onclick: () => judge("bad") }, "Bad (save correction)"), state));
    return card;
  },
};
