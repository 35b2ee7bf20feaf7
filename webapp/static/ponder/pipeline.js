// The pipeline page keeps itself current: each stage's status, progress and time, every 3 s
// while anything runs or waits; the page reloads when the set of actions changes (a stage
// ended), unless someone is typing new settings.
const graph = document.getElementById("pipeline-graph");
const stateBadge = document.getElementById("pipeline-state");

function duration(seconds) {
  if (seconds === null || seconds === "" || seconds === undefined) return "";
  const s = Math.round(Number(seconds));
  if (s < 60) return `· ${s} s`;
  if (s < 3600) return `· ${Math.floor(s / 60)} min ${s % 60} s`;
  return `· ${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

function showTimes() {
  for (const el of graph.querySelectorAll(".stage-time")) el.textContent = duration(el.dataset.seconds);
}

async function refresh() {
  const response = await fetch(graph.dataset.statusUrl, { headers: { Accept: "application/json" } });
  if (!response.ok) return;
  const data = await response.json();
  let ended = false;
  for (const stage of data.stages) {
    const node = graph.querySelector(`[data-run="${stage.id}"]`);
    if (!node) continue;
    const status = node.querySelector(".stage-status");
    if (status.textContent !== stage.status) {
      ended = ended || ["succeeded", "failed", "cancelled", "blocked"].includes(stage.status);
      status.textContent = stage.status;
      node.className = `stage-node status-${stage.status}`;
    }
    node.querySelector(".stage-progress").textContent = stage.total ? `· ${stage.step}/${stage.total}` : "";
    node.querySelector(".stage-time").dataset.seconds = stage.duration_s ?? "";
  }
  showTimes();
  const typing = document.activeElement && document.activeElement.id === "resume-config";
  if (stateBadge.textContent !== data.state || ended) {
    stateBadge.textContent = data.state;
    stateBadge.className = `badge status-${data.state}`;
    if (!typing) window.location.reload();
  }
}

showTimes();
if (["running", "waiting"].includes(stateBadge.textContent.trim())) setInterval(refresh, 3000);

// The end-to-end comparison's table (server-rendered, escaped), fetched into the page and
// refreshed while it samples.
const figures = document.getElementById("pipeline-figures");
async function showFigures() {
  const response = await fetch(figures.dataset.url, { headers: { Accept: "text/html" } });
  if (!response.ok) return;
  figures.innerHTML = await response.text();
  if (figures.querySelector(".status-queued, .status-running")) setTimeout(showFigures, 5000);
}
if (figures) showFigures();
