// onthejob studio: the page shell. Each page file adds OJT.pages.NAME = {render(el, params)}.
// Plain JavaScript, nothing loaded from the internet.
"use strict";
const OJT = {
  pages: {},
  timers: [],
  token: null,

  start() {
    const m = location.hash.match(/token=([^&]+)/);
    if (m) {
      sessionStorage.setItem("ojt-token", decodeURIComponent(m[1]));
      location.hash = "#/data";
    }
    OJT.token = sessionStorage.getItem("ojt-token");
    if (OJT.token) document.cookie = `ojt_studio_token=${encodeURIComponent(OJT.token)}; path=/; SameSite=Strict`;
    window.addEventListener("hashchange", OJT.route);
    OJT.api("GET", "/api/info").then((info) => {
      OJT.info = info;
      document.getElementById("workspace").textContent = `workspace ${info.workspace} · onthejob ${info.version}`;
    }).catch(OJT.showError).finally(OJT.route);  // pages list the models info names
  },

  route() {
    OJT.timers.forEach(clearInterval);
    OJT.timers = [];
    const [name, query] = (location.hash.replace(/^#\/?/, "") || "data").split("?");
    const params = new URLSearchParams(query || "");
    document.querySelectorAll("#nav a").forEach((a) => a.classList.toggle("active", a.getAttribute("href") === `#/${name}`));
    const el = document.getElementById("page");
    el.innerHTML = "";
    OJT.clearError();
    const page = OJT.pages[name] || OJT.pages.data;
    Promise.resolve(page.render(el, params)).catch(OJT.showError);
  },

  every(ms, fn) {
    const id = setInterval(() => Promise.resolve(fn()).catch(OJT.showError), ms);
    OJT.timers.push(id);
    return id;
  },

  async api(method, path, body, raw) {
    const headers = {};
    if (OJT.token) headers.Authorization = `Bearer ${OJT.token}`;
    const init = { method, headers };
    if (raw !== undefined) init.body = raw;
    else if (body !== undefined) { headers["Content-Type"] = "application/json"; init.body = JSON.stringify(body); }
    const res = await fetch(path, init);
    const data = await res.json().catch(() => ({ error: `HTTP ${res.status}` }));
    if (!res.ok) throw new Error(data.error || (data.detail ? JSON.stringify(data.detail) : `HTTP ${res.status}`));
    return data;
  },

  // A streamed answer: NDJSON lines, each given to onLine.
  async stream(path, body, onLine) {
    const headers = { "Content-Type": "application/json" };
    if (OJT.token) headers.Authorization = `Bearer ${OJT.token}`;
    const res = await fetch(path, { method: "POST", headers, body: JSON.stringify(body) });
    if (!res.ok) {
      const data = await res.json().catch(() => ({}));
      throw new Error(data.error || `HTTP ${res.status}`);
    }
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let nl;
      while ((nl = buffer.indexOf("\n")) >= 0) {
        const line = buffer.slice(0, nl);
        buffer = buffer.slice(nl + 1);
        if (line.trim()) onLine(JSON.parse(line));
      }
    }
  },

  showError(e) {
    const box = document.getElementById("error");
    box.textContent = String(e && e.message ? e.message : e);
    box.hidden = false;
  },
  clearError() { document.getElementById("error").hidden = true; },

  // h("button", {id: "x", onclick: f}, "text", child...)
  h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k.startsWith("on")) el.addEventListener(k.slice(2), (ev) => Promise.resolve(v(ev)).catch(OJT.showError));
      else if (k === "class") el.className = v;
      else if (k === "text") el.textContent = v;
      else if (v === true) el.setAttribute(k, "");
      else el.setAttribute(k, v);
    }
    for (const c of children.flat()) if (c !== null && c !== undefined) el.append(c instanceof Node ? c : String(c));
    return el;
  },

  section(title, ...children) { return OJT.h("section", {}, OJT.h("h2", { text: title }), ...children); },

  select(id, options, selected, attrs) {
    return OJT.h("select", { id, ...(attrs || {}) }, options.map((o) => {
      const [value, label] = Array.isArray(o) ? o : [o, o];
      return OJT.h("option", { value, selected: value === selected }, label);
    }));
  },

  table(columns, rows, attrs) {
    return OJT.h("table", attrs || {}, OJT.h("tr", {}, columns.map((c) => OJT.h("th", { text: c }))),
      rows.map((r) => OJT.h("tr", {}, r.map((c) => OJT.h("td", {}, c)))));
  },

  fileLink(path, label) {
    return OJT.h("a", { href: `/api/file?path=${encodeURIComponent(path)}`, target: "_blank" }, label || path);
  },

  async files(folder) { return OJT.api("GET", `/api/files?folder=${encodeURIComponent(folder || "uploads")}`); },
  async dataFiles() {
    const [up, ds] = await Promise.all([OJT.files("uploads"), OJT.files("datasets")]);
    return up.concat(ds).map((f) => f.path);
  },
  async runNames() { return (await OJT.api("GET", "/api/runs")).map((r) => r.name); },
  async collectionNames() { return (await OJT.api("GET", "/api/collections")).map((c) => c.name); },

  async upload(input) {
    const out = [];
    for (const file of input.files) {
      out.push(await OJT.api("PUT", `/api/files/${encodeURIComponent(file.name)}`, undefined, file));
    }
    return out;
  },

  // A job's status and log, refreshed until it ends; onEnd(job) once it has.
  watchJob(jobId, statusEl, logEl, onEnd) {
    let offset = 0, raw = "";
    const tick = async () => {
      const job = await OJT.api("GET", `/api/jobs/${jobId}`);
      statusEl.textContent = `${job.title}: ${job.status}` + (job.exit_code !== null && job.exit_code !== undefined ? ` (exit ${job.exit_code})` : "");
      statusEl.dataset.status = job.status;
      if (logEl) {
        const log = await OJT.api("GET", `/api/jobs/${jobId}/log?offset=${offset}`);
        offset = log.offset;
        if (log.text) { raw = (raw + log.text).slice(-200000); logEl.textContent = OJT.terminal(raw).slice(-20000); logEl.scrollTop = logEl.scrollHeight; }
      }
      if (["done", "failed", "stopped", "cancelled"].includes(job.status)) {
        clearInterval(id);
        if (onEnd) await onEnd(job);
      }
    };
    const id = OJT.every(1000, tick);
    tick().catch(OJT.showError);
    return id;
  },

  // What a terminal would show: a progress bar's \r rewrites of one line collapse to the last.
  terminal(text) { return text.split("\n").map((line) => line.split("\r").filter((part) => part.trim()).pop() || "").join("\n"); },

  // A number as people read it: integers with separators, others to `digits` places.
  num(v, digits) { return typeof v !== "number" ? OJT.fmt(v) : Number.isInteger(v) ? v.toLocaleString("en") : v.toFixed(digits === undefined ? 2 : digits); },

  // A line chart of several series [{name, color, points: [[x, y], ...]}] on a canvas.
  chart(canvas, series, opts) {
    const ctx = canvas.getContext("2d");
    const W = canvas.width, H = canvas.height, pad = { l: 62, r: 12, t: 12, b: 26 };
    ctx.clearRect(0, 0, W, H);
    const pts = series.flatMap((s) => s.points).filter((p) => p[1] !== null && isFinite(p[1]));
    ctx.fillStyle = "#667085";
    ctx.font = "11px system-ui";
    if (!pts.length) { ctx.fillText((opts && opts.empty) || "no points yet", pad.l, H / 2); return; }
    let [x0, x1] = [Math.min(...pts.map((p) => p[0])), Math.max(...pts.map((p) => p[0]))];
    let [y0, y1] = [Math.min(...pts.map((p) => p[1])), Math.max(...pts.map((p) => p[1]))];
    if (x1 === x0) x1 = x0 + 1;
    if (y1 === y0) { y1 += Math.abs(y1) * 0.1 || 1; y0 -= Math.abs(y0) * 0.1 || 1; }
    const X = (x) => pad.l + ((x - x0) / (x1 - x0)) * (W - pad.l - pad.r);
    const Y = (y) => H - pad.b - ((y - y0) / (y1 - y0)) * (H - pad.t - pad.b);
    ctx.strokeStyle = "#d0d5dd";
    ctx.beginPath(); ctx.moveTo(pad.l, pad.t); ctx.lineTo(pad.l, H - pad.b); ctx.lineTo(W - pad.r, H - pad.b); ctx.stroke();
    for (let i = 0; i <= 4; i++) {
      const y = y0 + ((y1 - y0) * i) / 4;
      ctx.fillText(y.toPrecision(3), 4, Y(y) + 4);
    }
    ctx.fillText(String(Math.round(x0)), pad.l, H - 8);
    ctx.fillText(String(Math.round(x1)), W - pad.r - 24, H - 8);
    if (opts && opts.xlabel) ctx.fillText(opts.xlabel, W / 2 - 12, H - 8);
    for (const s of series) {
      const p = s.points.filter((q) => q[1] !== null && isFinite(q[1]));
      ctx.strokeStyle = s.color; ctx.fillStyle = s.color; ctx.lineWidth = 1.6;
      ctx.beginPath();
      p.forEach((q, i) => (i ? ctx.lineTo(X(q[0]), Y(q[1])) : ctx.moveTo(X(q[0]), Y(q[1]))));
      ctx.stroke();
      if (p.length < 40) p.forEach((q) => { ctx.beginPath(); ctx.arc(X(q[0]), Y(q[1]), 2.2, 0, 7); ctx.fill(); });
    }
  },

  legend(series) {
    return OJT.h("div", { class: "legend" }, series.map((s) => OJT.h("span", { style: `color:${s.color}` }, `■ ${s.name}`)));
  },

  // A model path as the workspace names it (models/tiny), not the server's absolute path.
  shortPath(p) {
    if (!p) return "–";
    const ws = OJT.info && OJT.info.workspace;
    return ws && p.startsWith(ws + "/") ? p.slice(ws.length + 1) : p;
  },

  fmt(v, digits) { return v === null || v === undefined ? "–" : typeof v === "number" ? v.toFixed(digits === undefined ? 3 : digits) : String(v); },
};
const COLORS = ["#2f5bd3", "#d9480f", "#117a45", "#9c36b5", "#c92a2a", "#087f8c", "#5c940d", "#862e9c"];

// Jobs: everything the studio started, with status, log and Stop.
OJT.pages.jobs = {
  async render(el) {
    const h = OJT.h;
    const body = h("div");
    el.append(OJT.section("Jobs", body));
    const draw = async () => {
      const jobs = await OJT.api("GET", "/api/jobs");
      body.replaceChildren(OJT.table(["job", "kind", "status", "started", ""], jobs.map((j) => [
        j.title, j.kind, j.status, j.started ? new Date(j.started * 1000).toLocaleString() : "–",
        ["queued", "running"].includes(j.status) ? h("button", { class: "plain", onclick: async () => { await OJT.api("POST", `/api/jobs/${j.id}/stop`); draw(); } }, "Stop") : "",
      ]), { id: "jobs-table" }));
    };
    await draw();
    OJT.every(2000, draw);
  },
};
