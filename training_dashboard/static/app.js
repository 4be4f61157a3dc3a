/* Training dashboard page: plain JavaScript, no build step, no network beyond this server.
 *
 * Data: /api/state (exported dashboard state), /api/layout (node positions), /api/status
 * (live status + run process + log tail), /api/runs (history), /api/live (the live
 * scorer's streams). /api/events (server-sent events) pushes status and live-stream
 * changes and tells the page when the state or history changed, so it re-fetches them
 * without reloading. All text from the server is inserted with
 * textContent (never innerHTML), so file names and messages cannot inject markup.
 */
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";
const STREAMS = ["patchtst", "swinmae"];
const STREAM_LABEL = { patchtst: "PatchTST", swinmae: "Swin-MAE", shared: "shared" };
const NODE_H = 66;
const TOP_CONTRIBUTORS = 12;
const LEVEL_COLOR = { normal: "var(--done)", warn: "var(--warn)", anomaly: "var(--fail)" };
const LEVEL_RANK = { normal: 0, warn: 1, anomaly: 2 };
const LIVE_TOP_PARTS = 3; // contributors shown per live event: enough to say why
const LIVE_RECENT_EVENTS = 12;

const App = {
  token: null,
  state: null, // dashboard state, or null when the server has none
  emptyHint: "",
  layout: null,
  status: null,
  runs: [],
  wasRunning: false,
  snapshots: {}, // run id -> state snapshot (history comparison)
  compare: { a: null, b: null },
  test: { stream: "patchtst", file: null, window: null, event: null },
  live: null, // /api/live payload: the live scorer's streams
  liveCards: {}, // stream -> its card's parts, kept so charts and scroll positions persist
  graph: { pos: {}, view: { k: 1, tx: 0, ty: 0 }, hidden: new Set(), selected: null, key: "", nodeW: 150 },
};
window.__dashboardLoadId = Math.random().toString(36).slice(2);

/* ------------------------------------------------------------------ helpers */
const $ = (sel) => document.querySelector(sel);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (v !== null && v !== undefined && v !== false) node.setAttribute(k, v);
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c);
  return node;
}

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== null && v !== undefined) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); return node; }

function fmtNum(v, digits = 4) {
  if (v === null || v === undefined || Number.isNaN(v)) return "—";
  if (typeof v === "boolean") return v ? "on" : "off";
  if (typeof v !== "number") return String(v);
  if (v === 0) return "0";
  const a = Math.abs(v);
  if (a >= 1e5 || a < 1e-3) return v.toExponential(2);
  return String(Number(v.toPrecision(digits)));
}

function fmtBytes(n) {
  if (n === null || n === undefined) return "—";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  let v = n;
  while (v >= 1000 && i < units.length - 1) { v /= 1000; i += 1; }
  return i === 0 ? `${v} B` : `${v.toFixed(v < 10 ? 1 : 0)} ${units[i]}`;
}

function fmtTime(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  return d.toLocaleString(undefined, { year: "numeric", month: "short", day: "2-digit",
    hour: "2-digit", minute: "2-digit" });
}

/* Window times carry no zone (the sensor clock): read and shown as UTC, so the page shows
 * the same wall-clock times as the data files on any machine. */
function parseTime(value) {
  if (typeof value !== "string") return NaN;
  return Date.parse(/(z|[+-]\d\d:?\d\d)$/i.test(value) ? value : `${value}Z`);
}

/* Time of day, as precise as the value needs (minutes, seconds or milliseconds). */
function clock(ms) {
  const iso = new Date(ms).toISOString();
  if (iso.slice(20, 23) !== "000") return iso.slice(11, 23);
  return iso.slice(17, 19) === "00" ? iso.slice(11, 16) : iso.slice(11, 19);
}

/* A window or event position: a time of day for ISO times, else the row/sample number. */
function fmtPos(value) {
  const ms = parseTime(value);
  return Number.isNaN(ms) ? String(value) : clock(ms);
}

function fmtSeconds(s) {
  if (s < 90) return `${Math.round(s)} s`;
  if (s < 5400) return `${Math.round(s / 60)} min`;
  if (s < 172800) {
    const min = Math.round((s % 3600) / 60);
    return `${Math.floor(s / 3600)} h${min ? ` ${min} min` : ""}`;
  }
  return `${(s / 86400).toFixed(1)} d`;
}

/* Files without timestamps have no duration in seconds: their events count windows. */
function fmtEventLength(e) {
  return Number.isFinite(e.duration_s) ? fmtSeconds(e.duration_s) : `${e.n_windows} windows`;
}

function relTime(iso) {
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return "";
  const s = Math.round((Date.now() - t) / 1000);
  if (s < 60) return "just now";
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}

function niceTicks(lo, hi, count) {
  if (!(hi > lo)) { const d = Math.abs(lo) * 0.1 || 1; lo -= d; hi += d; }
  const raw = (hi - lo) / Math.max(1, count);
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) || 10 * mag;
  const ticks = [];
  for (let v = Math.ceil(lo / step - 1e-9) * step; v <= hi + step * 1e-9; v += step) ticks.push(Number(v.toPrecision(12)));
  return { ticks, step };
}

function tickLabel(v, step) {
  if (Math.abs(v) >= 1e5) return v.toExponential(1);
  let d = 0;
  while (d < 6 && Math.abs(Math.round(step * 10 ** d) - step * 10 ** d) > 1e-6) d += 1;
  return v.toFixed(d);
}

const TIME_STEPS_S = [0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200,
  10800, 21600, 43200, 86400];

/* Ticks on a time axis (ms): whole clock steps (0.1 s … 1 day), all labelled alike: as
 * dates once a step is a day, else times of day down to the step's precision. */
function timeTicks(lo, hi, count) {
  const raw = (hi - lo) / Math.max(1, count) / 1000;
  const stepS = TIME_STEPS_S.find((s) => s >= raw) || Math.ceil(raw / 86400) * 86400;
  const step = stepS * 1000;
  const [from, to] = stepS >= 86400 ? [5, 10] : stepS >= 60 ? [11, 16] : stepS >= 1 ? [11, 19] : [11, 21];
  const label = (v) => new Date(v).toISOString().slice(from, to);
  const ticks = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi; v += step) ticks.push({ v, label: label(v) });
  return ticks;
}

function numberTicks(lo, hi, count, integer) {
  const { ticks, step } = niceTicks(lo, hi, count);
  return ticks.filter((v) => !integer || Number.isInteger(v)).map((v) => ({ v, label: tickLabel(v, Math.max(step, integer ? 1 : 0)) }));
}

