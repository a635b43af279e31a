/* A table of measures: its job watched live, then charts per label, the rows, and the downloads. */
import { api } from "../api.js";
import { binCentres, drawChart } from "../charts.js";
import { el } from "../dom.js";
import { watchJob } from "../jobs.js";
import "../delete.js"; // sets up the page's Delete control (templates/frontend/_delete.html), if it has one

const ROWS_PER_PAGE = 100;
const id = document.getElementById("aggregation-root").dataset.aggregation;

watchJob(`/api/aggregations/${id}/`, {
  view: {
    status: document.getElementById("aggregation-status"),
    message: document.getElementById("aggregation-message"),
    progress: document.getElementById("aggregation-progress"),
    stop: document.getElementById("aggregation-stop"),
  },
  onFinish: (table) => { if (table.status === "ready") showMeasures(table); },
});

const withUnit = (column) => (column.unit ? `${column.title} (${column.unit})` : column.title);
const axisTitle = (column) => (column.unit ? `${column.name} (${column.unit})` : column.name);

function showMeasures(table) {
  document.getElementById("aggregation-results").hidden = false;
  // The histogram is a measure of its own, drawn apart: its values are not one number per sample.
  const columns = table.columns.filter((column) => column.name !== "histogram");
  const labels = Object.keys(table.histograms).length ? Object.keys(table.histograms)
    : [...new Set(Object.values(table.summary).flatMap((measure) => Object.keys(measure.labels)))].sort();
  const choice = document.getElementById("chart-measure");
  choice.replaceChildren(...columns.filter((c) => table.summary[c.name]).map((c) => el("option", { value: c.name, text: withUnit(c) })));
  const draw = () => {
    const column = columns.find((c) => c.name === choice.value);
    if (column) drawMeasure(column, table.summary[column.name]);
  };
  choice.addEventListener("change", draw);
  draw();
  if (table.histogram_edges.length) drawIntensityHistogram(table);
  setUpExports(table);
  showRows(table, columns, labels);
}

function drawMeasure(column, measure) {
  const boxes = Object.entries(measure.labels).map(([label, data]) => ({
    type: "box", name: label, x: [label], q1: [data.box.q1], median: [data.box.median], q3: [data.box.q3],
    lowerfence: [data.box.lowerfence], upperfence: [data.box.upperfence], mean: [data.box.mean],
    hovertext: `${data.box.count} samples · min ${data.box.min} · max ${data.box.max}`,
  }));
  drawChart("box-chart", boxes, { title: { text: `${column.title} per label` }, showlegend: false,
    yaxis: { title: { text: axisTitle(column) } } });
  const centres = binCentres(measure.edges);
  const bars = Object.entries(measure.labels).map(([label, data]) => ({ type: "bar", name: label, x: centres, y: data.counts, opacity: 0.7 }));
  drawChart("histogram-chart", bars, { barmode: "overlay", bargap: 0, title: { text: `${column.title}: samples per bin` },
    xaxis: { title: { text: axisTitle(column) } }, yaxis: { title: { text: "samples" } } });
}

function drawIntensityHistogram(table) {
  const chart = document.getElementById("intensity-chart");
  chart.hidden = false;
  const centres = binCentres(table.histogram_edges);
  // Fractions, not counts: labels with more (or larger) samples would otherwise hide the others.
  const traces = Object.entries(table.histograms).map(([label, counts]) => {
    const total = counts.reduce((sum, count) => sum + count, 0) || 1;
    return { type: "scatter", mode: "lines", line: { shape: "hvh" }, name: label, x: centres, y: counts.map((count) => count / total) };
  });
  drawChart(chart, traces, { title: { text: "Intensity histogram per label (share of voxels)" },
    xaxis: { title: { text: "intensity after the steps" } }, yaxis: { tickformat: ".1%" } });
}

function setUpExports(table) {
  const base = `/api/aggregations/${table.id}/export/`;
  document.getElementById("export-csv").href = base;
  document.getElementById("export-xlsx").href = `${base}?file=xlsx`;
  const histogram = document.getElementById("export-histogram");
  histogram.hidden = !table.histogram_edges.length;
  histogram.href = `${base}?table=histogram`;
}

/* Four significant digits, without trailing zeros; "–" where the measure could not be taken. */
function formatValue(value) {
  return value === undefined || value === null ? "–" : Number(value).toPrecision(4).replace(/\.?0+$/, "");
}

function measureRow(row, columns) {
  const problems = Object.entries(row.problems).map(([name, why]) => `${name === "*" ? "steps" : name}: ${why}`).join("; ");
  return el("tr", {}, [
    el("td", {}, [el("a", { href: `/samples/${row.sample}/`, text: `#${row.index + 1}` })]),
    el("td", { class: "nowrap", text: row.label || "(unlabelled)" }), el("td", { class: "nowrap", text: row.patient }),
    ...columns.map((c) => el("td", { class: "number", text: formatValue(row.values[c.name]) })),
    el("td", { class: "problems", text: problems }),
  ]);
}

function showRows(table, columns, labels) {
  let offset = 0;
  const labelChoice = document.getElementById("row-label");
  labelChoice.replaceChildren(el("option", { value: "", text: "All" }), ...labels.map((label) => el("option", { value: label, text: label })));
  document.querySelector("#aggregation-rows thead").replaceChildren(el("tr", {}, [
    el("th", { text: "Sample" }), el("th", { text: "Label" }), el("th", { text: "Patient" }),
    ...columns.map((c) => el("th", { text: withUnit(c) })), el("th", { text: "Problems" })]));
  const load = async () => {
    const label = labelChoice.value ? `&label=${encodeURIComponent(labelChoice.value)}` : "";
    const page = await api("GET", `/api/aggregations/${table.id}/rows/?limit=${ROWS_PER_PAGE}&offset=${offset}${label}`);
    document.querySelector("#aggregation-rows tbody").replaceChildren(...page.results.map((row) => measureRow(row, columns)));
    document.getElementById("rows-shown").textContent = page.count
      ? `${offset + 1}–${offset + page.results.length} of ${page.count}` : "No rows.";
    document.getElementById("rows-previous").disabled = offset === 0;
    document.getElementById("rows-next").disabled = offset + ROWS_PER_PAGE >= page.count;
  };
  labelChoice.addEventListener("change", () => { offset = 0; load(); });
  document.getElementById("rows-previous").addEventListener("click", () => { offset = Math.max(0, offset - ROWS_PER_PAGE); load(); });
  document.getElementById("rows-next").addEventListener("click", () => { offset += ROWS_PER_PAGE; load(); });
  load();
}
