// Model config page: parameters per tower and head, split into embedding
// tables and dense layers, as a stacked bar chart (Chart.js).
import { jsonFrom, renderJsonBlocks } from "./common.js";

renderJsonBlocks();
const counts = jsonFrom("counts-data");
const canvas = document.getElementById("params-chart");
if (counts && canvas) {
  const parts = Object.entries(counts.towers).map(([name, t]) => ({
    label: `${name} tower`,
    embeddings: t.embedding_params,
    dense: t.dense_params,
  }));
  if (counts.rating_head) parts.push({ label: "rating head", embeddings: 0, dense: counts.rating_head.total });
  window.paramsChart = new Chart(canvas, {
    type: "bar",
    data: {
      labels: parts.map((p) => p.label),
      datasets: [
        { label: "Embedding tables", data: parts.map((p) => p.embeddings), backgroundColor: "#4e79a7" },
        { label: "Dense layers", data: parts.map((p) => p.dense), backgroundColor: "#f28e2b" },
      ],
    },
    options: {
      indexAxis: "y",
      animation: false,
      scales: { x: { stacked: true }, y: { stacked: true } },
      plugins: { tooltip: { callbacks: { label: (c) => `${c.dataset.label}: ${c.parsed.x.toLocaleString("en-US")}` } } },
    },
  });
}