/* ------------------------------------------------------------------ API */
function readToken() {
  const fromUrl = (s) => new URLSearchParams(s.replace(/^[#?]/, "")).get("token");
  const token = fromUrl(location.hash) || fromUrl(location.search) || sessionStorage.getItem("dashboardToken");
  if (token) sessionStorage.setItem("dashboardToken", token);
  return token;
}

async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  if (App.token) headers.Authorization = `Bearer ${App.token}`;
  const res = await fetch(path, Object.assign({}, options, { headers }));
  let body = null;
  try { body = await res.json(); } catch (_) { body = null; }
  if (!res.ok) {
    const detail = body && body.detail ? (typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail)) : res.statusText;
    const err = new Error(detail);
    err.status = res.status;
    throw err;
  }
  return body;
}

/* The server announces state changes by file signature; re-render only when the content
 * really changed, so open panels (a chosen window, a selected node) are not redrawn. */
async function loadState() {
  const data = await api("/api/state");
  const text = JSON.stringify(data);
  if (text === App.stateText) return;
  App.stateText = text;
  if (data && data.empty) { App.state = null; App.emptyHint = data.hint || ""; } else { App.state = data; }
  renderState();
}

async function loadLayout() {
  try { App.layout = await api("/api/layout"); } catch (_) { App.layout = null; }
}

async function loadStatus() { applyStatus(await api("/api/status")); }

async function loadRuns() {
  const index = await api("/api/runs");
  const text = JSON.stringify(index);
  if (text === App.runsText) return;
  App.runsText = text;
  App.snapshots = {}; // a re-export may have rewritten a snapshot
  App.runs = (index && index.runs) || [];
  const ids = App.runs.map((r) => r.run_id);
  if (!ids.includes(App.compare.a)) App.compare.a = ids[0] || null;
  if (!ids.includes(App.compare.b) || App.compare.b === App.compare.a) App.compare.b = ids.find((i) => i !== App.compare.a) || null;
  renderRuns();
  renderComparison();
}

/* ------------------------------------------------------------------ header */
function renderHeader() {
  const s = App.state;
  $("#run-id").textContent = s ? s.meta.run_id : "—";
  $("#generated-at").textContent = s ? `exported ${fmtTime(s.meta.generated_at)} · ${relTime(s.meta.generated_at)}` : "no state exported yet";
  const v = $("#verdict");
  const c = s && s.checklist;
  if (!c) {
    v.className = "verdict unknown";
    v.textContent = s ? "no checklist yet" : "no run yet";
    v.title = "Post-training validation checklist and decision gate";
    return;
  }
  const gate = s.test_run && s.test_run.decision_gate;
  const problem = decisionProblem(s.test_run);
  v.title = `Validation checklist: ${c.passed}/${c.total} passed. Decision gate: ${gateDetail(s.test_run)}`;
  if (c.ok && !problem) {
    v.className = "verdict ok";
    v.textContent = `✓ Ready to promote · ${c.passed}/${c.total} + decisions`;
    return;
  }
  const failed = !c.ok || (gate && !gate.stale && gate.status === "fail");
  v.className = `verdict ${failed ? "bad" : "warn"}`;
  if (!problem) { v.textContent = `✗ Not ready · ${c.passed}/${c.total} checks passed`; return; }
  // Two lines, so the reason fits the header next to the run id.
  clear(v).append(el("span", { text: `✗ Not ready · ${c.passed}/${c.total} checks,` }), " ", el("span", { class: "why", text: problem }));
}

/* Why the latest test run does not back a promotion, or null when its decision gate passed
 * for the checkpoints on disk (the exporter marks a gate stale when one changed since). */
function decisionProblem(tr) {
  const g = tr && tr.decision_gate;
  if (!tr) return "no test run yet";
  if (!g) return "decisions: no decision gate in this test run";
  if (g.stale) return `decisions stale (${g.stale_reason || "checkpoint changed"})`;
  if (g.ok) return null;
  if (g.status === "no_labels") return "decisions: no labels to judge them";
  return `decisions: ${gateFailure(g)}`;
}

/* The gate's rules in a few words: false alarms on normal files or before a fault's onset,
 * and labelled faults (not counting the hard ones) missed; else the gate's own words. */
function gateFailure(g) {
  const parts = [];
  const alarmed = (g.normal_with_events || []).length;
  if (alarmed) parts.push(`${alarmed} normal file${alarmed === 1 ? "" : "s"} raised alarms`);
  const early = (g.early_alarms || []).length;
  if (early) parts.push(`${early} fault file${early === 1 ? "" : "s"} alarmed before the onset`);
  if ((g.missed || []).length) parts.push(`${g.missed.length} of ${g.faults} faults missed`);
  return parts.join(", ") || g.detail;
}

function gateDetail(tr) {
  const g = tr && tr.decision_gate;
  if (!tr) return "no test run yet: start a test run (Training tab) or python -m pipelines.run_local_test_pipeline.";
  if (!g) return "this decisions.json has no decision gate (written by an older version): run the test pipeline again.";
  return g.stale ? `Stale: ${g.stale_reason} since this test run; run the test pipeline again. It said: ${g.detail}` : g.detail;
}

/* ------------------------------------------------------------------ pipeline graph */
function laterOf(a, b) {
  const ta = Date.parse(a && a.updated_at);
  const tb = Date.parse(b && b.updated_at);
  if (!b || Number.isNaN(tb)) return a;
  if (!a || Number.isNaN(ta)) return b;
  return tb >= ta ? b : a;
}

/* Live status describes a newer run than the exported state when its run id differs and
 * it is running or was updated after the export: then it wins for every node (idle too). */
function liveIsNewer(live) {
  const s = App.status;
  if (!App.state) return true;
  if (!s || s.run_id === App.state.meta.run_id) return false;
  const exported = Date.parse(App.state.meta.generated_at);
  const updates = Object.values(live).map((v) => Date.parse(v.updated_at)).filter((t) => !Number.isNaN(t));
  return (s.process && s.process.state === "running") || updates.some((t) => Number.isNaN(exported) || t > exported);
}

function graphModel() {
  const layoutNodes = (App.layout && App.layout.nodes) || [];
  const stateNodes = (App.state && App.state.nodes) || [];
  const live = (App.status && App.status.has_status && App.status.nodes) || {};
  const base = layoutNodes.length ? layoutNodes : stateNodes.length ? stateNodes
    : Object.keys(live).map((id) => ({ id, label: id.replace(/_/g, " "), type: "stage" }));
  const byState = Object.fromEntries(stateNodes.map((n) => [n.id, n]));
  const liveWins = Object.keys(live).length > 0 && liveIsNewer(live);
  const nodes = base.map((n) => {
    const fromState = byState[n.id] || {};
    const fromLive = live[n.id];
    const cur = (liveWins && fromLive)
      || laterOf(fromState.status ? fromState : null, fromLive && fromLive.status !== "idle" ? fromLive : null)
      || { status: "idle", message: "", updated_at: null };
    return { id: n.id, label: n.label || fromState.label || n.id, type: n.type || fromState.type || "stage",
      x: n.x, y: n.y, status: cur.status || "idle", message: cur.message || "", updated_at: cur.updated_at || null };
  });
  const edges = ((App.layout && App.layout.edges) || (App.state && App.state.edges) || []);
  return { nodes, edges };
}

function autoPositions(nodes, edges) {
  const depth = {};
  nodes.forEach((n) => { depth[n.id] = 0; });
  for (let i = 0; i < nodes.length; i += 1) {
    edges.forEach((e) => { if (e.from in depth && e.to in depth) depth[e.to] = Math.max(depth[e.to], depth[e.from] + 1); });
  }
  const rows = {};
  return Object.fromEntries(nodes.map((n) => {
    const d = depth[n.id];
    rows[d] = (rows[d] || 0) + 1;
    return [n.id, { x: d * 220, y: rows[d] * 100 }];
  }));
}

/* Layout coordinates are relative positions: they are scaled (per axis) to fill the panel
 * while nodes keep their pixel size, so labels stay legible at any panel width. The node
 * width is the largest (up to 170 px) at which no two nodes overlap after scaling. */
function fitPositions(model) {
  const box = $("#graph").getBoundingClientRect();
  const W = Math.max(box.width, 300);
  const H = Math.max(box.height, 160);
  const hasXY = model.nodes.every((n) => Number.isFinite(n.x) && Number.isFinite(n.y));
  const raw = hasXY ? Object.fromEntries(model.nodes.map((n) => [n.id, { x: n.x, y: n.y }])) : autoPositions(model.nodes, model.edges);
  const pts = Object.values(raw);
  const xs = pts.map((p) => p.x);
  const ys = pts.map((p) => p.y);
  const [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  const m = 10;
  const legend = 16;
  const scales = (w) => [
    x1 > x0 ? Math.min(1.4, (W - w - 2 * m) / (x1 - x0)) : 1,
    y1 > y0 ? Math.min(1.4, (H - NODE_H - 2 * m - legend) / (y1 - y0)) : 1,
  ];
  const overlaps = (w) => {
    const [sx, sy] = scales(w);
    return pts.some((a, i) => pts.slice(i + 1).some((b) => Math.abs(a.x - b.x) * sx < w + 12 && Math.abs(a.y - b.y) * sy < NODE_H + 8));
  };
  let w = 170;
  while (w > 112 && overlaps(w)) w -= 2;
  const [sx, sy] = scales(w);
  const ox = x1 > x0 ? m : (W - w) / 2;
  const oy = y1 > y0 ? m : (H - NODE_H) / 2;
  App.graph.nodeW = w;
  App.graph.pos = Object.fromEntries(Object.entries(raw).map(([id, p]) => [id, { x: ox + (p.x - x0) * sx, y: oy + (p.y - y0) * sy }]));
  App.graph.view = { k: 1, tx: 0, ty: 0 };
}

function edgePath(a, b) {
  const x1 = a.x + App.graph.nodeW;
  const y1 = a.y + NODE_H / 2;
  const x2 = b.x;
  const y2 = b.y + NODE_H / 2;
  const dx = Math.max(30, Math.abs(x2 - x1) / 2);
  return `M${x1},${y1} C${x1 + dx},${y1} ${x2 - dx},${y2} ${x2 - 6},${y2}`;
}

function fitText(textNode, text, maxWidth) {
  textNode.textContent = text;
  if (textNode.getComputedTextLength() <= maxWidth) return;
  let lo = 0;
  let hi = text.length;
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2);
    textNode.textContent = `${text.slice(0, mid)}…`;
    if (textNode.getComputedTextLength() <= maxWidth) lo = mid; else hi = mid - 1;
  }
  textNode.textContent = `${text.slice(0, lo)}…`;
}

/* One or two label lines: split at the space that makes the longer line shortest. */
function layoutLabel(group, label, maxWidth) {
  const t = svg("text", { x: 12, y: 37, class: "label" });
  group.append(t);
  t.textContent = label;
  if (t.getComputedTextLength() <= maxWidth || !label.includes(" ")) { fitText(t, label, maxWidth); return; }
  const width = (text) => { t.textContent = text; return t.getComputedTextLength(); };
  const cuts = [...label.matchAll(/ /g)].map((mt) => mt.index);
  const cost = (i) => Math.max(width(label.slice(0, i)), width(label.slice(i + 1)));
  const cut = cuts.reduce((best, i) => (cost(i) < cost(best) ? i : best));
  t.setAttribute("y", 31);
  fitText(t, label.slice(0, cut), maxWidth);
  const t2 = svg("text", { x: 12, y: 45, class: "label" });
  group.append(t2);
  fitText(t2, label.slice(cut + 1), maxWidth);
}

function nodeSubtitle(n) {
  if (n.status === "running" && n.message) return `running · ${n.message}`;
  if (n.status === "fail") return `fail · ${n.message || "see log"}`;
  return n.status;
}

