// Parameters per tower and head, split into embedding tables and dense layers, as a stacked bar chart.
// <canvas data-component="params-chart" data-from="json-id">; the JSON block is the parameter counts.
import { BarController, BarElement, CategoryScale, Chart, Legend, LinearScale, Tooltip } from "chart.js";
import { dataOf, formatInt, token } from "../common.js";

Chart.register(BarController, BarElement, CategoryScale, LinearScale, Legend, Tooltip);

export default function mount(canvas) {
  const counts = dataOf(canvas);
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
    // The canvas fills its .chart-box (components/form.css sets its height): with Chart.js' default aspect
    // ratio a short canvas in a wide card was squashed to a sliver, its labels cut off.
    options: {
      indexAxis: "y",
      animation: false,
      responsive: true,
      maintainAspectRatio: false,
      scales: {
        x: { stacked: true, ticks: { callback: (value) => formatCompact(value), maxRotation: 0, autoSkip: true } },
        y: { stacked: true, ticks: { autoSkip: false } },
      },
      plugins: {
        legend: { position: "bottom" },
        tooltip: { callbacks: { label: (c) => `${c.dataset.label}: ${formatInt(c.parsed.x)}` } },
      },
    },
  });
}

const compact = new Intl.NumberFormat("en-US", { notation: "compact", maximumFractionDigits: 1 });
const formatCompact = (n) => compact.format(n);
