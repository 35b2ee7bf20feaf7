// The labelling page: keyboard-driven, one queue item at a time, the next one prefetched.
// Model text is untrusted: it only ever reaches the page through textContent.
(function () {
  "use strict";

  // The explorer's filter: blank fields stay out of the address (shorter, shareable links).
  const filterForm = document.getElementById("explorer-filter");
  if (filterForm) {
    filterForm.addEventListener("submit", () => {
      for (const field of filterForm.elements) {
        if (field.name && field.value === "") field.disabled = true;
      }
    });
    window.addEventListener("pageshow", () => { for (const field of filterForm.elements) field.disabled = false; });
  }

  // The step browser: one step's GRPO groups at a time, the slider (or its arrow keys) moving it.
  const slider = document.getElementById("step-slider");
  if (slider) {
    const shown = document.getElementById("step-shown");
    slider.addEventListener("input", () => { shown.textContent = slider.value; });
    slider.addEventListener("change", () => {
      const params = new URLSearchParams(window.location.search);
      params.set("step_min", slider.value);
      params.set("step_max", slider.value);
      params.delete("cursor");
      params.delete("sort");  // newest: a step's samples grouped by prompt, with advantages
      window.location.search = params.toString();
    });
  }

  // The explorer's total: counted after the page loads (a slow count never holds it up).
  const count = document.getElementById("match-count");
  if (count) {
    fetch(count.dataset.url, {headers: {Accept: "application/json"}})
      .then((r) => r.json())
      .then((data) => {
        if (data.count === null || data.count === undefined) {
          count.textContent = data.error ? "" : "Too many to count quickly; ";
        } else {
          const over = data.count > data.cap;
          count.textContent = `${over ? "Over " + data.cap.toLocaleString() : data.count.toLocaleString()} matching · `;
        }
        count.dataset.state = "counted";
      })
      .catch(() => { count.dataset.state = "failed"; });
  }

  const root = document.getElementById("labeller");
  if (!root) return;
  const base = root.dataset.base; // /review/queues/<id>/
  const canLabel = root.dataset.canLabel === "1";
  const csrf = document.querySelector("[name=csrfmiddlewaretoken]").value;
  const $ = (id) => document.getElementById(id);
  const verdictButtons = Array.from(document.querySelectorAll("[data-verdict]"));
  const tagButtons = Array.from(document.querySelectorAll("[data-tag]"));
  const cache = new Map(); // position -> item JSON
  let item = JSON.parse($("item-data").textContent);
  let state = { verdict: null, tags: new Set() };

  // Direction controls (U+202E ...) could make text read differently from what it says.
  const BIDI = /[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;
  const reveal = (s) => String(s == null ? "" : s).replace(BIDI,
    (c) => "\u27e8U+" + c.codePointAt(0).toString(16).toUpperCase().padStart(4, "0") + "\u27e9");
  const setText = (id, value) => { $(id).textContent = reveal(value); };
  const fmt = (x, digits = 3) => (typeof x === "number" ? x.toFixed(digits) : "—");

  function say(message, isError = false) {
    const status = $("status");
    status.textContent = message;
    status.classList.toggle("error", isError);
  }

  function renderRewards(rollout) {
    const body = $("item-rewards");
    body.replaceChildren();
    const rows = Object.entries(rollout.rewards || {}).concat([["total", rollout.reward], ["advantage", rollout.advantage]]);
    for (const [name, value] of rows) {
      const tr = document.createElement("tr");
      const th = document.createElement("th");
      const td = document.createElement("td");
      th.textContent = reveal(name);
      td.textContent = fmt(value);
      tr.append(th, td);
      body.append(tr);
    }
  }

  function renderOthers(data) {
    const box = $("item-others");
    box.replaceChildren();
    if (!data.others.length) return;
    const head = document.createElement("div");
    head.textContent = "Other annotators" + (data.agreement == null ? "" : " · agreement " + fmt(data.agreement, 2)) + ":";
    box.append(head);
    for (const other of data.others) {
      const line = document.createElement("div");
      line.textContent = reveal(other.user + ": " + other.verdict + (other.tags.length ? " · " + other.tags.join(", ") : "")
        + (other.note ? " · " + other.note : ""));
      box.append(line);
    }
  }

  function render(data) {
    item = data;
    cache.set(data.position, data);
    const r = data.rollout;
    setText("pos", data.position);
    setText("total", data.total);
    setText("item-meta", "run #" + r.run_id + " · step " + r.step + " · sample " + r.sample_index + " · reward "
      + fmt(r.reward) + " · advantage " + fmt(r.advantage, 2) + " (group of " + r.group_size + ") · "
      + r.token_count + " tokens · " + (r.finish_reason || "—"));
    $("item-history").href = data.history_url;
    setText("item-prompt", r.prompt);
    setText("item-reasoning", r.reasoning);
    setText("item-reasoning-size", r.reasoning ? "· " + r.reasoning.length + " chars" : "(none)");
    setText("item-answer", r.answer);
    setText("item-reference", r.reference ? "Reference: " + r.reference : "No reference answer.");
    renderRewards(r);
    renderOthers(data);
    const label = data.label;
    state = { verdict: label ? label.verdict : null, tags: new Set(label ? label.tags : []) };
    $("rewrite").value = label ? label.rewritten : "";
    $("rewrite-box").hidden = !(label && label.rewritten);
    $("note").value = label ? label.note : "";
    paint();
    say(label ? "You labelled this item: " + label.verdict + "." : "");
    history.replaceState(null, "", "?i=" + data.position);
    prefetch(data.position + 1);
  }

  function paint() {
    for (const b of verdictButtons) b.setAttribute("aria-pressed", String(b.dataset.verdict === state.verdict));
    for (const b of tagButtons) b.setAttribute("aria-pressed", String(state.tags.has(b.dataset.tag)));
  }

  async function load(position) {
    if (cache.has(position)) return cache.get(position);
    const response = await fetch(base + "items/" + position + ".json", { headers: { Accept: "application/json" } });
    if (!response.ok) throw new Error("Could not load item " + position + " (HTTP " + response.status + ").");
    const data = await response.json();
    cache.set(position, data);
    return data;
  }

  function prefetch(position) {
    if (position <= item.total && !cache.has(position)) load(position).catch(() => {});
  }

  async function go(position) {
    if (position < 1 || position > item.total) {
      say(position < 1 ? "This is the first item." : "This is the last item.");
      return;
    }
    try {
      render(await load(position));
    } catch (err) {
      say(err.message, true);
    }
  }

  function setVerdict(verdict) {
    state.verdict = state.verdict === verdict ? null : verdict;
    paint();
  }

  function toggleTag(index) {
    const button = tagButtons[index];
    if (!button) return;
    const tag = button.dataset.tag;
    if (state.tags.has(tag)) state.tags.delete(tag); else state.tags.add(tag);
    paint();
  }

  function edit() {
    $("rewrite-box").hidden = false;
    if (!$("rewrite").value) $("rewrite").value = item.rollout.completion;
    $("rewrite").focus();
  }

  let saving = false;
  async function submit() {
    if (!canLabel) { say("You may read this queue but not label it.", true); return; }
    if (!state.verdict) { say("Choose a verdict first: a accept, r reject, s skip.", true); return; }
    if (saving) return;
    saving = true;
    const position = item.position;
    const body = {
      verdict: state.verdict, tags: Array.from(state.tags), note: $("note").value,
      rewritten: $("rewrite-box").hidden ? "" : $("rewrite").value,
    };
    try {
      const response = await fetch(base + "items/" + position + "/label/", {
        method: "POST", credentials: "same-origin", body: JSON.stringify(body),
        headers: { "Content-Type": "application/json", "X-CSRFToken": csrf, Accept: "application/json" },
      });
      const data = await response.json().catch(() => ({ detail: "HTTP " + response.status }));
      if (!response.ok) { say("Not saved: " + data.detail, true); return; }
      cache.set(position, data);
      setText("mine", data.mine);
      if (position < item.total) {
        await go(position + 1);
        say("Saved item " + position + ".");
      } else {
        render(data);
        say("Saved. That was the last item.");
      }
    } catch (err) {
      say("Not saved: " + err.message, true);
    } finally {
      saving = false;
    }
  }

  const typing = (el) => el && (el.tagName === "TEXTAREA" || el.tagName === "SELECT" || el.isContentEditable
    || (el.tagName === "INPUT" && !["button", "checkbox", "radio", "submit"].includes(el.type)));

  const KEYS = {
    j: () => go(item.position + 1), ArrowRight: () => go(item.position + 1), ArrowDown: () => go(item.position + 1),
    k: () => go(item.position - 1), ArrowLeft: () => go(item.position - 1), ArrowUp: () => go(item.position - 1),
    a: () => setVerdict("accept"), r: () => setVerdict("reject"), s: () => setVerdict("skip"),
    e: edit, n: () => $("note").focus(), "?": () => { $("cheatsheet").hidden = !$("cheatsheet").hidden; },
    Escape: () => { $("cheatsheet").hidden = true; },
  };

  document.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      if (typing(event.target)) event.target.blur();  // the next item's keys are shortcuts again
      submit();
      return;
    }
    if (typing(event.target)) {
      if (event.key === "Escape") event.target.blur();
      return; // shortcuts are off while typing
    }
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (/^[1-9]$/.test(event.key)) {
      event.preventDefault();
      toggleTag(Number(event.key) - 1);
      return;
    }
    const action = KEYS[event.key];
    if (action) {
      event.preventDefault();
      action();
    }
  });

  for (const b of verdictButtons) b.addEventListener("click", () => setVerdict(b.dataset.verdict));
  tagButtons.forEach((b, i) => b.addEventListener("click", () => toggleTag(i)));
  $("prev").addEventListener("click", () => go(item.position - 1));
  $("next").addEventListener("click", () => go(item.position + 1));
  $("edit").addEventListener("click", edit);
  $("submit").addEventListener("click", submit);
  $("help-toggle").addEventListener("click", KEYS["?"]);
  render(item);
  window.ponderLabeller = { cache, current: () => item };
})();