function buildGraph() {
  const g = App.graph;
  g.stale = g.dragging; // never replace the node under the pointer; rebuild after the drag
  if (g.dragging) return;
  const model = graphModel();
  const root = $("#graph");
  const key = model.nodes.map((n) => n.id).join("|");
  const refit = key !== g.key || !Object.keys(g.pos).length;
  // Status events arrive every second while a run is live: redraw only on a visible change.
  const sig = JSON.stringify([model.nodes.map((n) => [n.id, n.status, n.message, n.label]), [...g.hidden], g.selected]);
  if (!refit && sig === g.sig) return;
  g.sig = sig;
  if (refit) { fitPositions(model); g.key = key; }
  clear(root);
  const defs = svg("defs");
  const marker = svg("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 6, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" });
  marker.append(svg("path", { d: "M 0 0 L 10 5 L 0 10 z", fill: "#9aa4b2" }));
  defs.append(marker);
  root.append(defs);
  const viewport = svg("g", { id: "viewport" });
  root.append(viewport);
  const byId = Object.fromEntries(model.nodes.map((n) => [n.id, n]));
  const edgeLayer = svg("g", { class: "edges" });
  const nodeLayer = svg("g", { class: "nodes" });
  viewport.append(edgeLayer, nodeLayer);
  for (const e of model.edges) {
    const a = byId[e.from];
    const b = byId[e.to];
    if (!a || !b || g.hidden.has(a.type) || g.hidden.has(b.type)) continue;
    const flow = b.status === "running";
    edgeLayer.append(svg("path", { class: `edge${flow ? " flow" : ""}`, d: edgePath(g.pos[a.id], g.pos[b.id]),
      "data-from": a.id, "data-to": b.id, "marker-end": "url(#arrow)" }));
  }
  for (const n of model.nodes) {
    if (g.hidden.has(n.type)) continue;
    const p = g.pos[n.id];
    const grp = svg("g", { class: `node status-${n.status} type-${n.type}${g.selected === n.id ? " selected" : ""}`,
      transform: `translate(${p.x},${p.y})`, "data-id": n.id, "data-status": n.status, tabindex: 0 });
    const w = g.nodeW;
    grp.append(svg("rect", { class: "box", width: w, height: NODE_H, rx: 8 }));
    grp.append(svg("rect", { class: "bar", width: 5, height: NODE_H - 12, x: 3, y: 6, rx: 2 }));
    grp.append(svg("text", { x: 12, y: 15, class: "type" }, n.type));
    nodeLayer.append(grp);
    layoutLabel(grp, n.label, w - 18);
    const sub = svg("text", { x: 12, y: NODE_H - 6, class: "sub" });
    grp.append(sub);
    fitText(sub, nodeSubtitle(n), w - 18);
    grp.append(svg("title", {}, `${n.label}: ${n.status}${n.message ? ` — ${n.message}` : ""}`));
    grp.addEventListener("mouseenter", () => showNodeInfo(n));
    grp.addEventListener("pointerdown", (ev) => startNodeDrag(ev, n));
  }
  applyView();
  if (g.selected && byId[g.selected]) showNodeInfo(byId[g.selected]);
}

function applyView() {
  const v = App.graph.view;
  const vp = $("#viewport");
  if (vp) vp.setAttribute("transform", `translate(${v.tx},${v.ty}) scale(${v.k})`);
}

function showNodeInfo(n) {
  const info = clear($("#node-info"));
  info.classList.remove("muted");
  info.append(el("b", { text: n.label }), ` — ${n.status}`, n.message ? `: ${n.message}` : "",
    n.updated_at ? ` (${fmtTime(n.updated_at)})` : "");
  info.title = n.message || "";
}

function startNodeDrag(ev, n) {
  ev.stopPropagation();
  const g = App.graph;
  const start = { x: ev.clientX, y: ev.clientY, px: g.pos[n.id].x, py: g.pos[n.id].y };
  let moved = false;
  g.dragging = true;
  const target = ev.currentTarget;
  target.setPointerCapture(ev.pointerId);
  const move = (e) => {
    const dx = (e.clientX - start.x) / g.view.k;
    const dy = (e.clientY - start.y) / g.view.k;
    if (Math.abs(dx) + Math.abs(dy) > 2) moved = true;
    g.pos[n.id] = { x: start.px + dx, y: start.py + dy };
    target.setAttribute("transform", `translate(${g.pos[n.id].x},${g.pos[n.id].y})`);
    document.querySelectorAll(`#graph .edge[data-from="${n.id}"], #graph .edge[data-to="${n.id}"]`).forEach((p) => {
      p.setAttribute("d", edgePath(g.pos[p.dataset.from], g.pos[p.dataset.to]));
    });
  };
  const up = () => {
    target.removeEventListener("pointermove", move);
    target.removeEventListener("pointerup", up);
    g.dragging = false;
    if (!moved) g.selected = n.id;
    if (!moved || g.stale) buildGraph();
  };
  target.addEventListener("pointermove", move);
  target.addEventListener("pointerup", up);
}

function setupGraphInteractions() {
  const root = $("#graph");
  root.addEventListener("pointerdown", (ev) => {
    const v = App.graph.view;
    const start = { x: ev.clientX, y: ev.clientY, tx: v.tx, ty: v.ty };
    root.setPointerCapture(ev.pointerId);
    root.classList.add("panning");
    const move = (e) => { v.tx = start.tx + e.clientX - start.x; v.ty = start.ty + e.clientY - start.y; applyView(); };
    const up = () => {
      root.classList.remove("panning");
      root.removeEventListener("pointermove", move);
      root.removeEventListener("pointerup", up);
    };
    root.addEventListener("pointermove", move);
    root.addEventListener("pointerup", up);
  });
  root.addEventListener("wheel", (ev) => {
    ev.preventDefault();
    const v = App.graph.view;
    const box = root.getBoundingClientRect();
    const px = ev.clientX - box.left;
    const py = ev.clientY - box.top;
    const k = Math.min(3, Math.max(0.3, v.k * Math.exp(-ev.deltaY * 0.0015)));
    v.tx = px - (px - v.tx) * (k / v.k);
    v.ty = py - (py - v.ty) * (k / v.k);
    v.k = k;
    applyView();
  }, { passive: false });
  $("#graph-fit").addEventListener("click", () => { App.graph.key = ""; buildGraph(); });
}

function renderTypeFilter() {
  const types = [...new Set(graphModel().nodes.map((n) => n.type))];
  const box = clear($("#type-filter"));
  for (const t of types) {
    const cb = el("input", { type: "checkbox", "data-type": t });
    cb.checked = !App.graph.hidden.has(t);
    cb.addEventListener("change", () => {
      if (cb.checked) App.graph.hidden.delete(t); else App.graph.hidden.add(t);
      buildGraph();
    });
    box.append(el("label", {}, cb, t));
  }
}

/* ------------------------------------------------------------------ checklist */
function renderChecklist() {
  const list = clear($("#checklist"));
  const empty = $("#empty-state");
  const c = App.state && App.state.checklist;
  $("#checklist-score").textContent = c ? `${c.passed}/${c.total} passed` : "";
  $("#checklist-score").style.color = c ? (c.ok ? "var(--done)" : "var(--fail)") : "";
  if (!App.state) {
    empty.hidden = false;
    clear(empty).append(el("b", { text: "No dashboard state yet." }), el("br"),
      "Run the whole job with ", el("code", { text: "make run" }), ", or train with ",
      el("code", { text: "python -m pipelines.run_local_training_pipeline" }),
      " (or use Start training below); the state is exported at the end of the run.");
    empty.title = App.emptyHint;
    return;
  }
  empty.hidden = true;
  if (!c) {
    list.append(el("li", { class: "muted", text: "No validation checklist in this state. Run python -m pipelines.validate_training_outputs --json-out artifacts/validation/checklist.json and export again." }));
    return;
  }
  for (const item of c.items) {
    const li = el("li", { class: item.status, "data-key": item.key },
      el("span", { class: `badge ${item.status}`, text: item.status }),
      el("span", { class: "check-title", text: `${item.id}. ${item.title}` }),
      el("span", { class: "check-detail", text: item.detail, title: item.detail }));
    if (item.status !== "PASS" && item.hint) li.append(el("span", { class: "check-hint", text: item.hint, title: item.hint }));
    list.append(li);
  }
}

/* The decision gate sits under the seven checks, apart from them: it judges the models'
 * decisions on labelled test files, not the artifacts of the training run. */
function renderDecisionGate() {
  const box = clear($("#decision-gate"));
  box.hidden = !App.state;
  if (!App.state) return;
  const tr = App.state.test_run;
  const g = tr && tr.decision_gate;
  const status = !g ? "NONE" : g.stale ? "STALE" : g.ok ? "PASS" : g.status === "no_labels" ? "NONE" : "FAIL";
  const detail = gateDetail(tr);
  box.append(el("h3", { text: "Decision quality" }), el("div", { class: `gate-item ${status}`, "data-status": status },
    el("span", { class: `badge ${status}`, text: status === "NONE" ? "—" : status }),
    el("span", { class: "gate-text", title: detail }, el("b", { text: "Decision gate" }), ` · ${detail}`)));
}

/* ------------------------------------------------------------------ charts */
/* Charts are drawn at their real pixel size (crisp text, no scaled fonts), so a chart
 * whose box changes size (layout settling, a tab becoming visible) is drawn again. */
const chartObserver = new ResizeObserver((entries) => {
  for (const entry of entries) {
    const root = entry.target;
    const { width, height } = entry.contentRect;
    if (width && height && (Math.round(width) !== root.drawnW || Math.round(height) !== root.drawnH)) drawLineChart(root, root.chartOpts);
  }
});

