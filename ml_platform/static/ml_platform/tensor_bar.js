// Feature config page: each tower's input tensor as a bar of proportional,
// colour-coded slices (one per feature or cross), drawn with D3.
import { jsonFrom } from "./common.js";

const breakdown = jsonFrom("breakdown-data");
const colour = d3.scaleOrdinal(d3.schemeTableau10);

for (const tower of ["buyer", "product"]) {
  const { features, total } = breakdown[tower];
  let offset = 0;
  const slices = features.map((f) => {
    const slice = { ...f, start: offset };
    offset += f.dim;
    return slice;
  });
  d3.select(`.tensor-bar[data-tower="${tower}"]`)
    .selectAll("div.slice")
    .data(slices)
    .join("div")
    .attr("class", (d) => `slice kind-${d.kind}`)
    .style("left", (d) => `${(100 * d.start) / total}%`)
    .style("width", (d) => `${(100 * d.dim) / total}%`)
    .style("background", (d) => colour(d.name))
    .attr("title", (d) => `${d.name} (${d.kind}): ${d.dim}D`);
  d3.select(`.legend[data-legend="${tower}"]`)
    .selectAll("li")
    .data(slices)
    .join("li")
    .each(function (d) {
      // Built node by node: a feature's name is text, never markup, and the CSP refuses style attributes.
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.background = colour(d.name);
      const dim = document.createElement("b");
      dim.textContent = `${d.dim}D`;
      const kind = document.createElement("i");
      kind.textContent = d.kind;
      this.replaceChildren(swatch, `${d.name} `, dim, " ", kind);
    });
}
