// The New Training wizard's two steps (training/_wizard.html): Next and Back show one <fieldset> at a time,
// keyboard focus moves to the step's first input, and choosing an experiment to promote disables the
// catalog's selects (the experiment brings its own); the GPU types follow the chosen runner. A saved form's
// answer fires "wizard-done", which closes the dialog around it.
import htmx from "htmx.org";

export default function mount(form) {
  // The form arrives in its dialog when a button asks for it (hx-get into #wizard-body): show the dialog then.
  const dialog = form.closest("dialog");
  if (dialog && !dialog.open) dialog.showModal();
  const steps = [...form.querySelectorAll(":scope > fieldset[data-step]")];
  const counter = form.querySelector("[data-step-number]");
  if (!steps.length) return; // a one-step form in the same dialog (a run's rerun choices)
  const show = (number, focus = true) => {
    for (const step of steps) step.hidden = Number(step.dataset.step) !== number;
    counter.textContent = number;
    const first = steps[number - 1]?.querySelector("input:not([type=hidden]), select");
    if (focus && first) first.focus();
  };
  form.addEventListener("click", (event) => {
    if (event.target.closest("[data-next]")) show(2);
    if (event.target.closest("[data-back]")) show(1);
  });
  const experiment = form.querySelector("select[name=experiment_id]");
  const syncCatalog = () => {
    for (const select of form.querySelectorAll(".from-catalog select")) select.disabled = Boolean(experiment.value);
  };
  if (experiment) {
    experiment.addEventListener("change", syncCatalog);
    syncCatalog();
  }
  // GPU types the chosen runner cannot have (Vertex AI outside its training region's) are disabled, the reasons
  // under the select; a chosen one that became unavailable falls back to CPU.
  const runner = form.querySelector("select[name=runner]");
  const gpu = form.querySelector("select[name='gpu_config.gpu_type']");
  const hint = form.querySelector("[data-gpu-hint]");
  const syncGpus = () => {
    const reasons = [];
    for (const option of gpu.options) {
      if (!option.value) continue;
      const reason = option.getAttribute(`data-refused-${runner.value}`);
      option.disabled = Boolean(reason);
      option.textContent = reason ? `${option.value} — unavailable` : option.value;
      if (reason) reasons.push(`${option.value}: ${reason}`);
    }
    if (gpu.selectedOptions[0]?.disabled) {
      gpu.value = "";
      gpu.dispatchEvent(new Event("change", { bubbles: true }));
    }
    if (hint) {
      hint.textContent = reasons.join("; ");
      hint.hidden = !reasons.length;
    }
  };
  if (runner && gpu) runner.addEventListener("change", syncGpus);
  show(Number(form.dataset.startStep || 1), false);
}

document.addEventListener("wizard-done", () => document.getElementById("wizard-dialog")?.close());
// "Now, then schedule retraining": the created run's schedule dialog, prefilled from it (it opens itself).
document.addEventListener("schedule-run", (event) => {
  htmx.ajax("GET", event.detail.url, { target: "body", swap: "beforeend" });
});