function drawLineChart(root, opts) {
  clear(root);
  root.chartOpts = opts;
  chartObserver.observe(root);
  const W = root.clientWidth || 400;
  const H = root.clientHeight || 200;
  root.drawnW = Math.round(W);
  root.drawnH = Math.round(H);
  root.setAttribute("viewBox", `0 0 ${W} ${H}`);
  const series = (opts.series || []).filter((s) => s.points.length);
  const all = series.flatMap((s) => s.points);
  if (!all.length) {
    root.append(svg("text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "empty" }, opts.empty || "no data"));
    return null;
  }
  const m = { l: 54, r: 14, t: 10, b: 30 };
  const xsAll = all.map((p) => p[0]).concat(opts.xExtent || []);
  // A log axis (opts.yLog, positive values only) keeps thresholds readable when fault
  // scores are orders of magnitude above them; ticks then sit at powers of ten.
  const ty = opts.yLog ? (v) => Math.log10(Math.max(v, 1e-12)) : (v) => v;
  const ysAll = all.map((p) => ty(p[1])).concat((opts.hlines || []).map((h) => ty(h.y)));
  let [x0, x1] = [Math.min(...xsAll), Math.max(...xsAll)];
  if (x1 === x0) { x0 -= 1; x1 += 1; }
  const yt = opts.yLog ? { step: 1 } : niceTicks(Math.min(...ysAll), Math.max(...ysAll), Math.max(3, Math.floor((H - m.t - m.b) / 30)));
  const y0 = Math.floor(Math.min(...ysAll) / yt.step + 1e-9) * yt.step;
  const y1 = Math.max(Math.ceil(Math.max(...ysAll) / yt.step - 1e-9) * yt.step, y0 + yt.step);
  const yTicks = [];
  for (let v = y0; v <= y1 + yt.step * 1e-6; v += yt.step) {
    const t = Number(v.toPrecision(12));
    yTicks.push(opts.yLog ? { v: 10 ** t, label: String(Number((10 ** t).toPrecision(3))) } : { v: t, label: tickLabel(t, yt.step) });
  }
  const sx = (x) => m.l + ((x - x0) / (x1 - x0)) * (W - m.l - m.r);
  const sy = (y) => H - m.b - ((ty(y) - y0) / (y1 - y0 || 1)) * (H - m.t - m.b);
  const xCount = Math.max(2, Math.floor((W - m.l - m.r) / (opts.xTime ? 72 : 64)));
  const xTicks = opts.xTime ? timeTicks(x0, x1, xCount) : numberTicks(x0, x1, xCount, opts.integerX);
  for (const { v, label } of yTicks) {
    if (ty(v) < y0 - 1e-12 || ty(v) > y1 + 1e-12) continue;
    root.append(svg("line", { class: "grid", x1: m.l, x2: W - m.r, y1: sy(v), y2: sy(v) }));
    root.append(svg("text", { x: m.l - 6, y: sy(v) + 4, "text-anchor": "end", class: "y-tick" }, label));
  }
  for (const { v, label } of xTicks) {
    if (v < x0 || v > x1) continue;
    root.append(svg("line", { class: "axis", x1: sx(v), x2: sx(v), y1: H - m.b, y2: H - m.b + 4 }));
    root.append(svg("text", { x: sx(v), y: H - m.b + 15, "text-anchor": "middle" }, label));
  }
  root.append(svg("line", { class: "axis", x1: m.l, x2: m.l, y1: m.t, y2: H - m.b }));
  root.append(svg("line", { class: "axis", x1: m.l, x2: W - m.r, y1: H - m.b, y2: H - m.b }));
  if (opts.xLabel) root.append(svg("text", { x: m.l + (W - m.l - m.r) / 2, y: H - 2, "text-anchor": "middle", class: "axis-label" }, opts.xLabel));
  if (opts.yLabel) root.append(svg("text", { x: 11, y: m.t + (H - m.t - m.b) / 2, transform: `rotate(-90 11 ${m.t + (H - m.t - m.b) / 2})`, "text-anchor": "middle", class: "axis-label" }, opts.yLabel));
  const scale = { sx, sy, top: m.t, bottom: H - m.b, left: m.l, right: W - m.r };
  if (opts.underlay) opts.underlay(scale);
  for (const h of opts.hlines || []) {
    root.append(svg("line", { x1: m.l, x2: W - m.r, y1: sy(h.y), y2: sy(h.y), stroke: h.color, "stroke-width": 1.5, "stroke-dasharray": "6 4", class: `hline ${h.cls || ""}` }));
    root.append(svg("text", { x: W - m.r - 2, y: sy(h.y) + (h.below ? 13 : -4), "text-anchor": "end", fill: h.color, style: `fill:${h.color}` }, h.label));
  }
  for (const s of series) {
    const d = s.points.map((p, i) => `${i ? "L" : "M"}${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`).join(" ");
    root.append(svg("path", { d, fill: "none", stroke: s.color, "stroke-width": s.width || 2, "stroke-dasharray": s.dash || null, class: `series ${s.cls || ""}` }));
  }
  if (opts.decorate) opts.decorate(scale);
  return scale;
}

function renderLoss() {
  for (const stream of STREAMS) {
    const rows = (App.state && App.state.loss && App.state.loss[stream]) || [];
    const pick = (k) => rows.filter((r) => Number.isFinite(r[k])).map((r) => [r.epoch, r[k]]);
    const last = rows[rows.length - 1];
    const chips = clear($(`#config-${stream}`));
    const cfg = App.state && App.state.config && App.state.config[stream];
    if (last) chips.append(el("span", { class: "chip" }, "final ", el("b", { text: `train ${fmtNum(last.train_loss)} · val ${fmtNum(last.val_loss)}` })));
    const trained = rows.filter((r) => Number.isFinite(r.train_loss));
    if (trained.length >= 2 && trained[trained.length - 1].train_loss >= trained[0].train_loss) {
      chips.append(el("span", { class: "chip chip-fail", title: "the training loss did not fall: check the DQVL report and the scaler (floored or clipped channels), or lower training.lr" }, el("b", { text: "loss not falling" })));
    }
    if (cfg) {
      for (const key of ["fs", "lr", "epochs", "mask_ratio", "amp"]) {
        const v = cfg[key];
        const shown = key === "fs" && (v === null || v === undefined) ? "n/a" : fmtNum(v);
        chips.append(el("span", { class: "chip", title: key }, `${key} `, el("b", { text: shown })));
      }
    }
    drawLineChart($(`#loss-${stream}`), {
      series: [
        { points: pick("train_loss"), color: "var(--train)", cls: "train" },
        { points: pick("val_loss"), color: "var(--val)", dash: "6 3", cls: "val" },
      ],
      xLabel: "epoch", yLabel: "loss", integerX: true,
      empty: App.state ? "no loss history for this stream" : "no run yet",
    });
  }
}

/* ------------------------------------------------------------------ artifacts */
/* A path that may wrap only after a slash (never inside a name). */
function breakablePath(path) {
  return path.split("/").flatMap((part, i, all) => (i < all.length - 1 ? [`${part}/`, el("wbr")] : [part]));
}

function renderArtifacts() {
  const body = clear($("#artifacts tbody"));
  const items = (App.state && App.state.artifacts) || [];
  const ready = items.filter((a) => a.ready).length;
  $("#artifacts-score").textContent = items.length ? `${ready}/${items.length} ready` : "";
  $("#artifacts-score").style.color = items.length && ready < items.length ? "var(--fail)" : "var(--done)";
  const sorted = [...items].sort((a, b) => Number(a.ready) - Number(b.ready));
  for (const a of sorted) {
    body.append(el("tr", { class: a.ready ? "" : "missing", "data-path": a.path },
      el("td", { class: "path", title: `${a.kind} · ${STREAM_LABEL[a.stream] || a.stream}` }, ...breakablePath(a.path)),
      el("td", { class: "num", text: fmtBytes(a.size_bytes) }),
      el("td", {}, el("span", { class: `pill ${a.ready ? "ready" : "missing"}`, text: a.ready ? "ready" : "missing" }))));
  }
  if (!items.length) body.append(el("tr", {}, el("td", { colspan: 3, class: "muted", text: "no artifacts listed yet" })));
}

/* ------------------------------------------------------------------ live run */
function applyStatus(status) {
  App.status = status;
  const proc = status.process || {};
  const running = proc.state === "running";
  const runningNode = Object.entries(status.nodes || {}).find(([, v]) => v.status === "running");
  const p = status.progress;
  const bar = $("#progress-bar");
  const text = clear($("#progress-text"));
  const stateLabel = $("#run-state");
  if (running) stateLabel.textContent = `${proc.kind} run in progress · pid ${proc.pid}`;
  else if (proc.exit_code !== undefined && proc.exit_code !== null) {
    stateLabel.textContent = proc.stopped_by_user ? "stopped by user" : `last run exited with code ${proc.exit_code}`;
  } else stateLabel.textContent = "idle";
  if ((running || runningNode) && p && p.epochs) {
    const frac = Math.min(1, Math.max(0, ((p.epoch - 1) + (p.steps ? p.step / p.steps : 1)) / p.epochs));
    bar.style.width = `${(frac * 100).toFixed(1)}%`;
    bar.className = "progress-bar";
    text.append(el("b", { text: `${STREAM_LABEL[p.stream] || p.stream}` }), ` · epoch ${p.epoch}/${p.epochs}`,
      p.steps ? ` · step ${p.step}/${p.steps}` : "", ` · loss ${fmtNum(p.loss)}`,
      p.windows_per_s ? ` · ${fmtNum(p.windows_per_s, 3)} windows/s` : "");
  } else if (running || runningNode) {
    bar.style.width = "";
    bar.className = "progress-bar indeterminate";
    text.append(el("b", { text: runningNode ? runningNode[0].replace(/_/g, " ") : "starting" }), runningNode && runningNode[1].message ? ` · ${runningNode[1].message}` : " · waiting for the first status update");
  } else {
    const failed = Object.values(status.nodes || {}).some((v) => v.status === "fail");
    bar.style.width = status.has_status ? "100%" : "0";
    bar.className = `progress-bar ${failed ? "fail" : "done"}`;
    if (proc.stopped_by_user) text.textContent = "Run stopped by user; checkpoints already written are kept.";
    else if (!status.has_status) text.textContent = "No run in progress.";
    else text.textContent = failed ? "Last run failed: see the red node and the log." : "No run in progress; last run finished.";
  }
  if (App.wasRunning && !running && !proc.stopped_by_user) {
    controlMessage(`Run finished (exit code ${proc.exit_code}).`, proc.exit_code === 0 ? "ok" : "error");
  }
  App.wasRunning = running;
  const log = $("#log-tail");
  const atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
  log.textContent = (status.log_tail || []).join("\n") || "(no log yet)";
  if (atBottom) log.scrollTop = log.scrollHeight;
  $("#btn-train").disabled = running;
  $("#btn-test").disabled = running;
  $("#btn-stop").disabled = !running;
  buildGraph();
}

function controlMessage(text, kind = "") {
  const box = $("#control-msg");
  box.textContent = text;
  box.className = `control-msg ${kind}`;
}

async function startRun(kind) {
  const options = {};
  if (kind === "train") {
    if ($("#opt-skip-patchtst").checked) options.skip_patchtst = true;
    if ($("#opt-skip-swinmae").checked) options.skip_swinmae = true;
    const epochs = $("#opt-epochs").value.trim();
    if (epochs) options.epochs = Number(epochs);
  } else {
    options.stream = $("#opt-test-stream").value;
  }
  try {
    const res = await api("/api/run", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ kind, options }) });
    controlMessage(`Started ${kind} run (pid ${res.pid}).`, "ok");
    await loadStatus();
  } catch (err) {
    controlMessage(`Could not start: ${err.message}`, "error");
  }
}

