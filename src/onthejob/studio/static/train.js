// Train: a form made from the training config's schema, the plan, then the run with a live chart,
// its log, Stop and Resume. Runs: every run, loss curves overlaid, its config and reports.
"use strict";
OJT.trainCharts = (rows) => {
  const pick = (key) => rows.filter((r) => r[key] !== undefined && r[key] !== null).map((r) => [r.step, r[key]]);
  return {
    loss: [{ name: "train loss", color: COLORS[0], points: pick("loss") }, { name: "eval loss", color: COLORS[1], points: pick("eval_loss") }],
    lr: [{ name: "learning rate", color: COLORS[2], points: pick("lr") }],
    speed: [{ name: "tokens/s", color: COLORS[3], points: pick("tokens_per_s") }],
    recall: [{ name: "facts recall", color: COLORS[4], points: pick("facts_recall") }],
  };
};

OJT.pages.train = {
  async render(el, params) {
    const h = OJT.h;
    const [schema, all] = await Promise.all([OJT.api("GET", "/api/train/schema"), OJT.dataFiles()]);
    const files = all.filter((f) => /\.(jsonl|json|csv|tsv)$/i.test(f));
    const models = (OJT.info && OJT.info.models) || ["smollm2-135m-instruct"];
    const name = h("input", { type: "text", id: "run-name", value: params.get("run") || "run-1" });
    const model = OJT.select("train-model", models, models[0]);
    const data = h("select", { id: "train-data", multiple: true, size: 4 }, files.map((f) => h("option", { value: f }, f)));
    const evalSel = OJT.select("train-eval", [["", "none (or hold out eval_split)"], ...files], "");
    const groups = {};
    const inputs = {};
    for (const f of schema) {
      const id = `f-${f.key.replace(/\./g, "-")}`;
      const def = Array.isArray(f.default) ? JSON.stringify(f.default) : f.default === null ? "null" : String(f.default);
      let input;
      if (f.kind === "bool") input = OJT.select(id, [["", `default (${def})`], "true", "false"], "");
      else if (f.kind === "choice") input = OJT.select(id, [["", `default (${def})`], ...f.choices.map(String)], "");
      else input = h("input", { type: "text", id, placeholder: def, size: 14 });
      inputs[f.key] = input;
      const row = h("div", { class: "field" }, h("code", { text: f.key }), input, h("span", { class: "desc", text: f.description }));
      (groups[f.section || "general"] = groups[f.section || "general"] || []).push(row);
    }
    const body = () => {
      const settings = {};
      for (const [k, input] of Object.entries(inputs)) if (input.value !== "") settings[k] = input.value;
      return { name: name.value, model: model.value, data: [...data.selectedOptions].map((o) => o.value), eval: evalSel.value || null, settings };
    };
    const out = h("div", { id: "train-out" });
    const live = h("div", { id: "train-live" });
    const run = params.get("run");
    const watching = run && params.get("job");
    const form = OJT.section("New training run",
        h("div", {}, h("label", {}, "run name ", name), h("label", {}, "model ", model)),
        h("div", {}, h("label", {}, "training data ", data), h("label", {}, "eval data ", evalSel)),
        h("p", { class: "muted" }, "Every setting below starts at its default (shown in grey); anything you leave empty keeps it. onthejob derives epochs, learning rate and LoRA rank from the data size when they are left alone."),
        Object.entries(groups).map(([g, rows]) => h("details", { open: g === "general" }, h("summary", { text: g }), rows)),
        h("div", {}, h("button", { id: "train-check", class: "plain", onclick: async () => {
          const r = await OJT.api("POST", "/api/train/check", body());
          out.replaceChildren(r.ok ? h("div", {}, h("p", { class: "ok", text: "settings are valid" }), h("pre", { text: r.yaml }))
            : h("div", { id: "train-problems" }, h("p", { class: "bad", text: r.error }), h("ul", {}, r.problems.map((p) => h("li", { text: p })))));
        } }, "Check"),
        h("button", { id: "train-plan", class: "plain", onclick: async () => {
          out.textContent = "estimating…";
          const r = await OJT.api("POST", "/api/train/plan", body());
          out.replaceChildren(h("h3", { text: "Plan" }), h("pre", { id: "plan-text", text: r.text }));
        } }, "Plan"),
        h("button", { id: "train-start", onclick: async () => {
          const job = await OJT.api("POST", "/api/train", body());
          location.hash = `#/train?run=${encodeURIComponent(name.value)}&job=${job.id}`;
        } }, "Start training")),
        out);
    el.append(live, watching ? h("details", { id: "train-form" }, h("summary", { text: "New training run" }), form) : form);
    if (watching) OJT.pages.train.live(live, run, params.get("job"));
  },

  // The run as it trains: status, charts that receive each logged step, the log, Stop, Resume.
  live(el, run, jobId) {
    const h = OJT.h;
    const status = h("div", { id: "job-status" });
    const points = h("span", { id: "chart-points", text: "0" });
    const canvases = { loss: h("canvas", { id: "chart", width: 620, height: 240 }), lr: h("canvas", { id: "chart-lr", width: 300, height: 160 }),
      speed: h("canvas", { id: "chart-speed", width: 300, height: 160 }) };
    const log = h("pre", { id: "job-log" });
    const stop = h("button", { id: "train-stop", class: "plain", onclick: async () => { await OJT.api("POST", `/api/jobs/${jobId}/stop`); } }, "Stop (checkpoint)");
    const resume = h("button", { id: "train-resume", disabled: true, onclick: async () => {
      const job = await OJT.api("POST", `/api/runs/${encodeURIComponent(run)}/resume`);
      location.hash = `#/train?run=${encodeURIComponent(run)}&job=${job.id}`;
    } }, "Resume");
    el.append(OJT.section(`Run ${run}`, status, h("div", {}, stop, resume, h("span", { class: "muted" }, " points: "), points),
      h("div", {}, canvases.loss), OJT.legend(OJT.trainCharts([]).loss),
      h("div", { class: "cols" }, h("div", {}, h("h3", { text: "learning rate" }), canvases.lr), h("div", {}, h("h3", { text: "tokens per second" }), canvases.speed)),
      h("h3", { text: "Log" }), log));
    let last = -1, rows = [];
    const draw = async () => {
      const fresh = await OJT.api("GET", `/api/runs/${encodeURIComponent(run)}/metrics?after=${last}`);
      if (fresh.length) {
        rows = rows.concat(fresh);
        last = Math.max(...rows.map((r) => r.step || 0));
      }
      points.textContent = String(rows.filter((r) => r.loss !== undefined).length);
      const c = OJT.trainCharts(rows);
      OJT.chart(canvases.loss, c.loss, { xlabel: "step" });
      OJT.chart(canvases.lr, c.lr);
      OJT.chart(canvases.speed, c.speed);
    };
    OJT.every(1000, draw);
    draw().catch(OJT.showError);
    OJT.watchJob(jobId, status, log, async (job) => {
      await draw();
      stop.disabled = true;
      resume.disabled = job.status === "done";
    });
  },
};

