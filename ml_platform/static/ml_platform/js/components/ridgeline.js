// A D3 ridgeline of one part's weight (or gradient) histograms, one ridge per finished epoch, older epochs
// lighter (training/view/_progress.html): <svg data-component="ridgeline" data-json="{weights: {part:
// [{epoch, counts, edges}]}, gradients: {...}}">. The part and kind come from the section's
// [data-part-switch] and [data-kind-switch] selects (js/components/part_switch.js keeps the choice).
import { scaleLinear } from "d3-scale";
import { select } from "d3-selection";
import { area, curveBasis } from "d3-shape";
import { dataOf } from "../common.js";
import { chosen, onSwitch } from "./part_switch.js";

const WIDTH = 560;
const RIDGE = 26; // px between two epochs' baselines
const HEIGHT_OF_PEAK = 60;

export default function mount(svg) {
  const data = dataOf(svg);
  const section = svg.closest("section") || document;
  const draw = () => render(svg, data, chosen(section, "part"), chosen(section, "kind") || "weights");
  onSwitch(section, draw);
  draw();
}

function render(svg, data, part, kind) {
  const ridges = ((data[kind] || {})[part] || []).filter((r) => r.counts && r.counts.length);
  const root = select(svg);
  root.selectAll("*").remove();
  const empty = svg.parentElement.querySelector(".chart-empty");
  if (empty) empty.hidden = ridges.length > 0;
  if (!ridges.length) {
    svg.setAttribute("viewBox", `0 0 ${WIDTH} 10`);
    svg.dataset.ridges = "0";
    return;
  }
  const low = Math.min(...ridges.map((r) => r.edges[0]));
  const high = Math.max(...ridges.map((r) => r.edges[r.edges.length - 1]));
  const peak = Math.max(...ridges.flatMap((r) => r.counts));
  const height = HEIGHT_OF_PEAK + RIDGE * (ridges.length - 1) + 24;
  svg.setAttribute("viewBox", `0 0 ${WIDTH} ${height}`);
  const x = scaleLinear().domain([low, high]).range([40, WIDTH - 10]);
  const y = scaleLinear().domain([0, peak || 1]).range([0, HEIGHT_OF_PEAK]);
  ridges.forEach((ridge, index) => {
    const base = HEIGHT_OF_PEAK + RIDGE * index;
    const points = ridge.counts.map((count, bin) => ({ x: (ridge.edges[bin] + ridge.edges[bin + 1]) / 2, count }));
    const shape = area()
      .curve(curveBasis)
      .x((d) => x(d.x))
      .y0(base)
      .y1((d) => base - y(d.count));
    const age = ridges.length === 1 ? 1 : 0.25 + (0.75 * index) / (ridges.length - 1); // older: lighter
    root
      .append("path")
      .attr("class", "ridge")
      .attr("data-epoch", ridge.epoch)
      .attr("d", shape(points))
      .attr("fill-opacity", (0.6 * age).toFixed(2))
      .attr("stroke-opacity", age.toFixed(2));
    root
      .append("text")
      .attr("class", "ridge-label")
      .attr("x", 0)
      .attr("y", base - 2)
      .text(`ep ${ridge.epoch}`);
  });
  root
    .append("text")
    .attr("class", "ridge-label")
    .attr("x", 40)
    .attr("y", height - 4)
    .text(low.toPrecision(3));
  root
    .append("text")
    .attr("class", "ridge-label")
    .attr("x", WIDTH - 10)
    .attr("y", height - 4)
    .attr("text-anchor", "end")
    .text(high.toPrecision(3));
  svg.dataset.ridges = String(ridges.length);
}
