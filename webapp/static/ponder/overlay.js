// The runs overlay: several runs' curves per metric (uPlot), or per group of runs sharing a
// config value, their mean with a min–max or ±std band. The server downsamples
// (/runs/overlay/data.json); this file only draws. Names reach the page through textContent.
(function () {
  "use strict";
  const PALETTE = ["#3b5bdb", "#e8590c", "#2b8a3e", "#c2255c", "#7048e8", "#1098ad", "#f59f00", "#5c940d", "#d6336c", "#495057"];
  const params = new URLSearchParams(location.search);
  const $ = (id) => document.getElementById(id);
  let data = null;
  let charts = [];

  function colour(key) {      // stable: the same run or group gets the same colour on every visit
    let h = 0;
    for (const c of key) h = (h * 31 + c.charCodeAt(0)) >>> 0;
    return PALETTE[h % PALETTE.length];
  }
  function fade(hex, alpha) {
    const n = parseInt(hex.slice(1), 16);
    return "rgba(" + (n >> 16) + "," + ((n >> 8) & 255) + "," + (n & 255) + "," + alpha + ")";
  }
  function smooth(ys, alpha) {
    if (!alpha) return ys;
    let last = null;
    return ys.map((y) => (y == null ? y : (last = last == null ? y : alpha * last + (1 - alpha) * y)));
  }
  function fmt(v) {
    if (v == null) return "";
    const a = Math.abs(v);
    return a !== 0 && (a < 1e-2 || a >= 1e5) ? v.toExponential(1) : +v.toPrecision(3) + "";
  }
  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text != null) e.textContent = text;
    return e;
  }

  function query() {
    const q = new URLSearchParams();
    params.getAll("runs").forEach((r) => q.append("runs", r));
    params.getAll("metric").forEach((m) => q.append("metric", m));
    if (params.get("group_by")) q.set("group_by", params.get("group_by"));
    if (params.get("points")) q.set("points", params.get("points"));
    return q;
  }
  function load() {
    const q = query();
    history.replaceState(null, "", "?" + q.toString());
    $("overlay-status").textContent = "Loading…";
    fetch("/runs/overlay/data.json?" + q.toString(), { credentials: "same-origin" })
      .then((r) => r.json().then((body) => ({ ok: r.ok, body })))
      .then(({ ok, body }) => {
        if (!ok) { $("overlay-status").textContent = (body.errors || ["could not load"]).join("; "); return; }
        data = body;
        $("overlay-status").textContent = "";
        showControls();
        draw();
      });
  }

  function showControls() {
    const box = $("metrics");
    box.replaceChildren();
    for (const name of data.metrics) {
      const label = el("label");
      const input = el("input");
      input.type = "checkbox";
      input.value = name;
      input.checked = data.shown.includes(name);
      input.addEventListener("change", () => {
        const chosen = Array.from(box.querySelectorAll("input:checked")).map((i) => i.value);
        params.delete("metric");
        chosen.forEach((m) => params.append("metric", m));
        load();
      });
      label.append(input, " " + name);
      box.appendChild(label);
    }
    if (!data.metrics.length) box.appendChild(el("span", "muted", "These runs have logged no metrics yet."));
    $("config-keys").replaceChildren(...data.config_keys.map((k) => { const o = el("option"); o.value = k; return o; }));
    for (const run of data.runs) {
      const row = document.querySelector('tr[data-run="' + run.id + '"]');
      if (!row) continue;
      const key = data.group_by ? "group:" + run.group : "run:" + run.id;
      row.querySelector(".swatch").style.background = colour(key);
      row.querySelector(".group").textContent = data.group_by ? run.group : "";
    }
  }

  function runLines(chart, alpha) {
    const out = { series: [], data: [] };
    for (const run of data.runs) {
      out.series.push({ label: "#" + run.id + " " + run.name, stroke: colour("run:" + run.id), width: 1.5, spanGaps: true });
      out.data.push(smooth(chart.runs[String(run.id)].mean, alpha));
    }
    return out;
  }
  function groupLines(chart, alpha) {   // per group: mean, then upper and lower edge of its band
    const out = { series: [], data: [], bands: [] };
    const std = $("band").value === "std";
    for (const [label, g] of Object.entries(chart.groups)) {
      const c = colour("group:" + label);
      const mean = smooth(g.mean, alpha);
      const spread = std ? smooth(g.std, alpha) : null;
      const hi = std ? mean.map((m, i) => (m == null ? null : m + spread[i])) : smooth(g.max, alpha);
      const lo = std ? mean.map((m, i) => (m == null ? null : m - spread[i])) : smooth(g.min, alpha);
      const base = out.series.length + 1;   // uPlot's series 0 is x
      const runs = g.runs.length === 1 ? "1 run" : g.runs.length + " runs";
      out.series.push({ label: data.group_by + " = " + label + " (" + runs + ")", stroke: c, width: 2, spanGaps: true },
        { label: label + " high", stroke: fade(c, 0.3), width: 1, spanGaps: true, edge: true },
        { label: label + " low", stroke: fade(c, 0.3), width: 1, spanGaps: true, edge: true });
      out.data.push(mean, hi, lo);
      out.bands.push({ series: [base + 1, base + 2], fill: fade(c, 0.15) });
    }
    return out;
  }

  function draw() {
    charts.forEach((c) => c.destroy());
    charts = [];
    const holder = $("charts");
    holder.replaceChildren();
    const alpha = parseFloat($("smoothing").value);
    for (const name of data.shown) {
      const chart = data.charts[name];
      const lines = data.group_by ? groupLines(chart, alpha) : runLines(chart, alpha);
      const box = el("div", "card chart");
      box.dataset.metric = name;
      box.appendChild(el("div", "muted", name));
      holder.appendChild(box);
      const opts = {
        width: Math.max(320, box.clientWidth - 32), height: 260, scales: { x: { time: false } },
        axes: [{}, { values: (u, vals) => vals.map(fmt), size: 60 }],
        series: [{ label: "step" }].concat(lines.series), bands: lines.bands || [],
      };
      const plot = new uPlot(opts, [chart.x].concat(lines.data), box);
      // A band's two edges stay out of the legend: its mean's entry names the group.
      plot.root.querySelectorAll(".u-legend .u-series").forEach((row, i) => {
        if (i > 0 && lines.series[i - 1].edge) row.style.display = "none";
      });
      charts.push(plot);
    }
  }

  $("group-by").addEventListener("change", (e) => {
    if (e.target.value.trim()) params.set("group_by", e.target.value.trim()); else params.delete("group_by");
    load();
  });
  $("points").value = params.get("points") || "500";
  $("points").addEventListener("change", (e) => { params.set("points", e.target.value); load(); });
  $("smoothing").addEventListener("input", () => data && draw());
  $("band").addEventListener("change", () => data && draw());
  load();
})();