async function stopRun() {
  $("#btn-stop").disabled = true;
  controlMessage("Stopping…");
  try {
    const res = await api("/api/stop", { method: "POST" });
    const code = res.process.exit_code;
    controlMessage(code < 0 ? `Stopped (process group ended by signal ${-code}).` : `Stopped (exit code ${code}).`, "ok");
    applyStatus(res.status);
  } catch (err) {
    controlMessage(`Could not stop: ${err.message}`, "error");
    await loadStatus();
  }
}

function uploadMessage(text, kind = "") {
  const box = $("#upload-msg");
  box.textContent = text;
  box.className = `control-msg ${kind}`;
}

async function upload(ev) {
  ev.preventDefault();
  const files = $("#up-files").files;
  if (!files.length) { uploadMessage("Choose one or more files first.", "error"); return; }
  const form = new FormData();
  for (const f of files) form.append("files", f, f.name);
  const stream = $("#up-stream").value;
  const target = $("#up-target").value;
  uploadMessage(`Uploading ${files.length} file(s)…`);
  $("#btn-upload").disabled = true;
  try {
    const res = await api(`/api/upload?stream=${encodeURIComponent(stream)}&target=${encodeURIComponent(target)}`, { method: "POST", body: form });
    const text = `Saved ${res.saved.length} file(s): ${res.saved.join(", ")}`;
    uploadMessage(text, "ok");
    controlMessage(text, "ok");
    $("#up-files").value = "";
  } catch (err) {
    uploadMessage(`Upload rejected: ${err.message}`, "error");
  } finally {
    $("#btn-upload").disabled = false;
  }
}

/* ------------------------------------------------------------------ history */
function renderRuns() {
  const body = clear($("#runs-table tbody"));
  if (!App.runs.length) {
    body.append(el("tr", {}, el("td", { colspan: 5, class: "muted", text: "No run history yet (exports with --persist-run-history add runs)." })));
    return;
  }
  for (const r of App.runs) {
    const radio = (slot) => {
      const input = el("input", { type: "radio", name: `run-${slot}`, value: r.run_id, "aria-label": `${slot.toUpperCase()}: ${r.run_id}` });
      input.checked = App.compare[slot] === r.run_id;
      input.addEventListener("change", () => { App.compare[slot] = r.run_id; renderRuns(); renderComparison(); });
      return el("td", {}, input);
    };
    const ok = r.passed === r.total;
    const fl = r.final_loss || {};
    const selected = r.run_id === App.compare.a || r.run_id === App.compare.b;
    body.append(el("tr", { class: selected ? "selected" : "", "data-run": r.run_id },
      radio("a"), radio("b"),
      el("td", {}, el("div", { class: "mono", text: r.run_id }), el("div", { class: "muted small-text", text: fmtTime(r.generated_at) })),
      el("td", {}, el("span", { class: `pill ${ok ? "PASS" : "FAIL"}`, text: `${r.passed}/${r.total}` })),
      el("td", { class: "num", text: `${fmtNum(fl.patchtst)} / ${fmtNum(fl.swinmae)}` })));
  }
}

/* Cached per run id as a promise, so concurrent renders share one request. */
function snapshot(runId) {
  if (!App.snapshots[runId]) {
    const pending = api(`/api/runs/${encodeURIComponent(runId)}`);
    pending.catch(() => { if (App.snapshots[runId] === pending) delete App.snapshots[runId]; });
    App.snapshots[runId] = pending;
  }
  return App.snapshots[runId];
}

function compareTable(headers, rows) {
  const table = el("table", { class: "table compare-table" });
  table.append(el("thead", {}, el("tr", {}, ...headers.map((h, i) => el("th", { class: i ? "num" : "", text: h })))));
  const body = el("tbody");
  for (const r of rows) {
    body.append(el("tr", { class: r.changed ? "changed" : "", "data-key": r.key },
      ...r.cells.map((c, i) => el("td", { class: i ? "num" : "" }, c))));
  }
  table.append(body);
  return table;
}

function cfgValue(v) {
  return typeof v === "string" && v.includes("/") ? el("span", {}, ...breakablePath(v)) : fmtNum(v);
}

function lastVal(state, stream) {
  const rows = (state.loss && state.loss[stream]) || [];
  return rows.length ? rows[rows.length - 1].val_loss : null;
}

async function renderComparison() {
  const box = $("#compare");
  const { a, b } = App.compare;
  if (!a || !b || a === b) {
    clear(box).append(el("p", { class: "muted", text: App.runs.length < 2 ? "At least two runs in the history are needed." : "Pick two different runs (A and B)." }));
    $("#compare-title").textContent = "";
    return;
  }
  let A;
  let B;
  try { [A, B] = await Promise.all([snapshot(a), snapshot(b)]); } catch (err) {
    clear(box).append(el("p", { class: "control-msg error", text: `Could not load runs: ${err.message}` }));
    return;
  }
  if (App.compare.a !== a || App.compare.b !== b) return; // a newer selection won
  $("#compare-title").textContent = `A = ${a} · B = ${b}`;
  clear(box);
  box.append(el("h3", { text: "Final validation loss" }));
  box.append(compareTable(["stream", "A", "B", "B vs A"], STREAMS.map((s) => {
    const va = lastVal(A, s);
    const vb = lastVal(B, s);
    const delta = va && vb ? ((vb - va) / va) * 100 : null;
    const d = delta === null ? "—" : el("span", { class: delta > 0 ? "delta-up" : "delta-down", text: `${delta > 0 ? "+" : ""}${delta.toFixed(1)} %` });
    return { key: s, changed: va !== vb, cells: [STREAM_LABEL[s], fmtNum(va), fmtNum(vb), d] };
  })));
  const charts = el("div", { class: "compare-charts" });
  box.append(charts);
  for (const s of STREAMS) {
    const chart = svg("svg", { class: "chart", id: `compare-loss-${s}` });
    charts.append(el("div", {}, el("div", { class: "card-head" }, el("h2", { text: `${STREAM_LABEL[s]} val loss` }),
      el("span", { class: "legend" }, el("i", { class: "ln train" }), "A ", el("i", { class: "ln val" }), "B")), chart));
    const pts = (st) => ((st.loss && st.loss[s]) || []).filter((r) => Number.isFinite(r.val_loss)).map((r) => [r.epoch, r.val_loss]);
    requestAnimationFrame(() => drawLineChart(chart, {
      series: [{ points: pts(A), color: "var(--train)", cls: "run-a" }, { points: pts(B), color: "var(--val)", dash: "6 3", cls: "run-b" }],
      xLabel: "epoch", integerX: true, empty: "no loss history",
    }));
  }
  const cfgRows = [];
  for (const s of STREAMS) {
    const ca = (A.config && A.config[s]) || {};
    const cb = (B.config && B.config[s]) || {};
    for (const k of [...new Set([...Object.keys(ca), ...Object.keys(cb)])]) {
      const changed = JSON.stringify(ca[k]) !== JSON.stringify(cb[k]);
      cfgRows.push({ key: `${s}.${k}`, changed, cells: [`${s}.${k}`, cfgValue(ca[k]), cfgValue(cb[k])] });
    }
  }
  const itemsA = Object.fromEntries((((A.checklist || {}).items) || []).map((i) => [i.key, i]));
  const itemsB = Object.fromEntries((((B.checklist || {}).items) || []).map((i) => [i.key, i]));
  const keys = [...new Set([...Object.keys(itemsA), ...Object.keys(itemsB)])];
  const badge = (i) => (i ? el("span", { class: `pill ${i.status}`, text: i.status }) : "—");
  const checkRows = keys.map((k) => {
    const ia = itemsA[k];
    const ib = itemsB[k];
    return { key: k, changed: (ia && ia.status) !== (ib && ib.status), cells: [`${(ia || ib).id}. ${(ia || ib).title}`, badge(ia), badge(ib)] };
  });
  const configBox = el("div", { id: "compare-config" }, el("h3", { text: "Config (changed rows highlighted)" }), compareTable(["key", "A", "B"], cfgRows));
  const checkBox = el("div", { id: "compare-checklist" }, el("h3", { text: "Checklist (changed rows highlighted)" }), compareTable(["item", "A", "B"], checkRows));
  box.append(el("div", { class: "compare-tables" }, configBox, checkBox));
}

/* ------------------------------------------------------------------ test runs */
function testStream() {
  const tr = App.state && App.state.test_run;
  return tr && tr.streams ? tr.streams[App.test.stream] : null;
}

function selectTest(change) {
  App.test = Object.assign({}, App.test, { window: null, event: null }, change);
}

