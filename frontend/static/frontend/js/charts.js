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

/* Draws, or redraws in place, the chart in target (an element or its id); layout adds to the defaults.
   Plotly sizes a chart from its div when it draws it, and `responsive` follows only the window's size: a chart
   drawn alone in a grid row, before its neighbours joined (or while hidden), would keep that width and cover
   them. Each chart is watched instead, and redrawn to its div's width whenever that width changes. */
export function drawChart(target, traces, layout = {}) {
  if (!window.Plotly) throw new Error("This page draws charts: its template must load vendor/plotly.min.js.");
  const element = typeof target === "string" ? document.getElementById(target) : target;
  const drawn = window.Plotly.react(element, traces, { ...LAYOUT, ...layout }, CONFIG);
  if (!layout.width) resizing().observe(element);
  return drawn;
}

/* Takes a chart off the page: no longer watched, and what Plotly holds for it freed. */
export function removeChart(element) {
  resizing().unobserve(element);
  if (window.Plotly) window.Plotly.purge(element);
  element.remove();
}

let observer = null; // one observer for every chart of the page

function resizing() {
  observer ??= new ResizeObserver((entries) => {
    for (const { target } of entries) {
      if (!target.isConnected) { // taken off the page by its own page's code: no longer watched (nor kept)
        observer.unobserve(target);
        continue;
      }
      const drawnWidth = target._fullLayout && target._fullLayout.width;
      const width = target.clientWidth;
      // Hidden (width 0): drawn again once shown. Plotly's own resize waits for the layout to settle.
      if (width && drawnWidth && Math.abs(width - drawnWidth) >= 1) {
        window.Plotly.Plots.resize(target).catch(() => {}); // taken off the page meanwhile: nothing to draw
      }
    }
  });
  return observer;
}

/* The middle of each bin, from the n + 1 edges of n bins. */
export function binCentres(edges) {
  return edges.slice(0, -1).map((edge, k) => (edge + edges[k + 1]) / 2);
}
