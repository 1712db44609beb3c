// One metric's per-epoch curves of the compared runs, overlaid (training/compare_page.html):
// <canvas data-component="curves-chart" data-from="json-id" data-metric="loss">; the JSON block is the
// comparison's curves: {metric: [{run_id, label, points: [[epoch, value], ...]}]}.
import { CategoryScale, Chart, Legend, LineController, LineElement, LinearScale, PointElement, Tooltip } from "chart.js";
import { SERIES_COLOURS, jsonFrom, token } from "../common.js";

Chart.register(CategoryScale, Legend, LineController, LineElement, LinearScale, PointElement, Tooltip);

export default function mount(canvas) {
  const lines = jsonFrom(canvas.dataset.from)[canvas.dataset.metric] || [];
  new Chart(canvas, {
    type: "line",
    data: {
      datasets: lines.map((line, index) => {
        const colour = token(`--series-${index % SERIES_COLOURS}`);
        return {
          label: line.label,
          data: line.points.map(([epoch, value]) => ({ x: epoch, y: value })),
          borderColor: colour,
          backgroundColor: colour,
        };
      }),
    },
    options: {
      animation: false,
      parsing: false,
      scales: { x: { type: "linear", title: { display: true, text: "epoch" }, ticks: { precision: 0 } } },
    },
  });
}