/* Ground truth from labels.csv: the label, a "hard" tag, and whether the decision agrees. */
function truthCell(f) {
  if (!f.label) return el("td", { class: "muted", text: "—", title: "no label for this file" });
  const agrees = f.correct === undefined ? null
    : el("span", { class: f.correct ? "agree" : "disagree", text: f.correct ? "✓" : "✗", title: f.correct ? "decision matches the label" : "decision contradicts the label" });
  return el("td", { class: "truth" }, el("span", { class: `pill truth-${f.label}`, text: f.label }),
    f.difficulty ? el("span", { class: `tag ${f.difficulty}`, text: f.difficulty }) : null, agrees);
}

function fileRow(f) {
  const nEvents = f.n_events ?? (f.events ? f.events.length : null);
  const row = el("tr", { class: `clickable${f.file_id === App.test.file ? " selected" : ""}`, "data-file": f.file_id },
    el("td", { class: "path", text: f.file_id, title: f.file_id }),
    truthCell(f),
    el("td", {}, el("span", { class: `pill ${f.decision}`, text: f.decision })),
    el("td", { class: "num", text: `${f.n_warn} / ${f.n_anomaly}`, title: `${f.n_warn} warn and ${f.n_anomaly} anomaly of ${f.n_windows} windows` }),
    el("td", { class: "num events", text: nEvents ?? "—" }),
    el("td", { class: "num first-alarm", text: f.first_alarm == null ? "—" : fmtPos(f.first_alarm), title: f.first_alarm ?? "no alarm event" }),
    el("td", { class: "num", text: fmtNum(f.max_score, 3) }));
  row.addEventListener("click", () => { selectTest({ file: f.file_id }); renderTest(); });
  return row;
}

/* What the decision run really used (device, AMP, stride, epochs…), not what was configured. */
function renderTestSettings(st) {
  const meta = $("#test-meta");
  const box = clear($("#test-effective"));
  const tr = App.state.test_run;
  const th = st.thresholds;
  const clearLevel = Number.isFinite(th.clear) ? `, clear ${fmtNum(th.clear)}` : "";
  const alarm = st.alarm ? ` · alarm: ${st.alarm.raise_k} of ${st.alarm.raise_n} windows over warn, clears after ${st.alarm.clear_windows} at or below clear` : "";
  meta.textContent = `run ${tr.run_id} · ${fmtTime(tr.created)} · thresholds warn ${fmtNum(th.warn)}, anomaly ${fmtNum(th.anomaly)}${clearLevel}${alarm}`;
  if (!st.effective) return;
  box.append(el("span", { class: "chip-label", text: "what ran" }));
  for (const [k, v] of Object.entries(st.effective)) {
    box.append(el("span", { class: "chip", title: k }, `${k.replace(/_/g, " ")} `, el("b", { text: fmtNum(v) })));
  }
}

function renderTest() {
  document.querySelectorAll("#test-stream button").forEach((b) => b.classList.toggle("active", b.dataset.stream === App.test.stream));
  const body = clear($("#test-files tbody"));
  const extra = clear($("#test-extra"));
  const tr = App.state && App.state.test_run;
  const st = testStream();
  if (!tr || !st) {
    $("#test-meta").textContent = "";
    clear($("#test-effective"));
    body.append(el("tr", {}, el("td", { colspan: 7, class: "muted", text: "No test run yet: use Start test run on the Training tab or python -m pipelines.run_local_test_pipeline." })));
    App.test.file = null;
    renderTimeline();
    return;
  }
  renderTestSettings(st);
  const files = st.files || [];
  if (!files.some((f) => f.file_id === App.test.file)) {
    const worst = files.find((f) => f.decision === "anomaly") || files[0];
    selectTest({ file: worst ? worst.file_id : null });
  }
  for (const f of files) body.append(fileRow(f));
  if ((st.dropped || []).length) {
    extra.append(el("h3", { text: "Dropped by DQVL" }));
    for (const d of st.dropped) extra.append(el("div", {}, el("span", { class: "pill drop", text: "drop" }), " ", el("span", { class: "mono", text: d.file_id }), el("span", { class: "muted", text: ` — ${d.reason}` })));
  }
  if ((tr.fused || []).length) {
    extra.append(el("h3", { text: "Fused decisions" }));
    for (const f of tr.fused) extra.append(el("div", {}, el("span", { class: `pill ${f.decision}`, text: f.decision }), " ", el("b", { text: f.asset || f.file_id || "" }), el("span", { class: "muted", text: ` — ${f.detail || ""}` })));
  }
  renderTimeline();
}

/* The timeline's x axis: real time when every window has ISO times, else the window index.
 * A window is drawn at its end (when its data had been seen), as events and first alarms
 * are stamped; an event's span runs from its first to its last window, half a window step
 * wider on each side so its points sit inside it. A row/sample onset maps onto the index
 * axis through the windows' step. */
function timelineAxis(windows) {
  const first = windows[0];
  const last = windows[windows.length - 1];
  const steps = first && last && last.index > first.index ? last.index - first.index : NaN;
  const timed = windows.length > 0 && windows.every((w) => !Number.isNaN(parseTime(w.end)));
  if (timed) {
    const half = (parseTime(last.end) - parseTime(first.end)) / steps / 2 || 0;
    const days = new Set(windows.map((w) => new Date(parseTime(w.end)).toISOString().slice(0, 10)));
    return { time: true, label: days.size === 1 ? `time · ${[...days][0]}` : "time",
      x: (w) => parseTime(w.end), at: parseTime,
      span: (e) => [parseTime(e.start) - half, parseTime(e.end) + half] };
  }
  const step = (last && last.end - first.end) / steps;
  return { time: false, label: "window", x: (w) => w.index,
    at: (v) => (typeof v === "number" && step > 0 ? first.index + (v - first.end) / step : NaN),
    span: (e) => [e.start_window - 0.5, e.end_window + 0.5] };
}

function selectEvent(id) {
  selectTest({ event: id });
  renderTimeline();
}

function eventSummary(e) {
  return `Event ${e.id} · ${e.level} · ${fmtEventLength(e)}`;
}

/* Shaded spans behind the points, one per event, clickable for its drill-down. */
function drawEventSpans(root, scale, file, axis) {
  for (const e of file.events || []) {
    const [a, b] = axis.span(e);
    if (!Number.isFinite(a) || !Number.isFinite(b)) continue;
    const x = scale.sx(a);
    const selected = App.test.event === e.id;
    const rect = svg("rect", { class: `event-span level-${e.level}${selected ? " selected" : ""}`, x, y: scale.top,
      width: Math.max(3, scale.sx(b) - x), height: scale.bottom - scale.top, "data-event": e.id });
    rect.append(svg("title", {}, `${eventSummary(e)} · ${e.start} → ${e.end}${e.open ? " (open)" : ""}`));
    rect.addEventListener("click", () => selectEvent(e.id));
    root.append(rect, svg("text", { x: x + 3, y: scale.top + 11, class: `event-label level-${e.level}` }, `E${e.id}`));
  }
}

/* A dashed vertical line at the labelled fault start; its label keeps clear of the y axis. */
function drawFaultOnset(root, scale, file, axis) {
  const at = file.fault_start === undefined ? NaN : axis.at(file.fault_start);
  if (!Number.isFinite(at)) return;
  const x = scale.sx(at);
  const left = x - scale.left > 90;
  const g = svg("g", { class: "fault-onset" });
  g.append(svg("line", { x1: x, x2: x, y1: scale.top, y2: scale.bottom }),
    svg("text", { x: left ? x - 4 : x + 4, y: scale.top + 24, "text-anchor": left ? "end" : "start" }, "fault onset"),
    svg("title", {}, `fault onset · ${file.fault_start}`));
  root.append(g);
}

function renderEventList(file) {
  const box = clear($("#event-list"));
  if (!file || !file.events) return;
  if (!file.events.length) { box.append(el("span", { class: "muted", text: "No alarm events in this file." })); return; }
  box.append(el("span", { class: "muted", text: "Events" }));
  for (const e of file.events) {
    box.append(el("button", { type: "button", class: `event-item level-${e.level}${App.test.event === e.id ? " active" : ""}`, "data-event": e.id,
      onclick: () => selectEvent(e.id) }, `E${e.id} · ${e.level} · ${fmtEventLength(e)}${e.open ? " · open" : ""}`));
  }
}

/* Fault scores can be hundreds of times the anomaly threshold; on a linear axis the
 * thresholds and the normal windows then collapse onto the bottom line. */
function scoresNeedLog(scores, th) {
  const positive = scores.length > 0 && scores.every((v) => v > 0);
  const base = Number.isFinite(th.anomaly) && th.anomaly > 0 ? th.anomaly : Math.min(...scores);
  return positive && Math.max(...scores) / base > 30;
}

