// Dataset page: renders the preview and recomputes it on demand.
import { api, formatInt, jsonFrom, renderJsonBlocks } from "./common.js";

function renderPreview(preview, error) {
  document.getElementById("preview-summary").textContent = preview ? preview.summary : error || "";
  for (const dd of document.querySelectorAll("[data-kpi]")) {
    const value = preview ? preview[dd.dataset.kpi] : null;
    dd.textContent = value === null || value === undefined ? "—" : typeof value === "number" ? formatInt(value) : value;
  }
  const table = document.getElementById("preview-sample");
  table.replaceChildren();
  if (!preview || !preview.sample.length) return;
  const columns = preview.columns.map((c) => c.name);
  const head = table.createTHead().insertRow();
  for (const c of preview.columns) {
    const th = document.createElement("th");
    th.textContent = `${c.name} (${c.type.toLowerCase()})`;
    head.appendChild(th);
  }
  const body = table.createTBody();
  for (const row of preview.sample) {
    const tr = body.insertRow();
    for (const name of columns) tr.insertCell().textContent = row[name] ?? "";
  }
}

const button = document.getElementById("refresh-preview");
button.addEventListener("click", async () => {
  button.disabled = true;
  button.textContent = "Computing…";
  try {
    const result = await api(button.dataset.url, { method: "POST" });
    renderPreview(result.preview, result.error);
  } catch (err) {
    document.getElementById("preview-summary").textContent = `Preview failed: ${err.message}`;
  } finally {
    button.disabled = false;
    button.textContent = "Refresh preview";
  }
});

renderJsonBlocks();
renderPreview(jsonFrom("preview-data"), null);
