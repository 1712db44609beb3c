// An editing form (the dataset, feature config and model config pages): parts shown only for some values of
// another field, and the live panel asked again whenever a field changes.
// <form data-component="editor-form" hx-post="<live url>" hx-trigger="live-change">; a part shown only when
// the field named F has one of the values V1 V2: <div data-when-field="F" data-when-values="V1 V2">. A hidden
// part's inputs are disabled, so neither the form nor htmx sends them. A field inside [data-no-live] (the
// upload input, which posts itself) does not ask the live panel; the form's hidden _changed input names the
// field that changed, so the server knows whether the source (and so the columns) changed. A folded part
// <details data-fold="K"> the user opened is sent as _open=K with every request the form makes, so that the
// server renders it open again (a row added or removed re-renders the whole form).
import htmx from "htmx.org";

// The value of the field named `name` that is shown: several parts may hold a field of that name (a numeric
// and a timestamp feature's "transform"), and only the one outside a hidden part counts.
function valueOf(form, name) {
  const fields = [...form.querySelectorAll(`[name="${CSS.escape(name)}"]`)].filter(
    (field) => !field.closest("[data-when-field][hidden]"),
  );
  const field = fields.find((f) => f.type !== "radio" || f.checked);
  if (!field) return "";
  if (field.type === "checkbox") return field.checked ? field.value : "";
  return field.value;
}

function applyConditions(form) {
  for (const part of form.querySelectorAll("[data-when-field]")) {
    part.hidden = !part.dataset.whenValues.split(" ").includes(valueOf(form, part.dataset.whenField));
  }
  // An input inside any hidden part (a part inside a hidden one included) is not sent.
  for (const input of form.querySelectorAll("[data-when-field] :is(input, select, textarea)")) {
    input.disabled = input.closest("[data-when-field][hidden]") !== null;
  }
}

export default function mount(form) {
  applyConditions(form);
  const changed = form.querySelector("input[name=_changed]");
  form.addEventListener("change", (event) => {
    applyConditions(form);
    if (event.target.closest("[data-no-live]")) return;
    if (changed) changed.value = event.target.name || "";
    htmx.trigger(form, "live-change");
  });
  form.addEventListener("htmx:configRequest", (event) => {
    const parameters = event.detail.parameters;
    parameters.delete("_open");
    for (const part of form.querySelectorAll("details[data-fold][open]")) {
      parameters.append("_open", part.dataset.fold);
    }
  });
  // Parts swapped in later (the columns step, out of band) follow the same rules.
  document.body.addEventListener("htmx:afterSettle", () => form.isConnected && applyConditions(form));
  if (form.hasAttribute("data-live-on-load")) htmx.trigger(form, "live-change");
}
