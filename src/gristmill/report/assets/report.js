"use strict";
const D = JSON.parse(document.getElementById("gm-data").textContent);
const $ = (id) => document.getElementById(id);
function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v; else e.setAttribute(k, v);
  }
  for (const k of kids) e.append(k instanceof Node ? k : String(k));
  return e;
}
const fmtInt = (n) => Number(n).toLocaleString("en-US");
function fmtBytes(b) {
  if (b === null || b === undefined || b < 0) return "—";
  const units = [["T", 2 ** 40], ["G", 2 ** 30], ["M", 2 ** 20], ["K", 2 ** 10]];
  for (const [u, s] of units) if (b >= s) { const v = b / s; return (v < 10 ? v.toFixed(1) : v.toFixed(0)) + u; }
  return b.toFixed(0) + "B";
}
function fmtSec(s) {
  if (s === null || s === undefined || s < 0) return "—";
  if (s < 10) return s.toFixed(2) + "s";
  if (s < 60) return s.toFixed(0) + "s";
  const sec = Math.round(s) % 60, m = Math.floor(Math.round(s) / 60);
  if (m < 60) return m + "m" + String(sec).padStart(2, "0") + "s";
  const h = Math.floor(m / 60);
  return h + "h" + String(m % 60).padStart(2, "0") + "m";
}
const pct = (v) => (v === null || v === undefined) ? "" : " (" + v.toFixed(0) + "%)";
const flag = (f) => f ? el("span", {class: f}, " " + f) : "";

// -- run
const failed = (D.counts.FAILED || 0) + (D.counts.UPSTREAM_FAILED || 0);
const status = $("run-status");
status.textContent = failed ? "not complete" : "succeeded";
status.classList.add(failed ? "bad" : "ok");
for (const [state, n] of Object.entries(D.counts)) {
  $("counts").append(el("span", {class: "count", "data-state": state}, el("b", {}, fmtInt(n)), " " + state));
}
$("counts").append(el("span", {class: "count"}, el("b", {}, fmtInt(D.attempts)), " attempts"));
for (const [k, v] of D.provenance) $("provenance").append(el("tr", {}, el("td", {}, k), el("td", {}, v)));

// -- tasks
(function taskTable() {
  const t = $("task-table");
  const head = el("tr", {}, el("th", {}, "task"));
  for (const s of D.states) head.append(el("th", {class: "num"}, s));
  head.append(el("th", {class: "num"}, "attempts"));
  for (const c of D.causes) head.append(el("th", {class: "num"}, "retry " + c));
  for (const h of ["wall min / median / max", "peak median / max / asked", "cores",
                   "longest / limit", "suggested"]) head.append(el("th", {class: "num"}, h));
  t.append(el("thead", {}, head));
  const body = el("tbody");
  for (const r of D.tasks) {
    const tr = el("tr", {"data-task": r.task}, el("td", {}, el("b", {}, r.task)));
    for (const s of D.states) tr.append(el("td", {class: "num"}, r.nodes[s] ? fmtInt(r.nodes[s]) : ""));
    tr.append(el("td", {class: "num"}, fmtInt(r.attempts)));
    for (const c of D.causes) tr.append(el("td", {class: "num"}, r.retries[c] ? fmtInt(r.retries[c]) : ""));
    tr.append(el("td", {class: "num"}, r.wall ? r.wall.map(fmtSec).join(" / ") : "—"));
    tr.append(el("td", {class: "num"}, (r.peak ? fmtBytes(r.peak[0]) + " / " + fmtBytes(r.peak[1]) : "—")
      + " / " + fmtBytes(r.mem) + pct(r.mem_pct), flag(r.mem_flag)));
    tr.append(el("td", {class: "num"}, r.cores || "—"));
    tr.append(el("td", {class: "num"}, (r.wall ? fmtSec(r.wall[2]) : "—") + " / " + fmtSec(r.runtime)
      + pct(r.runtime_pct), flag(r.runtime_flag)));
    tr.append(el("td", {class: "num"}, Object.entries(r.suggest).map(([k, v]) => k + " " + v).join(", ") || "—"));
    body.append(tr);
  }
  t.append(body);
})();

