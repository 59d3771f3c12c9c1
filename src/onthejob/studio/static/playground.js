// Playground: the same conversation sent to the base model and a run side by side, streamed,
// with a RAG toggle that shows the cited passages, the system prompt and sampling settings.
"use strict";
OJT.pages.playground = {
  async render(el) {
    const h = OJT.h;
    const [runs, collections] = await Promise.all([OJT.runNames(), OJT.collectionNames()]);
    const run = OJT.select("pg-run", [["", "none (base model only)"], ...runs], runs[runs.length - 1] || "");
    const rag = OJT.select("pg-rag", [["", "off"], ...collections], "");
    const system = h("input", { type: "text", id: "pg-system", size: 100, placeholder: "system prompt (empty: the one the run was trained with)" });
    const temp = h("input", { type: "number", id: "pg-temperature", value: "0", step: "0.1", min: "0", max: "2" });
    const topP = h("input", { type: "number", id: "pg-top-p", value: "1", step: "0.05", min: "0.05", max: "1" });
    const maxTok = h("input", { type: "number", id: "pg-max-tokens", value: "200", min: "1", max: "4096" });
    const input = h("textarea", { id: "pg-input", placeholder: "ask something" });
    const sides = { base: { el: h("div", { id: "pg-base" }), history: [] }, tuned: { el: h("div", { id: "pg-tuned" }), history: [] } };
    const ask = async (side, text) => {
      const s = sides[side];
      s.history.push({ role: "user", content: text });
      s.el.append(h("div", { class: "turn user", text }));
      const answer = h("div", { class: "turn assistant pg-answer" });
      const sources = h("div", { class: "sources" });
      s.el.append(answer, sources);
      let full = "";
      await OJT.stream("/api/chat", { side, run: run.value || null, messages: s.history, system: system.value || null, rag: rag.value || null,
        temperature: parseFloat(temp.value), top_p: parseFloat(topP.value), max_new_tokens: parseInt(maxTok.value, 10) }, (msg) => {
        if (msg.delta) { full += msg.delta; answer.textContent = full; }
        if (msg.error) throw new Error(msg.error);
        if (msg.done) {
          answer.dataset.id = msg.id;
          answer.classList.add("done");
          if (!full.trim()) { answer.textContent = "(empty answer)"; answer.classList.add("empty"); }
          if (msg.sources && msg.sources.length) sources.replaceChildren(h("details", {}, h("summary", { text: `${msg.sources.length} passage(s) given to the model` }),
            ...msg.sources.map((src) => h("div", { class: "pg-source" }, h("strong", { text: `[${src.n || ""}] ${src.doc || ""}${src.page ? ` p. ${src.page}` : ""}` }),
              src.heading ? ` · ${src.heading}` : "", h("div", { text: (src.text || "").slice(0, 400) })))));
        }
      });
      s.history.push({ role: "assistant", content: full });
    };
    const send = async () => {
      const text = input.value.trim();
      if (!text) return;
      input.value = "";
      await Promise.all([ask("base", text), run.value ? ask("tuned", text) : Promise.resolve()]);
    };
    el.append(OJT.section("Playground",
      h("div", {}, h("label", {}, "run ", run), h("label", {}, "RAG ", rag), h("label", {}, "temperature ", temp), h("label", {}, "top-p ", topP),
        h("label", {}, "longest answer ", maxTok)),
      h("div", {}, system),
      h("div", { class: "cols" }, h("div", {}, h("h3", { text: "base model" }), sides.base.el), h("div", {}, h("h3", { text: "tuned (the run)" }), sides.tuned.el)),
      input, h("button", { id: "pg-send", onclick: send }, "Send"),
      h("button", { class: "plain", onclick: () => { Object.values(sides).forEach((s) => { s.history = []; s.el.replaceChildren(); }); } }, "New conversation"),
      h("a", { href: "#/review?source=playground" }, "review playground answers")));
  },
};
