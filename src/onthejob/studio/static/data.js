// Data: upload, check (every problem linked to its line), statistics, mask preview, convert,
// split, and synthesize from documents.
"use strict";
OJT.pages.data = {
  async render(el) {
    const h = OJT.h;
    const files = await OJT.dataFiles();
    const fileSel = OJT.select("data-file", files, files[0]);
    const upload = h("input", { type: "file", id: "upload-file", multiple: true });
    const format = OJT.select("data-format", [["", "detect"], "chat", "alpaca", "sharegpt", "prompt_completion", "preference", "csv"], "");
    const mapping = h("input", { type: "text", id: "data-map", placeholder: "question=user, answer=assistant", size: 34 });
    const system = h("input", { type: "text", id: "data-system", placeholder: "CSV only: a system prompt", size: 34 });
    const model = OJT.select("data-model", (OJT.info && OJT.info.models) || ["smollm2-135m-instruct"], undefined);
    const result = h("div", { id: "check-result" });
    const preview = h("div", { id: "preview" });
    const opts = () => {
      const map = {};
      mapping.value.split(",").map((s) => s.trim()).filter(Boolean).forEach((pair) => {
        const [col, role] = pair.split("=").map((s) => s.trim());
        map[col] = role;
      });
      return { path: fileSel.value, format: format.value || null, map: Object.keys(map).length ? map : null, system: system.value || null };
    };
    const showPreview = async (line) => {
      const res = await OJT.api("POST", "/api/data/preview", { ...opts(), model: model.value, n: 3, line: line || null });
      preview.replaceChildren(h("h3", { text: `Mask preview (${res.total} examples)` }),
        h("p", { class: "muted" }, "green = trained on, grey = context only, blue = special tokens"),
        ...res.examples.map((ex) => h("div", {},
          h("div", { class: "muted" }, `${ex.where}: ${ex.tokens} tokens, ${ex.supervised} supervised`),
          h("div", { class: "mask" }, ex.runs.map((r) => h("span", { class: `${r.supervised ? "sup" : "ctx"}${r.special ? " special" : ""}` }, r.text))))));
    };
    const check = async () => {
      result.textContent = "checking…";
      const rep = await OJT.api("POST", "/api/data/check", { ...opts(), model: model.value });
      const stats = rep.stats || {};
      const label = (k) => k.replace(/_/g, " ");
      const plain = Object.entries(stats).filter(([k, v]) => typeof v !== "object" && !["seconds_per_epoch", "tokens_per_second"].includes(k));
      const spread = Object.entries(stats).filter(([, v]) => v && typeof v === "object");
      const epoch = stats.seconds_per_epoch;
      const table = OJT.h("table", { id: "check-stats" }, OJT.h("tr", {}, ["", "min", "median", "p90", "max"].map((c) => OJT.h("th", { text: c, class: c ? "num" : null }))),
        spread.map(([k, v]) => OJT.h("tr", {}, OJT.h("td", { text: label(k) }), ["min", "median", "p90", "max"].map((q) => OJT.h("td", { class: "num", text: OJT.num(v[q], 1) })))));
      const rows = plain.length;
      result.replaceChildren(
        h("p", {}, h("span", { class: rep.ok ? "ok" : "bad", id: "check-verdict" }, rep.ok ? "passes" : "has errors"),
          ` — ${rep.format || "?"} format, ${rep.errors} error(s), ${rep.warnings} warning(s)`),
        rep.problems.length ? OJT.table(["where", "severity", "problem", "fix"], rep.problems.map((p) => [
          h("a", { href: "javascript:void 0", class: "problem-link", onclick: () => showPreview(p.line) }, p.line ? `${p.source}:${p.line}` : p.source),
          p.severity, `${p.code}: ${p.message}`, p.fix])) : "",
        rows ? h("details", { open: true }, h("summary", { text: "Statistics" }),
          h("p", {}, plain.map(([k, v]) => `${label(k)}: ${OJT.num(v)}`).join(" · "),
            epoch !== undefined ? ` · about ${epoch < 90 ? `${Math.round(epoch)} s` : `${Math.round(epoch / 60)} min`} per epoch (at ${OJT.num(stats.tokens_per_second)} tokens/s)` : ""),
          table) : "");
    };
    const action = h("div", { id: "data-action" });
    const frac = h("input", { type: "number", id: "split-fraction", value: "0.1", step: "0.05", min: "0.01", max: "0.9" });
    el.append(
      OJT.section("Upload", upload, h("button", { id: "upload-btn", onclick: async () => {
        const done = await OJT.upload(upload);
        action.textContent = `uploaded ${done.map((d) => d.path).join(", ")}`;
        OJT.route();
      } }, "Upload"), h("span", { class: "muted" }, ` up to ${(OJT.info && OJT.info.max_upload_mb) || "?"} MB; JSONL, JSON, CSV/TSV, documents`)),
      OJT.section("Check and preview",
        h("div", {}, h("label", {}, "file ", fileSel), h("label", {}, "format ", format), h("label", {}, "model ", model)),
        h("div", {}, h("label", {}, "CSV columns ", mapping), h("label", {}, "system ", system)),
        h("div", {}, h("button", { id: "check-btn", onclick: check }, "Check"),
          h("button", { id: "preview-btn", class: "plain", onclick: () => showPreview() }, "Preview masks"),
          h("button", { id: "convert-btn", class: "plain", onclick: async () => {
            const r = await OJT.api("POST", "/api/data/convert", opts());
            action.textContent = `wrote ${r.examples} examples to ${r.path}`;
          } }, "Convert to chat JSONL"),
          h("button", { id: "split-btn", class: "plain", onclick: async () => {
            const r = await OJT.api("POST", "/api/data/split", { ...opts(), eval_fraction: parseFloat(frac.value) });
            action.textContent = `${r.train.examples} training examples -> ${r.train.path}; ${r.eval.examples} eval -> ${r.eval.path}`;
          } }, "Split"), h("label", {}, "eval fraction ", frac)),
        action, result, preview),
      await OJT.pages.data.synthSection());
  },

  async synthSection() {
    const h = OJT.h;
    const docs = (await OJT.files("uploads")).map((f) => f.path).filter((p) => /\.(pdf|docx|txt|md|html?)$/i.test(p));
    const pick = h("select", { id: "synth-docs", multiple: true, size: 4 }, docs.map((d) => h("option", { value: d }, d)));
    const name = h("input", { type: "text", id: "synth-name", value: "synth" });
    const style = h("input", { type: "text", id: "synth-style", placeholder: "formal, brief" });
    const teacher = OJT.select("synth-teacher", [["", "the default model"], ...((OJT.info && OJT.info.models) || [])], "");
    const url = h("input", { type: "text", id: "synth-url", size: 30, placeholder: "or an endpoint: http://localhost:11434/v1" });
    const model = h("input", { type: "text", id: "synth-model", size: 16, placeholder: "its model name" });
    const keyEnv = h("input", { type: "text", id: "synth-key-env", size: 16, placeholder: "key variable, e.g. OPENAI_API_KEY" });
    const status = h("div", { id: "synth-status" });
    const log = h("pre", { id: "synth-log" });
    return OJT.section("Synthesize from documents",
      h("p", { class: "muted" }, "ojt data synth: a teacher model writes question → answer pairs grounded in each section; the eval side never shares a section with training."),
      h("div", {}, h("label", {}, "documents ", docs.length ? pick : h("span", { class: "empty", text: "upload a PDF, DOCX, HTML, Markdown or text file first" })), h("label", {}, "name ", name), h("label", {}, "style ", style)),
      h("div", {}, h("label", {}, "teacher ", teacher), url, " ", model, " ", keyEnv, " ",
        h("button", { id: "synth-btn", onclick: async () => {
          const chosen = [...pick.selectedOptions].map((o) => o.value);
          const remote = url.value.trim();
          const job = await OJT.api("POST", "/api/data/synth", { documents: chosen, name: name.value, style: style.value || null,
            teacher: (remote ? model.value : teacher.value) || null, teacher_url: remote || null, teacher_key_env: keyEnv.value || null });
          OJT.watchJob(job.id, status, log);
        } }, "Synthesize")),
      status, log);
  },
};