// -- figures
const config = {displaylogo: false, responsive: true};
for (const [id, fig] of [["mem-plot", D.figures.mem], ["runtime-plot", D.figures.runtime],
                          ["timeline-plot", D.figures.timeline]]) {
  if (fig.data.length) Plotly.newPlot(id, fig.data, fig.layout, config);
  else $(id).append(el("p", {class: "note"}, "nothing measured yet"));
}
$("timeline-note").textContent = D.timeline.sampled
  ? "Sampled: " + fmtInt(D.timeline.shown) + " of " + fmtInt(D.timeline.total) +
    " attempts (every attempt of a random sample of nodes). Every other figure on this page counts all attempts."
  : "All " + fmtInt(D.timeline.total) + " attempts, one lane per node: pale while queued, solid while running, red when the attempt did not succeed.";

// -- failures
(function failures() {
  const box = $("failure-list");
  if (!D.failures.length) { box.append(el("p", {}, "No attempt failed.")); return; }
  box.append(el("p", {class: "note"}, fmtInt(D.failed_attempts) + " attempts did not succeed, in " +
    fmtInt(D.failures.length) + " cluster(s) by cause, reason and last stderr line" +
    (D.unread ? " (the stderr of " + fmtInt(D.unread) + " of them was not read: clustered by cause and reason)" : "") + "."));
  for (const f of D.failures) {
    const div = el("div", {class: "failure"});
    div.append(el("div", {}, el("b", {class: "cause"}, f.cause), " — ", el("span", {class: "reason"}, f.sample_reason),
      el("span", {class: "note"}, "  " + fmtInt(f.attempts) + " attempt(s), " + fmtInt(f.final) + " node(s) failed for good; tasks: " +
        Object.entries(f.tasks).map(([t, n]) => t + " " + fmtInt(n)).join(", "))));
    if (f.line) div.append(el("div", {class: "note"}, "last stderr line: " + f.line));
    div.append(el("div", {}, "sample: ", el("code", {}, f.job), f.node !== null ? " (node " + f.node + ")" : ""));
    if (f.stderr.length) div.append(el("pre", {}, f.stderr.join("\n")));
    else div.append(el("div", {class: "note"}, "stderr: " + f.stderr_path + " (not readable here)"));
    div.append(el("div", {}, "rerun by hand:"), el("pre", {class: "rerun"}, f.rerun));
    box.append(div);
  }
})();

// -- attempts table
const T = D.table;
const cols = {};
let names = [];
const PAGE = 100;
let view = null, page = 0, sortKey = "submit", sortDir = 1;
const headers = [["node", "node"], ["job", "job name"], ["task", "task"], ["attempt", "try"],
  ["state", "state"], ["cause", "cause"], ["retry", "retry of"], ["exit", "exit"],
  ["host", "host"], ["submit", "submitted"], ["wait", "queued"], ["elapsed", "ran"],
  ["peak", "peak mem"], ["mem", "asked mem"], ["runtime", "limit"], ["reason", "reason"]];
