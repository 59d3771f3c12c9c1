// Documents: RAG collections (upload and index with progress, list, delete, try a query).
// Serve: start and stop ojt serve for chosen runs, with curl and OpenAI-client snippets.
"use strict";
OJT.pages.documents = {
  async render(el) {
    const h = OJT.h;
    const [cols, files] = await Promise.all([OJT.api("GET", "/api/collections"), OJT.files("uploads")]);
    const upload = h("input", { type: "file", id: "doc-upload", multiple: true });
    const pick = h("select", { id: "doc-files", multiple: true, size: 5 }, files.map((f) => h("option", { value: f.path }, f.path)));
    const name = h("input", { type: "text", id: "doc-name", value: "docs" });
    const status = h("div", { id: "doc-status" });
    const log = h("pre", { id: "doc-log" });
    const coll = OJT.select("doc-collection", cols.map((c) => c.name), cols[0] && cols[0].name);
    const question = h("input", { type: "text", id: "doc-query", size: 50, placeholder: "a question" });
    const k = h("input", { type: "number", id: "doc-k", value: "5", min: "1", max: "100" });
    const hits = h("div", { id: "doc-hits" });
    el.append(
      OJT.section("Collections", cols.length ? OJT.table(["name", "documents", "chunks", "embedding model", ""], cols.map((c) => [
        c.name, String(c.documents), String(c.chunks), c.embed_model,
        h("button", { class: "plain", onclick: async () => { if (confirm(`delete ${c.name}?`)) { await OJT.api("DELETE", `/api/collections/${encodeURIComponent(c.name)}`); OJT.route(); } } }, "Delete"),
      ]), { id: "doc-collections" }) : h("p", { class: "muted", id: "doc-collections", text: "no collections yet" })),
      OJT.section("Index documents",
        h("div", {}, upload, h("button", { id: "doc-upload-btn", class: "plain", onclick: async () => { await OJT.upload(upload); OJT.route(); } }, "Upload")),
        h("div", {}, h("label", {}, "files ", pick), h("label", {}, "collection ", name),
          h("button", { id: "doc-index", onclick: async () => {
            const job = await OJT.api("POST", `/api/collections/${encodeURIComponent(name.value)}/index`, { paths: [...pick.selectedOptions].map((o) => o.value) });
            OJT.watchJob(job.id, status, log, async (j) => { if (j.status === "done") OJT.route(); });
          } }, "Index")),
        status, log),
      OJT.section("Try a query",
        h("div", {}, h("label", {}, "collection ", coll), question, h("label", {}, " k ", k),
          h("button", { id: "doc-search", onclick: async () => {
            const res = await OJT.api("POST", `/api/collections/${encodeURIComponent(coll.value)}/query`, { question: question.value, k: parseInt(k.value, 10) });
            hits.replaceChildren(res.length ? OJT.table(["#", "score", "source", "text"], res.map((r) => [String(r.rank), OJT.fmt(r.score),
              h("div", {}, `${r.doc}${r.page ? ` p. ${r.page}` : ""}`, r.heading ? h("div", { class: "muted", text: r.heading }) : ""),
              r.text.slice(0, 600)]), { id: "doc-hits-table" }) : "no chunk matches");
          } }, "Search")),
        hits));
  },
};

OJT.pages.serve = {
  async render(el) {
    const h = OJT.h;
    const runs = await OJT.runNames();
    const picks = runs.map((r) => h("label", {}, h("input", { type: "checkbox", class: "srv-run", value: r }), ` ${r}`));
    const port = h("input", { type: "number", id: "srv-port", value: "8000", min: "1024", max: "65535" });
    const list = h("div", { id: "srv-list" });
    const draw = async () => {
      const jobs = (await OJT.api("GET", "/api/jobs?kind=serve")).filter((j) => ["queued", "running"].includes(j.status));
      list.replaceChildren(...jobs.map((j) => {
        const base = `http://127.0.0.1:${j.meta.port}/v1`;
        const model = (j.meta.adapters && j.meta.adapters[0]) || "smollm2-135m-instruct";
        return h("div", { class: "card" }, h("p", {}, `${j.title}: ${j.status} `,
          h("button", { class: "plain", onclick: async () => { await OJT.api("POST", `/api/jobs/${j.id}/stop`); draw(); } }, "Stop")),
          h("pre", { class: "srv-snippet", text:
`curl ${base}/chat/completions -H 'Content-Type: application/json' \\
  -d '{"model": "${model}", "messages": [{"role": "user", "content": "Hello"}]}'

from openai import OpenAI
client = OpenAI(base_url="${base}", api_key="unused")
print(client.chat.completions.create(model="${model}", messages=[{"role": "user", "content": "Hello"}]).choices[0].message.content)` }));
      }));
      if (!jobs.length) list.textContent = "no server running";
    };
    el.append(OJT.section("Serve runs over an OpenAI-compatible API",
      h("div", {}, "runs: ", picks.length ? picks : h("span", { class: "muted", text: "none yet" })), h("label", {}, "port ", port),
      h("button", { id: "srv-start", onclick: async () => {
        const adapters = {};
        document.querySelectorAll("input.srv-run:checked").forEach((c) => { adapters[c.value] = c.value; });
        await OJT.api("POST", "/api/serve", { adapters, port: parseInt(port.value, 10) });
        draw();
      } }, "Start server"), list));
    await draw();
    OJT.every(2000, draw);
  },
};
