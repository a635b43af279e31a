/* Charts, drawn by Plotly with one look across the pages. Plotly stays a classic script
   (vendor/plotly.min.js, served from the installed plotly package: no CDN) that the pages
   drawing charts load before their module, so it is window.Plotly here. */

const LAYOUT = {
  margin: { t: 40, r: 10, b: 45, l: 55 },
  height: 320,
  legend: { orientation: "h", y: -0.25 },
  font: { family: "system-ui, sans-serif", size: 12 },
};
const CONFIG = { displaylogo: false, responsive: true };

/* Draws, or redraws in place, the chart in target (an element or its id); layout adds to the defaults. */
export function drawChart(target, traces, layout = {}) {
  if (!window.Plotly) throw new Error("This page draws charts: its template must load vendor/plotly.min.js.");
  return window.Plotly.react(target, traces, { ...LAYOUT, ...layout }, CONFIG);
}

/* The middle of each bin, from the n + 1 edges of n bins. */
export function binCentres(edges) {
  return edges.slice(0, -1).map((edge, k) => (edge + edges[k + 1]) / 2);
}
