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
    .html((d) => `<span class="swatch" style="background:${colour(d.name)}"></span>${d.name} <b>${d.dim}D</b> <i>${d.kind}</i>`);
}
