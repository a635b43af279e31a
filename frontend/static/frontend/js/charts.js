/* Charts, drawn by Plotly with one look across the pages. Plotly stays a classic script
   (vendor/plotly.min.js, served from the installed plotly package: no CDN) that the pages
   drawing charts load before their module, so it is window.Plotly here. */

const LAYOUT = {
  margin: { t: 40, r: 10, b: 45, l: 55 },
  height: 320,
  legend: { orientation: "h", y: -0.25 },
  font: { family: "system-ui, sans-serif", size: 12 },
};
/* Every chart's mode bar: Plotly's own "Download plot as a png", and beside it the chart as a standalone HTML file. */
const HTML_BUTTON = {
  name: "download-html",
  title: "Download plot as a standalone HTML file (works offline)",
  icon: null, // Plotly's disk icon, once Plotly has loaded (see config())
  click: (chart) => { downloadChartHtml(chart).catch((error) => console.warn(`Saving the chart: ${error.message}`)); },
};

/* This plotly.js shows a "Share chart..." button by default that uploads the chart's data to Plotly Cloud: a chart of
   patients' results never leaves the hospital that way. No logo either. */
export const OFFLINE = { displaylogo: false, showSendToCloud: false, modeBarButtonsToRemove: ["sendChartToCloud"] };

function config(layout) {
  HTML_BUTTON.icon ??= window.Plotly.Icons.disk;
  return { ...OFFLINE, responsive: true, modeBarButtonsToAdd: [HTML_BUTTON],
    toImageButtonOptions: { filename: fileName(titleOf(layout, "chart")) } };
}

/* Draws, or redraws in place, the chart in target (an element or its id); layout adds to the defaults.
   Plotly sizes a chart from its div when it draws it, and `responsive` follows only the window's size: a chart
   drawn alone in a grid row, before its neighbours joined (or while hidden), would keep that width and cover
   them. Each chart is watched instead, and redrawn to its div's width whenever that width changes. */
export function drawChart(target, traces, layout = {}) {
  if (!window.Plotly) throw new Error("This page draws charts: its template must load vendor/plotly.min.js.");
  const element = typeof target === "string" ? document.getElementById(target) : target;
  const drawn = window.Plotly.react(element, traces, { ...LAYOUT, ...layout }, config(layout));
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

/* A drawn chart as one HTML file that opens offline: its data and layout, and the plotly.js this page loaded (the
   server's own copy) inlined, so the file needs nothing else. Named after the chart's title. */
export async function chartHtml(chart) {
  const script = document.querySelector("script[src*='plotly']");
  if (!script) throw new Error("This page has no plotly.js to put in the file.");
  const response = await fetch(script.src, { credentials: "same-origin" });
  if (!response.ok) throw new Error(`plotly.js could not be read (HTTP ${response.status}).`);
  const plotly = (await response.text()).replaceAll("</script", "<\\/script");
  const layout = { ...chart.layout, width: undefined }; // the file's chart fills its window instead
  const figure = JSON.stringify({ data: chart.data, layout }).replaceAll("</", "<\\/");
  const title = titleOf(chart.layout, chart.id || "chart");
  return `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>${title.replace(/[<&]/g, (c) => (c === "<" ? "&lt;" : "&amp;"))}</title></head>
<body style="margin:0;font-family:system-ui,sans-serif">
<div id="chart" style="width:100%"></div>
<script>${plotly}</script>
<script>const figure = ${figure}; Plotly.newPlot("chart", figure.data, figure.layout, { ...${JSON.stringify(OFFLINE)}, responsive: true });</script>
</body></html>
`;
}

function titleOf(layout, otherwise) {
  const title = layout && layout.title;
  return (typeof title === "string" ? title : title && title.text) || otherwise;
}

/* "ROC curve" -> "roc-curve": what the downloaded files are called. */
function fileName(title) {
  return title.replace(/<[^>]*>/g, " ").replace(/[^\w.-]+/g, "-").replace(/^-+|-+$/g, "").toLowerCase() || "chart";
}

export async function downloadChartHtml(chart) {
  const blob = new Blob([await chartHtml(chart)], { type: "text/html" });
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob);
  link.download = `${fileName(titleOf(chart.layout, chart.id || "chart"))}.html`;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 1000); // after the browser has started saving it
}
