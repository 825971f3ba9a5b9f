/**
 * The page `swarmctl web` serves: plain HTML, CSS and JavaScript (no build step, nothing
 * downloaded). It opens /events (server-sent events): a snapshot, then one change per object.
 */
export const WEB_PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>swarmd cluster</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
  body { font: 13px/1.35 system-ui, sans-serif; margin: 0; background: #f3f4f6; color: #111827; }
  header { padding: 8px 14px; background: #1f2937; color: #f9fafb; display: flex; gap: 16px; align-items: baseline; }
  header h1 { font-size: 15px; margin: 0; }
  #status.down { color: #fca5a5; }
  #services { padding: 6px 14px; display: flex; gap: 10px; flex-wrap: wrap; }
  .svc { padding: 2px 8px; border-radius: 10px; color: #fff; }
  #nodes { display: flex; gap: 10px; padding: 10px 14px; align-items: flex-start; overflow-x: auto; }
  .node { min-width: 190px; background: #fff; border: 2px solid #10b981; border-radius: 6px; }
  .node.down, .node.disconnected, .node.unknown { border-color: #dc2626; background: #fee2e2; }
  .node.drain .nodehead, .node.pause .nodehead { background: #fde68a; }
  .nodehead { padding: 6px 8px; border-bottom: 1px solid #e5e7eb; background: #ecfdf5; }
  .node.down .nodehead { background: #fecaca; }
  .hostname { font-weight: 600; }
  .meta { color: #4b5563; font-size: 12px; }
  .tasks { padding: 6px; display: flex; flex-direction: column; gap: 6px; }
  .task { border-left: 6px solid #999; background: #f9fafb; padding: 4px 6px; border-radius: 3px; }
  .task .name { font-weight: 600; }
  .task.running { background: #f0fdf4; }
  .task.failed, .task.rejected { background: #fef2f2; }
  .err { color: #b91c1c; font-size: 11px; }
</style>
</head>
<body>
<header><h1>swarmd</h1><span id="summary"></span><span id="status">connecting…</span></header>
<div id="services"></div>
<div id="nodes"></div>
<script>
"use strict";
const state = { nodes: new Map(), tasks: new Map(), services: new Map(), skew: 0 };
const palette = ["#2563eb", "#db2777", "#059669", "#d97706", "#7c3aed", "#0891b2", "#dc2626", "#65a30d", "#9333ea", "#ea580c"];
function colour(serviceId) {
  let h = 0;
  for (const c of serviceId) h = (h * 31 + c.charCodeAt(0)) >>> 0;
  return palette[h % palette.length];
}
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "style") e.style.cssText = v; else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c);
  return e;
}
function ago(ms) {
  if (!ms) return "";
  const s = Math.max(0, Math.round((Date.now() + state.skew - ms) / 1000));
  return s < 60 ? s + "s" : s < 3600 ? Math.round(s / 60) + "m" : Math.round(s / 3600) + "h";
}
function gib(b) { return (b / 1024 ** 3).toFixed(1) + " GiB"; }
const shown = (t) => t.desired === "running" || t.desired === "ready" || t.state === "running";
let queued = false;
function render() {
  queued = false;
  const tasks = [...state.tasks.values()].filter(shown);
  const running = tasks.filter((t) => t.state === "running").length;
  document.getElementById("summary").textContent = state.nodes.size + " nodes, " + state.services.size + " services, " + running + " tasks running";
  const svcBox = document.getElementById("services");
  svcBox.replaceChildren(...[...state.services.values()].sort((a, b) => a.name.localeCompare(b.name)).map((s) =>
    el("span", { class: "svc", "data-service": s.name, style: "background:" + colour(s.id) }, s.name + (s.rollout ? " — canary " + s.rollout : s.update ? " — update " + s.update + (s.updateMessage ? ": " + s.updateMessage : "") : ""))));
  const nodes = [...state.nodes.values()].sort((a, b) => (a.role === b.role ? a.hostname.localeCompare(b.hostname) : a.role === "manager" ? -1 : 1));
  document.getElementById("nodes").replaceChildren(...nodes.map((n) => {
    const mine = tasks.filter((t) => t.nodeId === n.id).sort((a, b) => a.service.localeCompare(b.service) || a.slot - b.slot);
    const cpu = mine.reduce((s, t) => s + t.cpus, 0), mem = mine.reduce((s, t) => s + t.memoryBytes, 0);
    const head = el("div", { class: "nodehead" },
      el("div", { class: "hostname" }, n.hostname),
      el("div", { class: "meta" }, n.role + (n.leader ? " (leader)" : "") + " · ", el("span", { class: "node-state" }, n.state), " · " + n.availability),
      el("div", { class: "meta" }, "CPU " + cpu.toFixed(2) + "/" + n.cpus + " · mem " + gib(mem) + "/" + gib(n.memoryBytes) + " reserved"));
    const cards = mine.map((t) => el("div", { class: "task " + t.state, "data-task": t.id, "data-state": t.state, style: "border-left-color:" + colour(t.serviceId) },
      el("div", { class: "name" }, t.service + (t.slot ? "." + t.slot : "") + (t.canary ? " (canary)" : "")),
      el("div", { class: "meta" }, t.image.split("/").pop()),
      el("div", { class: "meta" }, t.state + (t.health ? " (" + t.health + ")" : "") + " · " + ago(t.since)),
      ...(t.err ? [el("div", { class: "err" }, t.err)] : [])));
    return el("section", { class: "node " + n.state + " " + n.availability, "data-node": n.hostname, "data-state": n.state }, head, el("div", { class: "tasks" }, ...cards));
  }));
}
function later() { if (!queued) { queued = true; requestAnimationFrame(render); } }
function load(snap) {
  state.skew = snap.now - Date.now();
  for (const k of ["nodes", "tasks", "services"]) {
    state[k] = new Map(snap[k].map((x) => [x.id, x]));
  }
  later();
}
const events = new EventSource("/events");
const status = document.getElementById("status");
events.addEventListener("open", () => { status.textContent = "live"; status.className = ""; });
events.addEventListener("error", () => { status.textContent = "reconnecting…"; status.className = "down"; });
events.addEventListener("snapshot", (e) => load(JSON.parse(e.data)));
events.addEventListener("change", (e) => {
  const c = JSON.parse(e.data);
  const m = state[c.kind + "s"];
  if (c.removed) m.delete(c.view.id); else m.set(c.view.id, c.view);
  later();
});
setInterval(later, 5000); // ages only: the data comes pushed
</script>
</body>
</html>
`;
