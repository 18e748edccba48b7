"""The monitoring page (``GET /monitoring``): one self-contained HTML document, charts drawn as SVG.

Charts, on one time axis: requests per second, requests, failed requests, response time, replica
CPU (cores used, and the quota) and memory (and the limit), request and response size; for all
replicas summed or the one chosen.

The page itself holds no data; its script reads ``POST /metrics/technical`` with the API key the
user enters (or passes in the URL fragment, ``#key=...&model=...``, which browsers never send to
a server), so every figure is behind the key's project role. No external script or font: the
proxy may run where nothing else is reachable. Each chart keeps its points in ``data-points``
(JSON) for tests and scrapers.
"""

PAGE = b"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>cmlplan monitoring</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font:14px system-ui,sans-serif;margin:16px;color:#222;background:#fafafa}
form{display:flex;gap:8px;flex-wrap:wrap;align-items:end;margin-bottom:12px}
label{display:flex;flex-direction:column;font-size:12px;color:#555}
input,select,button{font:inherit;padding:4px 6px}
#status{margin:6px 0;color:#555}#status.error{color:#b00020}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(420px,1fr));gap:12px}
.chart{background:#fff;border:1px solid #ddd;border-radius:6px;padding:8px}
.chart h2{font-size:13px;margin:0 0 4px}.legend{font-size:11px;color:#555}
svg{width:100%;height:160px}
</style></head><body>
<h1>cmlplan monitoring</h1>
<form id="controls">
<label>API key<input id="key" type="password" autocomplete="off" size="28"></label>
<label>Model<input id="model" placeholder="model.project/name" size="28"></label>
<label>Replica<select id="replica"><option value="">all</option></select></label>
<label>Range<select id="range">
<option value="900">15 minutes</option><option value="3600" selected>1 hour</option>
<option value="21600">6 hours</option><option value="86400">24 hours</option><option value="604800">7 days</option>
</select></label>
<button id="show" type="submit">Show</button></form>
<div id="status">Enter an API key and a model.</div>
<div class="grid" id="charts"></div>
<script>
"use strict";
const CHARTS = [
  ["rps", "Requests per second", [["requests_per_second", "req/s"]]],
  ["requests", "Requests", [["requests", "requests"]]],
  ["failures", "Failed requests", [["failures", "failed"]]],
  ["latency", "Response time (ms)", [["p50_ms", "p50"], ["p95_ms", "p95"], ["p99_ms", "p99"], ["mean_ms", "mean"]]],
  ["cpu", "Replica CPU (cores)", [["cpu_cores", "used"], ["cpu_limit_cores", "limit"]]],
  ["memory", "Replica memory (MiB)", [["memory_mib", "used"], ["memory_limit_mib", "limit"]]],
  ["request_bytes", "Request size (bytes)", [["request_bytes", "bytes"]]],
  ["response_bytes", "Response size (bytes)", [["response_bytes", "bytes"]]],
];
const COLORS = ["#1565c0", "#c62828", "#2e7d32", "#6a1b9a"];
const $ = (id) => document.getElementById(id);
const fragment = new URLSearchParams(location.hash.slice(1));
for (const name of ["key", "model", "replica", "range"]) {
  const value = fragment.get(name) || sessionStorage.getItem("cmlplan." + name);
  if (value && name !== "replica") $(name).value = value;
}
if (location.hash) history.replaceState(null, "", location.pathname);  // the key leaves the address bar

const USAGE = ["cpu_cores", "cpu_limit_cores", "memory_bytes", "memory_limit_bytes"];
function merge(cells) {  // one point per time: counts and usage summed, times weighted by requests
  const byTime = new Map();
  for (const c of cells) {
    const t = byTime.get(c.start_ms) || {start_ms: c.start_ms, resolution_ms: c.resolution_ms, requests: 0,
      failures: 0, request_bytes: 0, response_bytes: 0, requests_per_second: 0, _w: {},
      cpu_cores: null, cpu_limit_cores: null, memory_bytes: null, memory_limit_bytes: null};
    for (const k of ["requests", "failures", "request_bytes", "response_bytes", "requests_per_second"]) t[k] += c[k];
    for (const k of USAGE) if (c[k] !== null && c[k] !== undefined) t[k] = (t[k] || 0) + c[k];
    for (const k of ["p50_ms", "p95_ms", "p99_ms", "mean_ms"]) if (c[k] !== null) {
      const w = t._w[k] || [0, 0]; w[0] += c[k] * c.requests; w[1] += c.requests; t._w[k] = w;
    }
    byTime.set(c.start_ms, t);
  }
  return [...byTime.values()].sort((a, b) => a.start_ms - b.start_ms).map((t) => {
    for (const k of ["p50_ms", "p95_ms", "p99_ms", "mean_ms"]) t[k] = t._w[k] ? t._w[k][0] / t._w[k][1] : null;
    t.memory_mib = t.memory_bytes === null ? null : +(t.memory_bytes / 1048576).toFixed(1);
    t.memory_limit_mib = t.memory_limit_bytes === null ? null : +(t.memory_limit_bytes / 1048576).toFixed(1);
    delete t._w; return t;
  });
}

function chart(id, title, series, points, start, end) {
  const W = 400, H = 140, P = 30;
  const max = Math.max(1e-9, ...points.flatMap((p) => series.map(([k]) => p[k] ?? 0)));
  const x = (t) => P + (W - P - 4) * (t - start) / Math.max(1, end - start);
  const y = (v) => H - 16 - (H - 26) * v / max;
  let svg = `<svg viewBox="0 0 ${W} ${H}" role="img" aria-label="${title}">`;
  svg += `<line x1="${P}" y1="${H - 16}" x2="${W - 4}" y2="${H - 16}" stroke="#999"/>`;
  svg += `<text x="2" y="14" font-size="10">${+max.toPrecision(3)}</text><text x="2" y="${H - 18}" font-size="10">0</text>`;
  for (const t of [start, (start + end) / 2, end]) {
    const label = new Date(t).toISOString().slice(11, 16);
    svg += `<text x="${Math.min(W - 30, x(t) - 12)}" y="${H - 2}" font-size="10">${label}</text>`;
  }
  series.forEach(([key], i) => {
    const pts = points.filter((p) => p[key] !== null && p[key] !== undefined);
    if (!pts.length) return;
    svg += `<polyline fill="none" stroke="${COLORS[i]}" stroke-width="1.5" points="${pts.map((p) => x(p.start_ms) + "," + y(p[key])).join(" ")}"/>`;
    for (const p of pts) svg += `<circle cx="${x(p.start_ms)}" cy="${y(p[key])}" r="2" fill="${COLORS[i]}"><title>${p[key]}</title></circle>`;
  });
  svg += "</svg>";
  const data = points.map((p) => Object.fromEntries([["t", p.start_ms], ...series.map(([k]) => [k, p[k]])]));
  const legend = series.map(([, label], i) => `<span style="color:${COLORS[i]}">&#9632; ${label}</span>`).join(" ");
  return `<div class="chart" id="chart-${id}" data-points='${JSON.stringify(data)}'><h2>${title}</h2>${svg}<div class="legend">${legend}</div></div>`;
}

async function show(event) {
  if (event) event.preventDefault();
  const key = $("key").value.trim(), model = $("model").value.trim();
  const replica = $("replica").value, range = +$("range").value;
  if (!key || !model) return;
  for (const name of ["key", "model", "range"]) sessionStorage.setItem("cmlplan." + name, $(name).value);
  const end = Date.now(), start = end - range * 1000;
  const status = $("status");
  status.className = ""; status.textContent = "Loading...";
  let answer;
  try {
    const reply = await fetch("/metrics/technical", {method: "POST",
      headers: {"Content-Type": "application/json", "Authorization": "Bearer " + key},
      body: JSON.stringify({model, start_timestamp_ms: start, end_timestamp_ms: end, replica: replica || null})});
    answer = await reply.json();
    if (!reply.ok) throw new Error(Object.entries(answer.errors || {}).map(([c, m]) => c + ": " + m).join("; ") || "HTTP " + reply.status);
  } catch (error) {
    status.className = "error"; status.textContent = String(error.message || error); return;
  }
  const cells = answer.cells;
  if (!replica) {
    const names = [...new Set(cells.map((c) => c.replica))].sort();
    $("replica").innerHTML = '<option value="">all</option>' + names.map((n) => `<option>${n}</option>`).join("");
  }
  const points = merge(cells);
  const total = points.reduce((s, p) => s + p.requests, 0);
  status.textContent = `${model}: ${total} requests, ${points.reduce((s, p) => s + p.failures, 0)} failed, ` +
    `${replica || "all replicas"}, since ${new Date(start).toISOString().slice(0, 16).replace("T", " ")} UTC`;
  status.dataset.total = total;
  $("charts").innerHTML = CHARTS.map(([id, title, series]) => chart(id, title, series, points, start, end)).join("");
  document.body.dataset.loaded = "true";
}
$("controls").addEventListener("submit", show);
show();
</script></body></html>
"""