function renderTimeline() {
  const root = $("#timeline");
  const st = testStream();
  const file = st && (st.files || []).find((f) => f.file_id === App.test.file);
  $("#timeline-title").textContent = file ? `Score timeline · ${file.file_id}` : "Score timeline";
  const windows = (file && file.windows) || [];
  const axis = timelineAxis(windows);
  const drawPoints = (scale) => {
    for (const w of windows) {
      const selected = App.test.window === w.index;
      const dot = svg("circle", { cx: scale.sx(axis.x(w)), cy: scale.sy(w.score), r: selected ? 6 : 4, class: `point level-${w.level}${selected ? " selected" : ""}`,
        fill: LEVEL_COLOR[w.level] || "#888", stroke: selected ? "#1d2430" : "#fff", "stroke-width": selected ? 2 : 1, "data-index": w.index, style: "cursor:pointer" });
      dot.append(svg("title", {}, `window ${w.index} · ${w.start} – ${w.end} · score ${fmtNum(w.score)} (${w.level})`));
      dot.addEventListener("click", () => { selectTest({ window: w.index }); renderTimeline(); });
      root.append(dot);
    }
  };
  const underlay = (scale) => {
    drawEventSpans(root, scale, file, axis);
    drawFaultOnset(root, scale, file, axis);
  };
  const th = st ? st.thresholds : {};
  const extent = file ? [...(file.events || []).flatMap(axis.span), axis.at(file.fault_start)].filter(Number.isFinite) : [];
  const yLog = scoresNeedLog(windows.map((w) => w.score), th);
  drawLineChart(root, {
    series: [{ points: windows.map((w) => [axis.x(w), w.score]), color: "#8a96a8", width: 1.5 }],
    hlines: [
      { y: th.clear, color: "var(--done)", label: `clear ${fmtNum(th.clear)}`, below: true, cls: "clear" },
      { y: th.warn, color: "var(--warn)", label: `warn ${fmtNum(th.warn)}`, below: true, cls: "warn" },
      { y: th.anomaly, color: "var(--fail)", label: `anomaly ${fmtNum(th.anomaly)}`, cls: "anomaly" },
    ].filter((h) => Number.isFinite(h.y)),
    xLabel: axis.label, xTime: axis.time, xExtent: extent, yLabel: yLog ? "score (log)" : "score", yLog, integerX: true,
    empty: "no scored windows", underlay: file ? underlay : null, decorate: drawPoints,
  });
  renderEventList(file);
  const event = file && (file.events || []).find((e) => e.id === App.test.event);
  if (event) renderEventBreakdown(st, file, event);
  else renderBreakdown(st, windows.find((w) => w.index === App.test.window));
}

function bars(title, values, limit) {
  const entries = Object.entries(values || {}).sort((a, b) => b[1] - a[1]);
  const shown = limit ? entries.slice(0, limit) : entries;
  const max = Math.max(...shown.map((e) => e[1]), 1e-12);
  const box = el("div", { class: "bars" }, el("h3", { text: limit && entries.length > limit ? `${title} (top ${limit} of ${entries.length})` : title }));
  shown.forEach(([k, v], i) => {
    box.append(el("div", { class: "bar-row", "data-name": k },
      el("span", { class: "bar-label", text: k, title: k }),
      el("span", { class: "bar-track" }, el("span", { class: `bar-fill${i === 0 ? " top" : ""}`, style: `display:block;width:${((v / max) * 100).toFixed(1)}%` })),
      el("span", { class: "bar-val", text: fmtNum(v, 3) })));
  });
  return box;
}

/* What drives a score (a window's or an event's): channels or axes, and frequency bands. */
function showContributors(st, contributions, bands) {
  const box = clear($("#breakdown"));
  const perAxis = st.contributor_kind === "axis";
  box.append(bars(perAxis ? "Per axis" : "Per channel", contributions, perAxis ? 0 : TOP_CONTRIBUTORS));
  if (bands) box.append(bars("Per frequency band", bands, 0));
}

function renderBreakdown(st, w) {
  const meta = $("#breakdown-meta");
  if (!w) {
    $("#breakdown-title").textContent = "Breakdown";
    meta.textContent = "";
    clear($("#breakdown")).append(el("p", { class: "muted", text: st ? "Click a window or an event in the timeline to see what drives its score." : "" }));
    return;
  }
  $("#breakdown-title").textContent = `Breakdown · window ${w.index}`;
  const span = typeof w.start === "number" ? `samples ${w.start}–${w.end}` : `${w.start} → ${w.end}`;
  meta.textContent = `${span} · score ${fmtNum(w.score)} · ${w.level}`;
  showContributors(st, w.contributions, w.bands);
}

/* How long after the labelled fault onset the event was raised (times only). */
function detectionDelay(file, e) {
  const delay = (parseTime(e.raised_at) - parseTime(file.fault_start)) / 1000;
  if (Number.isNaN(delay)) return "";
  return delay >= 0 ? ` (${fmtSeconds(delay)} after fault onset)` : ` (${fmtSeconds(-delay)} before fault onset)`;
}

function renderEventBreakdown(st, file, e) {
  $("#breakdown-title").textContent = eventSummary(e);
  $("#breakdown-meta").textContent = `${fmtPos(e.start)} → ${fmtPos(e.end)}${e.open ? " (still open)" : ""} · raised ${fmtPos(e.raised_at)}${detectionDelay(file, e)} · peak ${fmtNum(e.peak_score)} at window ${e.peak_window}`;
  showContributors(st, e.contributors, e.bands);
}

/* ------------------------------------------------------------------ live streams */
async function loadLiveStreams() { applyLiveStreams(await api("/api/live")); }

function applyLiveStreams(data) {
  const text = JSON.stringify(data);
  if (text === App.liveText) return;
  App.liveText = text;
  App.live = data;
  renderLiveStreams();
}

function fmtCount(n) { return Number.isFinite(n) ? n.toLocaleString("en-US") : "—"; }

/* Wall-clock stamps (``updated``) to the second, in UTC like the data's times. */
function clockSeconds(iso) {
  const ms = parseTime(iso);
  return Number.isNaN(ms) ? "—" : new Date(ms).toISOString().slice(11, 19);
}

function partsLabel(st) { return st.part_kind === "axis" ? "axes" : "channels"; }

function contributorChips(contributors) {
  const top = Object.entries(contributors || {}).sort((a, b) => b[1] - a[1]).slice(0, LIVE_TOP_PARTS);
  return el("span", { class: "config-chips contributors" },
    ...top.map(([k, v]) => el("span", { class: "chip", "data-name": k, title: `${k}: mean error ${fmtNum(v)}` }, `${k} `, el("b", { text: fmtNum(v, 3) }))));
}

/* A card per stream, built once: its chart keeps its size observer and its lists their
 * scroll positions while status updates arrive twice a second. */
function liveCard(name) {
  if (App.liveCards[name]) return App.liveCards[name];
  const parts = {
    head: el("div", { class: "monitor-head" }),
    meta: el("div", { class: "monitor-meta muted small-text" }),
    chart: svg("svg", { class: "chart monitor-chart", role: "img", "aria-label": `${name} live score timeline` }),
    body: el("div", { class: "monitor-body" }),
  };
  const legend = el("span", { class: "legend" }, el("i", { class: "pt normal" }), "normal ", el("i", { class: "pt warn" }), "warn ",
    el("i", { class: "pt anomaly" }), "anomaly ", el("i", { class: "ln thr-warn" }), el("i", { class: "ln thr-anomaly" }), "thr. ", el("i", { class: "span-key" }), "open event");
  parts.card = el("div", { class: "card monitor-card", "data-stream": name }, parts.head, parts.meta,
    el("div", { class: "card-head" }, el("h2", { text: "Score, latest windows" }), legend), parts.chart, parts.body);
  App.liveCards[name] = parts;
  return parts;
}

function dropLiveCard(name) {
  chartObserver.unobserve(App.liveCards[name].chart);
  App.liveCards[name].card.remove();
  delete App.liveCards[name];
}

function staleHint(st) {
  if (!st.stale) return null;
  // Next to the "updated" time, which says since when.
  const text = st.state !== "running" ? `scorer ${st.state || "not running"}` : "stale · no updates";
  return el("span", { class: "stale-hint", title: `status file ${st.file}`, text });
}

function renderLiveHead(parts, name, st) {
  const level = LEVEL_RANK[st.level] === undefined ? "na" : st.level;
  const last = st.last;
  const items = [el("h2", { text: st.title || name }),
    el("span", { class: `pill level-chip ${level}`, text: level === "na" ? "no score yet" : level }),
    last && Number.isFinite(last.score) ? el("span", { class: "monitor-score" }, "score ", el("b", { text: fmtNum(last.score, 3) })) : null,
    el("span", { class: "muted", text: `${name} · ${st.state || "unknown"}`, title: st.checkpoint ? `checkpoint ${st.checkpoint}` : null }),
    el("span", { class: "monitor-updated muted", text: `updated ${clockSeconds(st.updated)} UTC`, title: String(st.updated) }),
    staleHint(st)];
  clear(parts.head).append(...items.filter(Boolean));
  const src = st.source || {};
  clear(parts.meta).append(`${src.kind || "source"}${src.detail ? ` · ${src.detail}` : ""} `,
    el("span", { class: `conn ${src.connected ? "on" : "off"}`, text: src.connected ? "connected" : "disconnected" }),
    ` · ${fmtCount(st.rows)} rows · ${fmtCount(st.windows)} windows`);
  parts.meta.title = `${src.kind || ""} ${src.detail || ""}`.trim();
}

/* The latest windows against the warn and anomaly thresholds, open events shaded. */
function drawLiveTimeline(root, st) {
  const recent = (st.recent || []).filter((w) => Number.isFinite(w.score));
  const timed = recent.length > 0 && recent.every((w) => !Number.isNaN(parseTime(w.end)));
  const x = timed ? (w) => parseTime(w.end) : (w) => w.window;
  const th = st.thresholds || {};
  const yLog = scoresNeedLog(recent.map((w) => w.score), th);
  const spans = (scale) => {
    for (const e of st.open_events || []) {
      const from = timed ? parseTime(e.start) : e.start_window;
      const a = Number.isFinite(from) ? Math.max(scale.left, scale.sx(from)) : scale.left;
      root.append(svg("rect", { class: `event-span level-${e.level}`, x: a, y: scale.top, width: Math.max(3, scale.right - a), height: scale.bottom - scale.top, "data-event": e.id }));
    }
  };
  const r = recent.length > 300 ? 1.8 : 2.6; // the scorer keeps up to 600 windows
  const points = (scale) => {
    for (const w of recent) {
      const dot = svg("circle", { cx: scale.sx(x(w)), cy: scale.sy(w.score), r, class: `point level-${w.level}`, fill: LEVEL_COLOR[w.level] || "#888" });
      dot.append(svg("title", {}, `window ${w.window} · ${w.end} · score ${fmtNum(w.score)} (${w.level})`));
      root.append(dot);
    }
  };
  const day = timed ? new Date(x(recent[recent.length - 1])).toISOString().slice(0, 10) : "";
  drawLineChart(root, {
    series: [{ points: recent.map((w) => [x(w), w.score]), color: "#8a96a8", width: 1.2 }],
    hlines: [
      { y: th.warn, color: "var(--warn)", label: `warn ${fmtNum(th.warn)}`, below: true, cls: "warn" },
      { y: th.anomaly, color: "var(--fail)", label: `anomaly ${fmtNum(th.anomaly)}`, below: true, cls: "anomaly" },
    ].filter((h) => Number.isFinite(h.y)),
    xLabel: timed ? `time · ${day}` : "window", xTime: timed, integerX: !timed, yLabel: yLog ? "score (log)" : "score", yLog,
    empty: "no scored windows yet", underlay: spans, decorate: points,
  });
}

