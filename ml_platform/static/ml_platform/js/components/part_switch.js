// The Training progress tab's part (query tower, candidate tower, rating head) and kind (weights, gradients)
// switches: <select data-part-switch> / <select data-kind-switch> in a section. The choice outlives the
// tab's refreshes (it is swapped whole every few seconds), kept in sessionStorage.
const KEY = (what) => `view-modal-${what}`;

/** The section's chosen part or kind (restored after a refresh). */
export function chosen(section, what) {
  const control = section.querySelector(`[data-${what}-switch]`);
  if (!control) return null;
  const kept = sessionStorage.getItem(KEY(what));
  if (kept && [...control.options].some((o) => o.value === kept)) control.value = kept;
  return control.value;
}

/** Call ``redraw`` whenever one of the section's switches changes. */
export function onSwitch(section, redraw) {
  for (const what of ["part", "kind"]) {
    const control = section.querySelector(`[data-${what}-switch]`);
    control?.addEventListener("change", () => {
      sessionStorage.setItem(KEY(what), control.value);
      redraw();
    });
  }
}
