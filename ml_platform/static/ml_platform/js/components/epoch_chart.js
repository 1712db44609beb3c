// Per-epoch curves of one run (training/view/_progress.html): <canvas data-component="epoch-chart"
// data-metrics="loss,val_loss" data-json="{metric: [[epoch, value], ...]}">. The tab is swapped whole on
// each refresh, so a chart is destroyed with its canvas (htmx's cleanup) and drawn again with the new points.
// The canvas carries its chart (canvas.chart): a test reads the points drawn through the DOM.
import { CategoryScale, Chart, Legend, LineController, LineElement, LinearScale, PointElement, Tooltip } from "chart.js";
import { SERIES_COLOURS, dataOf, token } from "../common.js";
import { chosen, onSwitch } from "./part_switch.js";

Chart.register(CategoryScale, Legend, LineController, LineElement, LinearScale, PointElement, Tooltip);

// data-metrics may name "{part}" (e.g. "{part}_weight_l2"): the section's part switch says which.
export default function mount(canvas) {
  const series = dataOf(canvas);
  const section = canvas.closest("section") || document;
  const draw = () => {
    canvas.chart?.destroy();
    canvas.chart = null;
    const part = chosen(section, "part") || "";
    const names = canvas.dataset.metrics.split(",").map((name) => name.replace("{part}", part));
    drawChart(canvas, series, names.filter((name) => (series[name] || []).length));
  };
  if (canvas.dataset.metrics.includes("{part}")) onSwitch(section, draw);
  draw();
  canvas.addEventListener("htmx:beforeCleanupElement", () => canvas.chart?.destroy());
}

function drawChart(canvas, series, metrics) {
  const box = canvas.parentElement;
  let empty = box.querySelector(".chart-empty");
  if (!empty) {
    empty = document.createElement("p");
    empty.className = "muted chart-empty";
    empty.textContent = "Nothing to show yet: no epoch has reported it.";
    box.append(empty);
  }
  empty.hidden = metrics.length > 0;
  canvas.hidden = !metrics.length;
  if (!metrics.length) return;
  canvas.chart = new Chart(canvas, {
    type: "line",
    data: {
      datasets: metrics.map((name, index) => {
        const colour = token(`--series-${index % SERIES_COLOURS}`);
        return {
          label: name.replace(/^.*_weight_/, "weight "),
          data: series[name].map(([epoch, value]) => ({ x: epoch, y: value })),
          borderColor: colour,
          backgroundColor: colour,
        };
      }),
    },
    options: {
      animation: false,
      parsing: false,
      maintainAspectRatio: false,
      scales: { x: { type: "linear", title: { display: true, text: "epoch" }, ticks: { precision: 0 } } },
    },
  });
}
