// The live run page: one websocket, charts (uPlot) and a stream of samples.
// Model output is untrusted: it only ever reaches the page through textContent.
(function () {
  "use strict";
  const runId = JSON.parse(document.getElementById("run-id").textContent);
  let shownStatus = document.getElementById("run-status").textContent.trim();
  const PALETTE = ["#3b5bdb", "#e8590c", "#2b8a3e", "#c2255c", "#7048e8", "#1098ad", "#f59f00", "#5c940d", "#d6336c", "#495057"];
  const MAX_SAMPLES = 60;
  const series = {};          // name -> {x: [], t: [], y: []}
  const charts = {};          // group -> {plot, names}
  let paused = false;
  let shown = 0;

  function colour(name) {     // stable colour per series name
    let h = 0;
    for (const c of name) h = (h * 31 + c.charCodeAt(0)) >>> 0;
    return PALETTE[h % PALETTE.length];
  }
  // The curves people look at first (R1 paper, Figures 2 and 3) come first.
  const FIRST = ["reward", "accuracy", "response_length", "eval/accuracy", "kl", "clip_ratio", "entropy", "lr"];
  function rank(group) {
    const i = FIRST.indexOf(group);
    return i >= 0 ? i : FIRST.length;
  }
  function fmt(v) {
    if (v == null) return "";
    const a = Math.abs(v);
    return a !== 0 && (a < 1e-2 || a >= 1e5) ? v.toExponential(1) : +v.toPrecision(3) + "";
  }
  // Charts sit in panels by what they tell (the order people read them in).
  const PANELS = [
    ["Rewards", (g) => g.startsWith("reward")],
    ["Behaviours", (g) => g.startsWith("behaviour/") || g.startsWith("alarm/")],
    ["Accuracy and length", (g) => /accuracy|pass@|cons@|response_length|length|truncat/.test(g)],
    ["Policy", (g) => /^(kl|clip|entropy|policy|advantage|ratio|mismatch|tis)/.test(g)],
    ["Optimizer", (g) => /^(lr|grad|loss|train\/|eval\/loss|epoch)/.test(g)],
    ["Experts (MoE)", (g) => g.startsWith("moe/")],
    ["System", (g) => /time|tokens_per_s|memory|throughput/.test(g)],
  ];
  function panelFor(group) {
    const i = PANELS.findIndex(([, test]) => test(group));
    const name = i >= 0 ? PANELS[i][0] : "Other";
    const holder = document.getElementById("charts");
    let panel = holder.querySelector(`.panel[data-panel="${name}"]`);
    if (!panel) {
      panel = el("section", "panel");
      panel.dataset.panel = name;
      panel.dataset.order = i >= 0 ? i : PANELS.length;
      panel.appendChild(el("h3", "muted", name));
      panel.appendChild(el("div", "grid panel-charts"));
      const after = Array.from(holder.children).find((c) => +c.dataset.order > +panel.dataset.order);
      holder.insertBefore(panel, after || null);
    }
    return panel.querySelector(".panel-charts");
  }
  // A y range fitted to the data, padded; a flat series gets a small band around its value.
  function fitted(u, min, max) {
    if (min == null || max == null) return [0, 1];
    if (min === max) { const pad = Math.abs(min) * 0.1 || 1; return [min - pad, max + pad]; }
    const pad = (max - min) * 0.08;
    return [min - pad, max + pad];
  }
  function groupOf(name) {    // reward/format/mean and reward/format/std share a chart
    const parts = name.split("/");
    if (parts[0] === "reward" && parts.length > 2) return "reward/" + parts[1];
    if (parts[0] === "response_length") return "response_length";
    if (parts[0] === "time") return "time";  // where a step's seconds go, on one chart
    if (parts[0] === "moe" && /^expert\d+$/.test(parts[2] || "")) return `moe/${parts[1]}/tokens per expert`;
    return name.replace(/\/(mean|max|min|std)$/, "");
  }
  function smooth(ys, alpha) {
    if (!alpha) return ys;
    let last = null;
    return ys.map((y) => (y == null ? y : (last = last == null ? y : alpha * last + (1 - alpha) * y)));
  }
  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text != null) e.textContent = text;
    return e;
  }

  function addPoints(points) {
    const now = Date.now() / 1000;
    const touched = new Set();
    for (const p of points) {
      const s = (series[p.name] = series[p.name] || { x: [], t: [], y: [] });
      const i = s.x.indexOf(p.step);
      if (i >= 0) { s.y[i] = p.value; } else { s.x.push(p.step); s.t.push(p.time || now); s.y.push(p.value); }
      touched.add(groupOf(p.name));
    }
    touched.forEach(redraw);
  }

  function redraw(group) {
    const names = Object.keys(series).filter((n) => groupOf(n) === group).sort();
    const byTime = document.getElementById("xaxis").value === "time";
    const alpha = parseFloat(document.getElementById("smoothing").value);
    const xs = Array.from(new Set(names.flatMap((n) => (byTime ? series[n].t : series[n].x)))).sort((a, b) => a - b);
    const data = [xs].concat(names.map((n) => {
      const s = series[n], idx = new Map((byTime ? s.t : s.x).map((x, i) => [x, i]));
      return smooth(xs.map((x) => (idx.has(x) ? s.y[idx.get(x)] : null)), alpha);
    }));
    let chart = charts[group];
    if (chart && chart.names.join() !== names.join()) { chart.plot.destroy(); chart.box.remove(); chart = null; }
    if (!chart) {
      const box = el("div", "card chart");
      box.dataset.series = group;
      box.dataset.rank = rank(group);
      const title = box.appendChild(el("div", "muted", group));
      if (group.startsWith("behaviour/")) {  // the samples behind the curve, one click away
        const link = el("a", "samples-link", " samples");
        link.href = `/runs/${runId}/explore/?behaviour=${encodeURIComponent(group.slice("behaviour/".length))}`;
        title.appendChild(link);
      }
      const holder = panelFor(group);
      const after = Array.from(holder.children).find((c) => +c.dataset.rank > rank(group));
      holder.insertBefore(box, after || null);
      const opts = {
        width: 360, height: 200, scales: { x: { time: byTime }, y: { range: fitted } },
        // steps are whole numbers: no 0.5 ticks on a young run
        axes: [byTime ? {} : { incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000] },
               { values: (u, vals) => vals.map(fmt), size: 60 }],
        series: [{}].concat(names.map((n) => ({ label: n, stroke: colour(n), spanGaps: true, width: 1.5 }))),
        legend: { show: names.length > 1 },
      };
      chart = charts[group] = { plot: new uPlot(opts, data, box), names, box };
    } else {
      chart.plot.setData(data);
    }
  }
  function redrawAll() { Object.values(charts).forEach((c) => { c.plot.destroy(); c.box.remove(); });
    for (const k of Object.keys(charts)) delete charts[k];
    document.querySelectorAll("#charts .panel").forEach((p) => p.remove());
    new Set(Object.keys(series).map(groupOf)).forEach(redraw); }

  function rewardBadges(rewards) {
    const box = el("span");
    for (const [name, value] of Object.entries(rewards || {})) {
      const b = el("span", "badge " + (value >= 0.5 ? "reward-hi" : "reward-lo"), name + " " + Number(value).toFixed(2));
      box.appendChild(b);
    }
    return box;
  }
  function promptBox(prompt) {   // long templates fold; the question (the end) stays visible
    const box = el("details", "prompt");
    let tail = prompt;
    if (prompt.length > 140) {  // the last ~140 characters, starting at a word
      tail = prompt.slice(-140);
      const space = tail.search(/\s/);
      if (space >= 0 && space < 40) tail = tail.slice(space + 1);
      tail = "…" + tail;
    }
    box.appendChild(el("summary", null, tail));
    if (prompt.length > 140) box.appendChild(el("div", null, prompt));
    return box;
  }
  function showRollout(r) {
    shown += 1;
    document.getElementById("sample-count").textContent = shown + " received";
    if (paused) return;
    const card = el("div", "sample");
    card.dataset.rolloutId = r.id;
    const head = el("div", "row");
    head.appendChild(el("span", "badge", "step " + r.step));
    head.appendChild(rewardBadges(r.rewards));
    card.appendChild(head);
    card.appendChild(promptBox(r.prompt));
    if (r.reasoning) card.appendChild(el("div", "reasoning", r.reasoning));
    card.appendChild(el("div", "answer", r.final_answer != null ? r.final_answer : r.completion));
    const list = document.getElementById("samples");
    list.prepend(card);
    while (list.children.length > MAX_SAMPLES) list.lastChild.remove();
  }
  function showTokens(deltas) {
    if (paused) return;
    const box = document.getElementById("live-streams");
    for (const d of deltas) {
      let card = box.querySelector('[data-stream="' + CSS.escape(d.stream) + '"]');
      if (!card) {
        card = el("div", "sample");
        card.dataset.stream = d.stream;
        card.appendChild(promptBox(d.prompt || ""));
        card.appendChild(el("div", "reasoning live-text", ""));
        box.prepend(card);
        while (box.children.length > 4) box.lastChild.remove();
      }
      const text = card.querySelector(".live-text");
      text.textContent += d.text;
      text.scrollTop = text.scrollHeight;
      if (d.done) card.classList.add("done");
    }
  }
  function showStatus(m) {
    const badge = document.getElementById("run-status");
    const status = m.shown || m.status;  // "blocked" / "waiting" as the page words them
    if (status) { badge.textContent = status; badge.className = "badge status-" + status; }
    if (m.step != null || m.current_step != null) document.getElementById("run-step").textContent = m.step != null ? m.step : m.current_step;
    const total = m.total != null ? m.total : m.total_steps;
    if (total) document.getElementById("run-total").textContent = total;
    const step = parseInt(document.getElementById("run-step").textContent, 10);
    const tot = parseInt(document.getElementById("run-total").textContent, 10);
    if (tot) document.getElementById("run-progress").style.width = Math.min(100, (100 * step) / tot) + "%";
    if (m.eta_s != null) document.getElementById("run-eta").textContent = "ETA " + Math.round(m.eta_s) + " s";
    // A run that ended while this page showed it: reload to show resume buttons, errors,
    // checkpoints. The feed's first frame repeats the current status, hence the comparison.
    if (m.type === "status" && ["succeeded", "failed", "cancelled", "blocked"].includes(status) && status !== shownStatus) {
      setTimeout(() => window.location.reload(), 800);
    }
    if (m.status) shownStatus = m.status;
  }

  const handlers = {
    rollout: (m) => showRollout(m.rollout),
    rollouts: (m) => m.rollouts.forEach(showRollout),
    metrics: (m) => addPoints(m.points),
    tokens: (m) => showTokens(m.deltas),
    progress: showStatus,
    status: showStatus,
    log: (m) => {
      const box = document.getElementById("run-log");
      box.textContent = (box.textContent + m.line + "\n").split("\n").slice(-6).join("\n");
    },
  };
  function connect() {
    const proto = location.protocol === "https:" ? "wss://" : "ws://";
    const ws = new WebSocket(proto + location.host + "/ws/runs/" + runId + "/");
    ws.onmessage = (e) => { const m = JSON.parse(e.data); (handlers[m.type] || (() => {}))(m); };
    ws.onclose = () => setTimeout(connect, 2000);
    window.ponderSocket = ws;
  }

  document.getElementById("pause-stream").addEventListener("click", (e) => {
    paused = !paused;
    e.target.textContent = paused ? "Resume stream" : "Pause";
  });
  document.getElementById("smoothing").addEventListener("input", () => new Set(Object.keys(series).map(groupOf)).forEach(redraw));
  document.getElementById("xaxis").addEventListener("change", redrawAll);

  fetch("/runs/" + runId + "/metrics.json", { credentials: "same-origin" })
    .then((r) => r.json())
    .then((body) => {
      const points = [];
      for (const [name, pts] of Object.entries(body.series)) for (const [step, value] of pts) points.push({ name, step, value });
      addPoints(points);
    })
    .finally(connect);
  fetch("/api/v1/runs/" + runId + "/rollouts?limit=20", { credentials: "same-origin" })
    .then((r) => r.json())
    .then((body) => (body.items || []).reverse().forEach(showRollout));
})();