function liveTable(cls, headers, rows, emptyText) {
  const table = el("table", { class: `table ${cls}` }, el("thead", {}, el("tr", {}, ...headers.map(([h, c]) => el("th", { class: c || "", text: h })))));
  const body = el("tbody");
  body.append(...rows);
  if (!rows.length) body.append(el("tr", { class: "none" }, el("td", { colspan: headers.length, class: "muted", text: emptyText })));
  table.append(body);
  return table;
}

function openEventRow(e) {
  return el("tr", { class: `level-${e.level}`, "data-event": e.id },
    el("td", {}, el("span", { class: `pill ${e.level}`, text: e.level })),
    el("td", { class: "num", text: fmtPos(e.raised_at), title: String(e.raised_at) }),
    el("td", { class: "num", text: fmtPos(e.start), title: String(e.start) }),
    el("td", { class: "num", text: fmtEventLength(e), title: `${e.n_windows} windows` }),
    el("td", { class: "num", text: fmtNum(e.peak_score, 3) }),
    el("td", {}, contributorChips(e.contributors)));
}

function channelList(channels) {
  const all = Array.isArray(channels) ? channels : [];
  return all.length > 4 ? `${all.slice(0, 4).join(", ")} +${all.length - 4}` : all.join(", ") || "—";
}

function dqRow(d) {
  return el("tr", { "data-dq": d.id },
    el("td", {}, el("span", { class: "pill warn", text: d.check || "check" })),
    el("td", { class: "mono", text: channelList(d.channels), title: (d.channels || []).join(", ") }),
    el("td", { class: "dq-detail", text: d.detail || "", title: d.detail || "" }),
    el("td", { class: "num", text: fmtPos(d.start), title: String(d.start) }));
}

/* One events.jsonl line: when the data showed the transition, what it was, and why. */
function recentEventItem(line) {
  const e = line.event || {};
  const dq = line.kind === "data_quality";
  const at = line.transition === "raised" ? (dq ? e.start : e.raised_at) : e.end;
  const pill = line.transition === "cleared" ? "normal" : dq ? "warn" : e.level;
  return el("div", { class: "recent-item", "data-kind": line.kind, title: `written ${line.written || "—"}` },
    el("span", { class: "mono recent-time", text: at === undefined ? "—" : fmtPos(at) }),
    el("span", { class: `pill ${pill}`, text: line.transition }),
    dq ? el("span", {}, el("b", { text: `data quality · ${e.check}` }), el("span", { class: "muted", text: ` ${channelList(e.channels)}` }))
      : el("span", {}, el("b", { text: `${e.level} event ${e.id}` })),
    dq ? null : contributorChips(e.contributors));
}

function renderLiveBody(parts, st) {
  const scroll = parts.body.scrollTop;
  const recent = (st.recent_events || []).slice(-LIVE_RECENT_EVENTS).reverse();
  clear(parts.body).append(
    el("h3", { text: "Open events" }),
    liveTable("open-events", [["level"], ["raised", "num"], ["start", "num"], ["length", "num"], ["peak", "num"], [`top ${partsLabel(st)}`]],
      (st.open_events || []).map(openEventRow), "No open events."),
    el("h3", { text: "Data-quality events" }),
    liveTable("dq-events", [["check"], [partsLabel(st)], ["detail"], ["since", "num"]], (st.open_dq || []).map(dqRow), "No data-quality problems."),
    el("h3", { text: "Recent events" }),
    el("div", { class: "recent-events" }, ...(recent.length ? recent.map(recentEventItem) : [el("span", { class: "muted", text: "No events yet." })])));
  parts.body.scrollTop = scroll;
}

/* The tab button carries the worst level, so an alarm shows from any tab. */
function markLiveTab(streams) {
  const worst = streams.reduce((w, st) => (LEVEL_RANK[st.level] > LEVEL_RANK[w] ? st.level : w), "normal");
  const tab = $(".tabs button[data-tab='live']");
  tab.dataset.level = streams.length ? worst : "";
  tab.title = streams.length ? `Live scoring: ${streams.map((st) => `${st.title || st.stream} ${st.level || "—"}`).join(", ")}` : "Live scoring of running plants";
}

function renderLiveStreams() {
  const data = App.live || { streams: {} };
  const streams = data.streams || {};
  const entries = Object.entries(streams);
  const grid = $("#monitor");
  for (const name of Object.keys(App.liveCards)) if (!streams[name]) dropLiveCard(name);
  const empty = $("#monitor-empty");
  empty.hidden = entries.length > 0;
  if (!entries.length) {
    const dir = data.live_dir || "artifacts/live";
    clear(empty).append(el("b", { text: `No live scorer is writing to ${dir}.` }), el("br"), "Start one: ",
      el("code", { text: "python -m inference.live --config configs/live_local.yaml" }), " (or ", el("code", { text: "make demo-live" }), ").");
  }
  entries.forEach(([name, st], i) => {
    const parts = liveCard(name);
    const level = LEVEL_RANK[st.level] === undefined ? "na" : st.level;
    parts.card.className = `card monitor-card level-${level}${st.stale ? " stale" : ""}`;
    // In the server's (name) order; a card already in place is not moved (that would
    // reset its scroll position).
    if (grid.children[i] !== parts.card) grid.insertBefore(parts.card, grid.children[i] || null);
    renderLiveHead(parts, name, st);
    drawLiveTimeline(parts.chart, st);
    renderLiveBody(parts, st);
  });
  markLiveTab(entries.map(([name, st]) => Object.assign({ stream: name }, st)));
}

/* ------------------------------------------------------------------ wiring */
function renderState() {
  renderHeader();
  renderTypeFilter();
  buildGraph();
  renderChecklist();
  renderDecisionGate();
  renderLoss();
  renderArtifacts();
  renderTest();
}

function setupTabs() {
  document.querySelectorAll(".tabs button").forEach((b) => b.addEventListener("click", () => {
    document.querySelectorAll(".tabs button").forEach((x) => x.classList.toggle("active", x === b));
    document.querySelectorAll(".tab").forEach((t) => t.classList.toggle("active", t.id === `tab-${b.dataset.tab}`));
    if (b.dataset.tab === "training") { renderLoss(); buildGraph(); }
    if (b.dataset.tab === "history") renderComparison();
    if (b.dataset.tab === "test") renderTest();
    if (b.dataset.tab === "live") loadLiveStreams().catch(() => {});
  }));
  document.querySelectorAll("#test-stream button").forEach((b) => b.addEventListener("click", () => {
    App.test = { stream: b.dataset.stream, file: null, window: null, event: null };
    renderTest();
  }));
}

function setLive(mode, text) {
  $("#live").className = `live ${mode}`;
  $("#live-text").textContent = text;
}

function connectEvents() {
  if (!window.EventSource) { setLive("warn", "polling"); setInterval(() => { loadStatus(); loadState(); loadLiveStreams(); }, 3000); return; }
  const url = `/api/events${App.token ? `?token=${encodeURIComponent(App.token)}` : ""}`;
  const es = new EventSource(url);
  es.onopen = () => setLive("on", "live");
  es.onerror = () => setLive("warn", "reconnecting");
  es.addEventListener("status", (e) => { setLive("on", "live"); applyStatus(JSON.parse(e.data)); });
  es.addEventListener("state", () => { loadState().catch(() => {}); });
  es.addEventListener("runs", () => { loadRuns().catch(() => {}); });
  es.addEventListener("live", (e) => applyLiveStreams(JSON.parse(e.data)));
  App.events = es;
}

async function init() {
  App.token = readToken();
  setupTabs();
  setupGraphInteractions();
  $("#btn-train").addEventListener("click", () => startRun("train"));
  $("#btn-test").addEventListener("click", () => startRun("test"));
  $("#btn-stop").addEventListener("click", stopRun);
  $("#upload-form").addEventListener("submit", upload);
  $("#btn-upload-open").addEventListener("click", () => { uploadMessage(""); $("#upload-dialog").showModal(); });
  $("#btn-upload-close").addEventListener("click", () => $("#upload-dialog").close());
  let resizeTimer = null;
  window.addEventListener("resize", () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => { App.graph.key = ""; renderState(); renderComparison(); }, 150);
  });
  try {
    await loadLayout();
    await Promise.all([loadState(), loadStatus(), loadRuns()]);
    document.body.dataset.ready = "1";
  } catch (err) {
    setLive("warn", err.status === 401 ? "token needed" : "error");
    controlMessage(err.status === 401 ? "The server needs a token: open the URL it printed (…/#token=…)." : `Could not load: ${err.message}`, "error");
    return;
  }
  connectEvents();
}

init();
