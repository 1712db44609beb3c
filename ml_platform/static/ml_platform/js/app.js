// The page skeleton's one entry module (base.html): htmx for server-rendered fragments, and the widgets
// each page declares with data-component="name", mounted on load and in every fragment htmx swaps in.
import htmx from "htmx.org";
import { csrfToken } from "./common.js";
import "./confirm.js";
import "./toasts.js";

// Nothing the CSP refuses: no <style> element for htmx's indicators (busy.css has the rules), no eval (of
// htmx's inline handler attributes or "js:" values), and no script in a swapped fragment ever runs.
htmx.config.includeIndicatorStyles = false;
htmx.config.allowEval = false;
htmx.config.allowScriptTags = false;
// Settling copies an old element's attributes onto its new version (same id); a style attribute written that
// way is inline style the CSP refuses (a chart's canvas has one, set by Chart.js through the CSSOM).
htmx.config.attributesToSettle = ["class", "width", "height"];

// Each widget is an ES module whose default export mounts it on its element; loaded only by pages using it.
const components = {
  "tensor-bar": () => import("./components/tensor_bar.js"),
  "params-chart": () => import("./components/params_chart.js"),
  "dialog-opener": () => import("./components/dialog.js"),
  poll: () => import("./components/poll.js"),
  "editor-form": () => import("./components/editor_form.js"),
  "upload-progress": () => import("./components/upload_progress.js"),
  wizard: () => import("./components/wizard.js"),
  "curves-chart": () => import("./components/curves_chart.js"),
  modal: () => import("./components/modal.js"),
  "local-time": () => import("./components/local_time.js"),
  "view-modal": () => import("./components/view_modal.js"),
  "epoch-chart": () => import("./components/epoch_chart.js"),
  ridgeline: () => import("./components/ridgeline.js"),
  "copy-path": () => import("./components/copy_path.js"),
};
const mounted = new WeakSet();

async function mount(element) {
  if (mounted.has(element)) return;
  mounted.add(element);
  const load = components[element.dataset.component];
  if (!load) throw new Error(`no component "${element.dataset.component}"`);
  const { default: mountComponent } = await load();
  // A fragment swapped out while its module loaded (a live panel answered twice) has nothing left to mount.
  if (element.isConnected) mountComponent(element);
}

htmx.onLoad((root) => {
  const elements = [...root.querySelectorAll("[data-component]")];
  if (root.matches("[data-component]")) elements.unshift(root);
  for (const element of elements) mount(element).catch((error) => console.error(error));
});

// Writes carry Django's CSRF token (read from its cookie, so a rotated token is picked up).
document.addEventListener("htmx:configRequest", (event) => {
  if (event.detail.verb !== "get") event.detail.headers["X-CSRFToken"] = csrfToken();
});

// A failed request says so on top of the page; the fragment it would have replaced stays as it was.
function showFailure(text) {
  const flash = document.createElement("div");
  flash.className = "flash error";
  flash.setAttribute("role", "alert");
  flash.textContent = `Request failed: ${text}`;
  document.querySelector("main").prepend(flash);
}
document.addEventListener("htmx:responseError", (event) => {
  if (event.detail.xhr.getResponseHeader("HX-Trigger")) return; // the answer says why itself (a toast)
  const { status, statusText } = event.detail.xhr;
  showFailure(`${status} ${statusText}`);
});
document.addEventListener("htmx:sendError", () => showFailure("the server did not answer"));