async function unpack() {
  const text = $("gm-table").textContent.trim();
  const bin = atob(text);
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
  const raw = new Uint8Array(await new Response(stream).arrayBuffer());
  const n = T.rows;
  let offset = 0;
  for (const c of T.columns) {
    const col = new Int32Array(raw.buffer.slice(offset, offset + 4 * n));
    if (T.delta.includes(c)) for (let i = 1; i < n; i++) col[i] += col[i - 1];
    cols[c] = col; offset += 4 * n;
  }
  names = n ? new TextDecoder().decode(raw.subarray(offset)).split("\n") : [];
}
function cell(c, i) {
  const v = cols[c] ? cols[c][i] : null;
  switch (c) {
    case "job": return names[i];
    case "node": return v < 0 ? "—" : String(v);
    case "task": return T.tasks[v];
    case "state": return T.states[v];
    case "cause": case "retry": return T.causes[v];
    case "host": return T.hosts[v];
    case "reason": return T.reasons[v];
    case "exit": return v < 0 ? "" : String(v);
    case "submit": return new Date((T.origin + v / 100) * 1000).toISOString().replace("T", " ").slice(0, 19);
    case "wait": case "elapsed": return fmtSec(v < 0 ? null : v / 100);
    case "peak": return v < 0 ? "—" : fmtBytes(v / 10 * 2 ** 20);
    case "mem": return v < 0 ? "—" : fmtBytes(v * 2 ** 20);
    case "runtime": return v < 0 ? "—" : fmtSec(v);
    default: return String(v);
  }
}
function applyFilter() {
  const text = $("f-text").value.trim().toLowerCase();
  const task = $("f-task").value, state = $("f-state").value;
  const taskI = task === "" ? -1 : T.tasks.indexOf(task), stateI = state === "" ? -1 : T.states.indexOf(state);
  const hostHit = T.hosts.map((h) => text !== "" && h.toLowerCase().includes(text));
  const reasonHit = T.reasons.map((r) => text !== "" && r.toLowerCase().includes(text));
  const out = new Int32Array(T.rows); let k = 0;
  for (let i = 0; i < T.rows; i++) {
    if (taskI >= 0 && cols.task[i] !== taskI) continue;
    if (stateI >= 0 && cols.state[i] !== stateI) continue;
    if (text !== "" && !names[i].toLowerCase().includes(text) && !hostHit[cols.host[i]] && !reasonHit[cols.reason[i]]) continue;
    out[k++] = i;
  }
  view = out.slice(0, k);
  sortView(); page = 0; render();
}
function sortView() {
  if (sortKey === "job") {
    view.sort((a, b) => sortDir * (names[a] < names[b] ? -1 : names[a] > names[b] ? 1 : a - b));
    return;
  }
  const textual = {task: T.tasks, state: T.states, cause: T.causes, retry: T.causes, host: T.hosts, reason: T.reasons}[sortKey];
  const col = cols[sortKey];
  if (textual) view.sort((a, b) => sortDir * ((textual[col[a]] < textual[col[b]]) ? -1 : (textual[col[a]] > textual[col[b]]) ? 1 : a - b));
  else view.sort((a, b) => sortDir * (col[a] - col[b] || a - b));
}
function render() {
  const t = $("attempts-table"); t.textContent = "";
  const head = el("tr");
  for (const [key, label] of headers) {
    const th = el("th", {"data-key": key}, label + (key === sortKey ? (sortDir > 0 ? " ▲" : " ▼") : ""));
    th.addEventListener("click", () => { sortDir = key === sortKey ? -sortDir : 1; sortKey = key; sortView(); page = 0; render(); });
    head.append(th);
  }
  t.append(el("thead", {}, head));
  const body = el("tbody");
  const pages = Math.max(1, Math.ceil(view.length / PAGE));
  page = Math.min(page, pages - 1);
  for (let r = page * PAGE; r < Math.min(view.length, (page + 1) * PAGE); r++) {
    const i = view[r];
    const tr = el("tr", {class: "attempt-row"});
    for (const [key] of headers) tr.append(el("td", {class: ["node", "attempt", "exit", "wait", "elapsed", "peak", "mem", "runtime"].includes(key) ? "num" : ""}, cell(key, i)));
    body.append(tr);
  }
  t.append(body);
  $("p-info").textContent = "page " + fmtInt(page + 1) + " of " + fmtInt(pages) + " · " + fmtInt(view.length) + " of " + fmtInt(T.rows) + " attempts";
}
for (const t of T.tasks) $("f-task").append(el("option", {value: t}, t));
for (const s of T.states) $("f-state").append(el("option", {value: s}, s));
$("p-prev").addEventListener("click", () => { if (page > 0) { page--; render(); } });
$("p-next").addEventListener("click", () => { if ((page + 1) * PAGE < view.length) { page++; render(); } });
let typing = null;
for (const id of ["f-text", "f-task", "f-state"]) $(id).addEventListener("input", () => { clearTimeout(typing); typing = setTimeout(applyFilter, 200); });
$("table-note").textContent = "Every attempt is here, " + PAGE + " to a page; click a heading to sort. The same rows with every field: gristmill trace RUN_DIR.";
$("generated").textContent = "Generated " + D.generated + " by gristmill.";
if (typeof DecompressionStream === "undefined") {
  $("table-note").textContent = "This browser cannot unpack the attempt table (no DecompressionStream); use gristmill trace RUN_DIR instead.";
} else {
  unpack().then(() => { applyFilter(); document.body.dataset.tableReady = "yes"; })
    .catch((e) => { $("table-note").textContent = "cannot unpack the attempt table: " + e; console.error(e); });
}
