// Parameters per tower and head, split into embedding tables and dense layers, as a stacked bar chart.
// <canvas data-component="params-chart" data-from="json-id">; the JSON block is the parameter counts.
import { BarController, BarElement, CategoryScale, Chart, Legend, LinearScale, Tooltip } from "chart.js";
import { formatInt, jsonFrom, token } from "../common.js";

Chart.register(BarController, BarElement, CategoryScale, LinearScale, Legend, Tooltip);

export default function mount(canvas) {
  const counts = jsonFrom(canvas.dataset.from);
  const parts = Object.entries(counts.towers).map(([name, tower]) => ({
    label: `${name} tower`,
    embeddings: tower.embedding_params,
    dense: tower.dense_params,
  }));
  if (counts.rating_head) parts.push({ label: "rating head", embeddings: 0, dense: counts.rating_head.total });
  new Chart(canvas, {
    type: "bar",
    data: {
      labels: parts.map((p) => p.label),
      datasets: [
        { label: "Embedding tables", data: parts.map((p) => p.embeddings), backgroundColor: token("--series-0") },
        { label: "Dense layers", data: parts.map((p) => p.dense), backgroundColor: token("--series-1") },
      ],
    },
    options: {
      indexAxis: "y",
      animation: false,
      scales: { x: { stacked: true }, y: { stacked: true } },
      plugins: { tooltip: { callbacks: { label: (c) => `${c.dataset.label}: ${formatInt(c.parsed.x)}` } } },
    },
  });
}
