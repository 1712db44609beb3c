// A tower's input tensor as a bar of proportional, colour-coded slices (one per feature or cross), and its
// legend. <div data-component="tensor-bar" data-from="json-id"> holds a .tensor-bar and a .legend; the JSON
// block is the tower's part of the breakdown: {total, features: [{name, kind, dim}]}.
import { select } from "d3-selection";
import { SERIES_COLOURS, dataOf } from "../common.js";

export default function mount(element) {
  const { features, total } = dataOf(element);
  let offset = 0;
  const slices = features.map((feature, index) => {
    const slice = { ...feature, start: offset, colour: `series-${index % SERIES_COLOURS}` };
    offset += feature.dim;
    return slice;
  });
  // Positions through the CSSOM (d3's .style()): the CSP refuses style attributes, not style properties.
  select(element.querySelector(".tensor-bar"))
    .selectAll("div.slice")
    .data(slices)
    .join("div")
    .attr("class", (d) => `slice kind-${d.kind} ${d.colour}`)
    .style("left", (d) => `${(100 * d.start) / total}%`)
    .style("width", (d) => `${(100 * d.dim) / total}%`)
    .attr("title", (d) => `${d.name} (${d.kind}): ${d.dim}D`);
  select(element.querySelector(".legend"))
    .selectAll("li")
    .data(slices)
    .join("li")
    .each(function (d) {
      // Node by node: a feature's name is a column of the user's data, so it is text, never markup.
      const swatch = document.createElement("span");
      swatch.className = `swatch ${d.colour}`;
      const dim = document.createElement("b");
      dim.textContent = `${d.dim}D`;
      const kind = document.createElement("i");
      kind.textContent = d.kind;
      this.replaceChildren(swatch, `${d.name} `, dim, " ", kind);
    });
}