OJT.pages.runs = {
  async render(el) {
    const h = OJT.h;
    const runs = await OJT.api("GET", "/api/runs");
    const chart = h("canvas", { id: "runs-chart", width: 760, height: 260 });
    const legend = h("div");
    const detail = h("div", { id: "run-detail" });
    const checks = runs.map((r) => h("input", { type: "checkbox", value: r.name, class: "run-check", onchange: () => overlay() }));
    const overlay = async () => {
      const chosen = checks.filter((c) => c.checked).map((c) => c.value);
      const series = [];
      for (const [i, name] of chosen.entries()) {
        const rows = await OJT.api("GET", `/api/runs/${encodeURIComponent(name)}/metrics`);
        series.push({ name, color: COLORS[i % COLORS.length], points: rows.filter((r) => r.loss !== undefined && r.loss !== null).map((r) => [r.step, r.loss]) });
      }
      OJT.chart(chart, series, { xlabel: "step", empty: "tick runs to overlay their loss curves" });
      legend.replaceChildren(OJT.legend(series));
    };
    const show = async (name) => {
      const d = await OJT.api("GET", `/api/runs/${encodeURIComponent(name)}`);
      detail.replaceChildren(OJT.section(`Run ${name}`,
        h("p", {}, `status ${d.status} · base ${OJT.shortPath(d.base_model)} · ${d.method || ""}`,
          d.job ? h("span", {}, " · ", h("a", { href: `#/train?run=${encodeURIComponent(name)}&job=${d.job}` }, "live view")) : "",
          d.resumable ? h("span", {}, " · ", h("button", { id: "run-resume", class: "plain", onclick: async () => {
            const job = await OJT.api("POST", `/api/runs/${encodeURIComponent(name)}/resume`);
            location.hash = `#/train?run=${encodeURIComponent(name)}&job=${job.id}`;
          } }, `Resume from ${d.checkpoint}`)) : ""),
        Object.entries(d.reports).map(([kind, path]) => h("p", {}, `${kind} report: `, OJT.fileLink(path.replace(/json$/, "html"), "open"))),
        d.compares.length ? h("div", {}, h("h3", { text: "Compare reports" }), h("ul", {}, d.compares.map((j) => h("li", {},
          h("a", { href: `#/compare?job=${j.id}` }, j.title), ` · ${j.status} · ${new Date(j.created * 1000).toLocaleString()}`)))) : "",
        h("details", {}, h("summary", { text: "config.yaml" }), h("pre", { text: d.config }))));
    };
    el.append(OJT.section("Runs", runs.length ? OJT.table(["", "run", "status", "base model", "method", "final/"], runs.map((r, i) => [
      checks[i], h("a", { href: "javascript:void 0", onclick: () => show(r.name) }, r.name), r.resumable ? `${r.status} (resumable)` : r.status, OJT.shortPath(r.base_model), r.method || "–", r.final ? "yes" : "no",
    ]), { id: "runs-table" }) : h("p", { class: "muted", text: "no runs yet: start one on the Train page" }),
    h("h3", { text: "Loss curves" }), chart, legend), detail);
    overlay();
  },
};
