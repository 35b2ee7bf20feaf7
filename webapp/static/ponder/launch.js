// The launch form's estimate: memory and time for the settings as they stand, refreshed as
// they change, and the defaults scaled to the chosen model. A setting still at the stage's
// default is set to the scaled value (and says so); one the person chose keeps its value and
// is offered the scaled one.
(function () {
  "use strict";
  const form = document.querySelector("form.launch-form");
  const box = document.getElementById("estimate");
  if (!form || !box) return;
  const chosen = new Set();  // fields the person has typed in or picked
  let timer = null;
  let asked = 0;

  form.addEventListener("input", (e) => {
    if (e.isTrusted && e.target.name) chosen.add(e.target.name);
    schedule();
  });
  form.addEventListener("change", schedule);

  function schedule() {
    clearTimeout(timer);
    timer = setTimeout(refresh, 400);
  }

  async function refresh() {
    const mine = ++asked;
    const params = new URLSearchParams(new FormData(form));
    params.delete("csrfmiddlewaretoken");
    let data;
    try {
      const response = await fetch(`${box.dataset.url}?${params}`, {headers: {Accept: "application/json"}});
      data = await response.json();
    } catch (err) {
      data = {error: `no estimate (${err})`};
    }
    if (mine === asked) render(data);  // an older answer arriving late is dropped
  }

  function render(data) {
    const title = document.createElement("b");
    title.textContent = "Estimate";
    const lines = (data.error ? [data.error] : data.lines).map((text) => {
      const line = document.createElement("div");
      line.textContent = text;  // server sentences, shown as text
      return line;
    });
    box.replaceChildren(title, ...lines);
    box.dataset.state = data.error ? "error" : "ready";
    scale(data.defaults || {});
    rule(data.problem || null);
  }

  // The engine's rule the settings break as they stand, under the field it names (the launch
  // would refuse them with the same sentence).
  function rule(problem) {
    form.querySelectorAll(".live-error").forEach((el) => el.remove());
    if (!problem) return;
    const wrap = problem.field && form.querySelector(`[data-field="${problem.field}"]`);
    const note = document.createElement("div");
    note.className = "live-error errorlist";
    note.textContent = problem.message;
    (wrap || box).append(note);
  }

  function scale(defaults) {
    form.querySelectorAll(".scaled").forEach((el) => el.remove());
    for (const [field, {value, why, stage_default: stageDefault}] of Object.entries(defaults)) {
      const input = form.elements[`cfg_${field}`];
      const wrap = form.querySelector(`[data-field="${field}"]`);
      if (!input || !wrap) continue;
      const free = !chosen.has(input.name) && (input.dataset.scaled === "yes" || Number(input.value) === Number(stageDefault));
      const note = document.createElement("div");
      note.className = "scaled muted";
      if (free) {
        input.value = String(value);
        input.dataset.scaled = "yes";
        note.textContent = `Scaled to this model: ${value} (${why}).`;
      } else if (Number(input.value) !== Number(value)) {
        note.textContent = `Suggested for this model: ${value} (${why}). `;
        const use = document.createElement("button");
        use.type = "button";
        use.className = "link use-scaled";
        use.textContent = "Use";
        use.addEventListener("click", () => {
          input.value = String(value);
          chosen.delete(input.name);
          input.dataset.scaled = "yes";
          schedule();
        });
        note.append(use);
      } else {
        continue;
      }
      wrap.append(note);
    }
  }

  refresh();
})();
