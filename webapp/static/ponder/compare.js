// Checkpoint comparisons: the detail page follows its Celery job; the judging page shows
// blind pairs, keyboard first, with the next pair loaded while this one is read.
// Model text is untrusted: it only ever reaches the page through textContent.
(function () {
  "use strict";
  const $ = (id) => document.getElementById(id);

  // Direction controls (U+202E ...) could make text read differently from what it says.
  const BIDI = /[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;
  const reveal = (s) => String(s == null ? "" : s).replace(BIDI,
    (c) => "\u27e8U+" + c.codePointAt(0).toString(16).toUpperCase().padStart(4, "0") + "\u27e9");
  const setText = (id, value) => { $(id).textContent = reveal(value); };

  // ---- detail page: progress of the sampling job ------------------------------------------
  const detail = $("comparison");
  if (detail && detail.dataset.finished === "0") {
    const poll = async () => {
      try {
        const response = await fetch(detail.dataset.statusUrl, { headers: { Accept: "application/json" } });
        const s = await response.json();
        setText("done", s.done);
        setText("total", s.total);
        $("progress-bar").style.width = (s.total ? Math.min(100, 100 * s.done / s.total) : 0) + "%";
        setText("compare-status", s.status);
        if (s.finished) { window.location.reload(); return; }
      } catch (err) { /* the server restarts; try again */ }
      setTimeout(poll, 2000);
    };
    setTimeout(poll, 2000);
  }

  // ---- judging page -----------------------------------------------------------------------
  const root = $("judge");
  if (!root) return;
  const canLabel = root.dataset.canLabel === "1";
  const csrf = document.querySelector("[name=csrfmiddlewaretoken]").value;
  const state = { pair: JSON.parse($("pair-data").textContent), prefetched: null, loading: null, saving: false };
  window.ponderJudge = state; // tests wait on the prefetch

  function say(message, isError = false) {
    $("status").textContent = reveal(message);
    $("status").classList.toggle("error", isError);
  }

  function render(pair) {
    state.pair = pair && !pair.done ? pair : null;
    $("pair").hidden = !state.pair;
    $("all-done").hidden = !!state.pair;
    if (!state.pair) { setText("remaining", 0); return; }
    const p = state.pair;
    setText("prompt-index", p.prompt_index);
    setText("question", p.question);
    setText("reference", p.reference || "No reference answer.");
    for (const side of ["left", "right"]) {
      for (const part of ["reasoning", "answer"]) {
        const text = p[side][part];
        setText(side + "-" + part, text || (part === "answer" ? "(no final answer)" : "(no reasoning)"));
        $(side + "-" + part).classList.toggle("muted", !text);
      }
      setText(side + "-tokens", p[side].tokens + " tokens");
    }
    setText("remaining", p.remaining);
    window.scrollTo(0, 0);
  }

  async function fetchNext(skip) {
    const url = root.dataset.next + (skip ? "?skip=" + encodeURIComponent(skip) : "");
    const response = await fetch(url, { headers: { Accept: "application/json" } });
    if (!response.ok) throw new Error("Could not load the next pair (HTTP " + response.status + ").");
    return response.json();
  }

  // Load the pair after the one on screen; never the one on screen itself.
  function prefetch() {
    state.prefetched = null;
    const shown = state.pair;
    state.loading = fetchNext(shown ? shown.token : "").then((next) => {
      if (state.pair === shown) state.prefetched = next;
      return next;
    });
    state.loading.catch((err) => say(err.message, true));
  }

  async function advance() {
    const next = state.prefetched || await state.loading;
    render(next);
    if (state.pair) prefetch();
  }

  async function vote(winner) {
    if (!state.pair || state.saving) return;
    if (!canLabel) { say("Read only: owners and annotators judge.", true); return; }
    state.saving = true;
    const pair = state.pair;
    try {
      const response = await fetch(root.dataset.verdict, {
        method: "POST", headers: { "Content-Type": "application/json", "X-CSRFToken": csrf },
        body: JSON.stringify({ token: pair.token, winner: winner }),
      });
      const data = await response.json();
      if (!response.ok) { say(data.detail || "Could not save.", true); return; }
      setText("mine", data.mine);
      const verdict = winner === "tie" ? "a tie" : winner + " better";
      say("Saved (" + verdict + "). Left was " + data.left + "; right was " + data.right + ".");
      // The pair prefetched was chosen before this verdict was stored, skipping only this pair.
      await advance();
    } catch (err) {
      say(err.message, true);
    } finally {
      state.saving = false;
    }
  }

  async function skip() {
    if (!state.pair) return;
    const next = state.prefetched || await state.loading;
    if (!next || next.done) { say("This is the last pair left to judge."); return; }
    say("Skipped; that pair may come back later.");
    await advance();
  }

  function typing(target) {
    return target && (target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName));
  }

  function toggleHelp(show) {
    const sheet = $("cheatsheet");
    sheet.hidden = show === undefined ? !sheet.hidden : !show;
  }

  const KEYS = { "1": "left", ArrowLeft: "left", "2": "right", ArrowRight: "right", "3": "tie", " ": "tie" };

  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey || typing(event.target)) return;
    if (event.key === "?") { toggleHelp(); event.preventDefault(); return; }
    if (event.key === "Escape") { toggleHelp(false); return; }
    if (event.key === "s") { skip(); event.preventDefault(); return; }
    const winner = KEYS[event.key];
    if (winner) { event.preventDefault(); vote(winner); }
  });
  for (const button of document.querySelectorAll("[data-winner]")) {
    button.addEventListener("click", () => vote(button.dataset.winner));
  }
  $("skip").addEventListener("click", skip);
  $("help-toggle").addEventListener("click", () => toggleHelp());

  render(state.pair);
  if (state.pair) prefetch();
})();
