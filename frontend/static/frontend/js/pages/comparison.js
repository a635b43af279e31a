/* A comparison (docs/results.md, "Compare"): runs and groups of one project side by side. The curves of a chosen metric
   overlaid (a group as its mean with a band of ± one SD), the test metrics with their intervals in a table and as a bar
   chart per metric, the ROC curves overlaid, and a paired test between two runs (DeLong for AUC, McNemar for accuracy;
   Wilcoxon's signed-rank test on two segmentations' per-case mean Dice). A segmentation's rows are its mean Dice and
   IoU (a classifier's cells there are empty, and the reverse); it has no ROC curve, which its ROC note says.
   The page draws at once from the comparison's JSON (GET /api/comparisons/<id>/); another metric asks for it again
   with ?metric=, a paired test asks GET /api/comparisons/<id>/paired/?a=&b=. Everything the page keeps is in one `state`. */
import { api } from "../api.js";
import "../delete.js"; // sets up the page's Delete control (templates/frontend/_delete.html), if it has one
import { drawChart } from "../charts.js";
import { el } from "../dom.js";
import { METRICS, formatValue, withInterval } from "../evaluation.js";

// 20 colours that stay apart (Plotly's 10, then their lighter partners): one per run or group, on every chart.
const COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
  "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2", "#c7c7c7", "#dbdb8d", "#9edae5"];
const RATES = new Set(["accuracy", "balanced_accuracy", "macro_f1", "auc", "average_precision"]); // drawn on 0 to 100%
// A segmentation's headline figures (workers/engine/tasks/segmentation/results.py): scores from 0 to 1.
const SEGMENTATION_METRICS = [["mean_dice", "Mean Dice", "score"], ["mean_iou", "Mean IoU (Jaccard)", "score"]];
const UNIT_SCORES = new Set(SEGMENTATION_METRICS.map(([key]) => key)); // drawn on 0 to 1
const TESTS = [["mean_dice", "Mean Dice"], ["auc", "AUC"], ["accuracy", "Accuracy"]]; // the paired tests' rows, in order
const DASH = { validation: "solid", train: "dot" };

const root = document.getElementById("comparison-root");
const state = {
  id: root.dataset.comparison,
  comparison: JSON.parse(document.getElementById("comparison-data").textContent),
  asked: 0, // which metric request is the latest (an older answer arriving late is dropped)
  resizing: null, // the redraw after the window's width changed
};

const view = () => state.comparison.view;
const itemsByKey = () => new Map(view().items.map((item, k) => [item.key, { ...item, colour: COLOURS[k % COLOURS.length] }]));
const metricOf = (name) => [...METRICS, ...SEGMENTATION_METRICS].find(([key]) => key === name);
const metricTitle = (name) => (metricOf(name) || [name, name.replace(/_/g, " ")])[1];
const metricKind = (name) => (metricOf(name) || [name, name, "score"])[2];

document.getElementById("comparison-metric").addEventListener("change", (event) => chooseMetric(event.target.value));
document.getElementById("paired-form").addEventListener("submit", (event) => { event.preventDefault(); pairedTest(); });
show();

function show() {
  showItems();
  showMetricPicker();
  showCurves();
  showTable();
  showBars();
  showRoc();
  showPairedChoices();
}

function itemLink(item) {
  return el("a", { href: item.kind === "run" ? `/runs/${item.id}/` : `/groups/${item.id}/`, text: item.name });
}

function showItems() {
  const items = [...itemsByKey().values()];
  document.getElementById("comparison-items").replaceChildren(...items.map((item) => el("li", { "data-item": item.key }, [
    el("span", { class: "swatch", style: `background:${item.colour}` }), " ", itemLink(item), " ",
    el("small", { class: "muted", text: item.kind === "run"
      ? `${item.task === "segmentation" ? "segmentation " : ""}run · ${item.status}${item.samples ? ` · ${item.samples} test samples` : " · not evaluated yet"}`
      : `group of ${item.members} runs · ${item.evaluated} evaluated on the ${item.subset} subset` }),
  ])));
  // Per task: a classifier's classes and a segmentation's labels are compared only with their own kind's.
  const lines = [["classification", "classes"], ["segmentation", "labels"]].map(([task, what]) => {
    const sets = new Set(items.filter((item) => item.task === task).map((item) => item.classes.join(", ")).filter(Boolean));
    if (sets.size > 1) {
      return `The ${task === "segmentation" ? "segmentations" : "classifiers"} have different ${what} (${[...sets].map((c) => `{${c}}`).join(" · ")}): `
        + "a figure that depends on them is refused where they differ.";
    }
    return sets.size ? `${what[0].toUpperCase()}${what.slice(1)}: ${[...sets][0]}.` : "";
  }).filter(Boolean);
  document.getElementById("comparison-classes").textContent = lines.join(" ");
}

/* ---- curves of one metric ---- */

function showMetricPicker() {
  const select = document.getElementById("comparison-metric");
  const shared = new Set(view().shared_metrics);
  select.replaceChildren(...view().metrics.map((name) => el("option", { value: name,
    text: shared.has(name) ? metricTitle(name) : `${metricTitle(name)} (not every run)` })));
  select.value = view().metric;
}

async function chooseMetric(metric) {
  const asked = ++state.asked;
  const error = document.getElementById("comparison-metric-error");
  error.textContent = "";
  document.getElementById("comparison-curves").classList.add("stale");
  try {
    const answer = await api("GET", `/api/comparisons/${state.id}/?metric=${encodeURIComponent(metric)}`);
    if (asked !== state.asked) return;
    state.comparison = answer;
    show();
  } catch (problem) {
    error.textContent = problem.message;
  } finally {
    if (asked === state.asked) document.getElementById("comparison-curves").classList.remove("stale");
  }
}

function showCurves() {
  const items = itemsByKey();
  const metric = view().metric;
  const traces = [];
  for (const curve of view().curves) {
    const item = items.get(curve.item);
    const name = `${item.name} · ${curve.subset}`;
    if (curve.std) {
      const std = curve.std.map((s) => s ?? 0);
      traces.push({ x: curve.epochs, y: curve.values.map((v, k) => v + std[k]), mode: "lines", line: { width: 0 },
        hoverinfo: "skip", showlegend: false, legendgroup: name });
      traces.push({ x: curve.epochs, y: curve.values.map((v, k) => v - std[k]), mode: "lines", line: { width: 0 }, fill: "tonexty",
        fillcolor: `${item.colour}30`, hoverinfo: "skip", showlegend: false, legendgroup: name });
    }
    traces.push({ x: curve.epochs, y: curve.values, mode: "lines", name, legendgroup: name,
      line: { color: item.colour, dash: DASH[curve.subset] || "dash", width: 2 },
      hovertemplate: `epoch %{x}: %{y:.4g}<extra>${name.replace(/</g, "&lt;")}</extra>` });
  }
  const named = traces.filter((trace) => trace.showlegend !== false).length;
  drawChart("comparison-curves", traces, {
    title: { text: `${metricTitle(metric)} per epoch` }, ...legendRoom("comparison-curves", named, 320),
    xaxis: { title: { text: "epoch" }, rangemode: "tozero" },
    yaxis: RATES.has(metric) ? { range: [0, 1.02], tickformat: ".0%" } : { rangemode: "tozero" },
    datarevision: `${metric}-${view().curves.length}`,
  });
}

/* A horizontal legend under the chart takes a row per few entries: the chart grows by as many rows as its width needs
   (a phone's legend is one entry a row), so the legend never runs over what follows. Drawn again when the window's
   width changes the number of rows. */
function legendRoom(id, entries, plotHeight) {
  const width = document.getElementById(id).clientWidth || 800;
  const rows = Math.ceil(entries / Math.max(1, Math.floor(width / 260)));
  return { height: plotHeight + 15 + rows * 20, margin: { t: 40, r: 10, b: 75 + rows * 20, l: 55 },
    legend: { orientation: "h", yanchor: "top", y: -62 / (plotHeight - 100), x: 0 } };
}

window.addEventListener("resize", () => {
  clearTimeout(state.resizing);
  state.resizing = setTimeout(() => { showCurves(); showRoc(); }, 150);
});

/* ---- the test metrics: the table and a bar chart each ---- */

function cellContent(cell, kind, item) {
  if (cell.refused) return [el("span", { class: "muted refused", title: cell.refused, text: "refused*" })];
  if (item.kind === "run") {
    if (cell.value === null || cell.value === undefined) return [el("span", { class: "muted", title: "Not measured for this run's task, or not yet.", text: "—" })];
    return withInterval(cell, kind, item.level, { prefix: false });
  }
  const parts = [];
  if (cell.mean !== null && cell.mean !== undefined) {
    const sd = cell.std === null || cell.std === undefined ? "" : ` ± ${kind === "percent" ? `${(cell.std * 100).toFixed(1)}%` : cell.std.toFixed(3)}`;
    parts.push(`${formatValue(cell.mean, kind)}${sd} (${cell.n} runs)`);
  }
  if (cell.pooled && cell.pooled.value !== null && cell.pooled.value !== undefined) {
    if (parts.length) parts.push(el("br"));
    parts.push(el("small", {}, ["pooled ", ...withInterval(cell.pooled, kind, item.level, { prefix: false })]));
  }
  return parts.length ? parts : ["—"];
}

function showTable() {
  const items = itemsByKey();
  const table = document.getElementById("comparison-metrics");
  table.querySelector("thead tr").replaceChildren(el("th", { text: "Metric" }),
    ...[...items.values()].map((item) => el("th", { class: "number", "data-item": item.key }, [
      el("span", { class: "swatch", style: `background:${item.colour}` }), " ", item.name])));
  table.querySelector("tbody").replaceChildren(...view().test.map((row) => el("tr", { "data-metric": row.metric }, [
    el("td", { text: metricTitle(row.metric) }),
    ...row.cells.map((cell) => el("td", { class: "number", "data-item": cell.item }, cellContent(cell, metricKind(row.metric), items.get(cell.item)))),
  ])));
  // *Refused: once per run or group, the metrics refused and why (each cell's own reason is its tooltip too).
  const refusals = new Map();
  for (const row of view().test) {
    for (const cell of row.cells.filter((c) => c.refused)) {
      if (!refusals.has(cell.item)) refusals.set(cell.item, { metrics: [], reasons: new Set() });
      refusals.get(cell.item).metrics.push(metricTitle(row.metric));
      refusals.get(cell.item).reasons.add(cell.refused.replace(`${row.metric.replace(/_/g, " ")} of `, ""));
    }
  }
  document.getElementById("comparison-refusals").replaceChildren(...[...refusals].map(([key, { metrics, reasons }]) =>
    el("li", { "data-item": key }, [`*${items.get(key).name}, refused for ${metrics.join(", ")}: `, [...reasons].join(" ")])));
}

function showBars() {
  const items = itemsByKey();
  const container = document.getElementById("comparison-bars");
  const rows = view().test;
  // Every chart's cell is in the grid before any is drawn, so each is drawn at its cell's width.
  const cells = rows.map((row) => container.querySelector(`[data-metric="${row.metric}"]`)
    || el("div", { class: "chart small", "data-metric": row.metric, id: `comparison-bar-${row.metric}` }));
  container.replaceChildren(...cells);
  rows.forEach((row, k) => {
    const shown = row.cells.filter((cell) => !cell.refused && cell.shown && cell.shown.value !== null && cell.shown.value !== undefined);
    const refused = row.cells.filter((cell) => cell.refused).map((cell) => items.get(cell.item).name);
    const value = (cell) => cell.shown.value;
    const trace = {
      type: "bar", x: shown.map((cell) => items.get(cell.item).name), y: shown.map(value),
      marker: { color: shown.map((cell) => items.get(cell.item).colour) },
      error_y: { type: "data", symmetric: false, array: shown.map((cell) => (cell.shown.high ?? value(cell)) - value(cell)),
        arrayminus: shown.map((cell) => value(cell) - (cell.shown.low ?? value(cell))), color: "#333", thickness: 1.2 },
      text: shown.map((cell) => (cell.shown.bars === "sd" ? "mean ± SD" : "95% interval")), textposition: "none",
      hovertemplate: "%{x}: %{y:.3f} (%{text})<extra></extra>",
    };
    const title = `${metricTitle(row.metric)}${refused.length ? ` (refused: ${refused.length})` : ""}`;
    drawChart(cells[k], [trace], {
      title: { text: title }, height: 280, showlegend: false, margin: { t: 40, r: 10, b: 70, l: 50 },
      xaxis: { automargin: true, tickangle: shown.length > 4 ? -30 : 0 },
      yaxis: RATES.has(row.metric) ? { range: [0, 1.05], tickformat: ".0%" } : UNIT_SCORES.has(row.metric) ? { range: [0, 1.05] }
        : { rangemode: "tozero" },
    });
  });
}

/* ---- ROC curves ---- */

function showRoc() {
  const items = itemsByKey();
  const traces = [{ x: [0, 1], y: [0, 1], mode: "lines", line: { dash: "dash", color: "#999", width: 1 }, name: "chance", hoverinfo: "skip" }];
  const notes = [];
  for (const entry of view().roc) {
    const item = items.get(entry.item);
    if (entry.refused) {
      notes.push(el("li", { "data-item": entry.item }, [`${item.name}: `, entry.refused]));
      continue;
    }
    for (const curve of entry.curves) {
      const auc = entry.auc === null || entry.auc === undefined ? "" : ` (AUC ${entry.auc.toFixed(3)})`;
      const name = entry.curves.length > 1 ? `${item.name} · ${curve.class}` : `${item.name}${auc}`;
      traces.push({ x: curve.x, y: curve.y, mode: "lines", name, line: { color: item.colour, shape: "hv", width: 2 },
        hovertemplate: `1 − specificity %{x:.2f}, sensitivity %{y:.2f}<extra>${name.replace(/</g, "&lt;")}</extra>` });
    }
  }
  drawChart("comparison-roc", traces, {
    title: { text: "ROC curves" }, ...legendRoom("comparison-roc", traces.length, 380),
    xaxis: { title: { text: "1 − specificity" }, range: [0, 1] }, yaxis: { title: { text: "sensitivity" }, range: [0, 1.02] },
  });
  document.getElementById("comparison-roc-notes").replaceChildren(...notes);
}

/* ---- the paired test ---- */

function showPairedChoices() {
  const items = itemsByKey();
  const form = document.getElementById("paired-form");
  const runs = view().pairable.map((id) => items.get(`run-${id}`));
  for (const [name, pick] of [["a", 0], ["b", 1]]) {
    const select = form.querySelector(`select[name="${name}"]`);
    const chosen = select.value;
    select.replaceChildren(...runs.map((run) => el("option", { value: String(run.id), text: run.name })));
    select.value = chosen || (runs[pick] ? String(runs[pick].id) : "");
  }
  form.querySelector("button").disabled = runs.length < 2;
  if (runs.length < 2) {
    document.getElementById("paired-error").textContent = "Two runs evaluated on their test subset are needed for a paired test.";
  }
}

function number(value, digits = 3) {
  return value === null || value === undefined ? "—" : value.toFixed(digits);
}

function pValue(p) {
  if (p === null || p === undefined) return "—";
  return p < 0.001 ? p.toExponential(2) : p.toFixed(3);
}

async function pairedTest() {
  const form = document.getElementById("paired-form");
  const error = document.getElementById("paired-error");
  const table = document.getElementById("paired-result");
  const a = form.querySelector('select[name="a"]').value;
  const b = form.querySelector('select[name="b"]').value;
  error.textContent = "";
  try {
    const answer = await api("GET", `/api/comparisons/${state.id}/paired/?a=${a}&b=${b}`);
    const rows = TESTS.filter(([key]) => answer[key]).map(([key, title]) => {
      const result = answer[key];
      if (result.refused) return el("tr", { "data-test": key }, [el("td", { text: title }), el("td", { colspan: "6", class: "muted", text: result.refused })]);
      if (key === "mean_dice") return wilcoxonRow(result, title);
      const kind = key === "accuracy" ? "percent" : "score";
      const n = key === "accuracy" ? `${result.n} (${result.discordant} discordant)` : `${result.n} (${result.positives} positive)`;
      return el("tr", { "data-test": key }, [
        el("td", { text: title }), el("td", { text: result.test }), el("td", { class: "number", text: n }),
        el("td", { class: "number", text: formatValue(result.a, kind) }), el("td", { class: "number", text: formatValue(result.b, kind) }),
        el("td", { class: "number", text: kind === "percent" ? `${(result.difference * 100).toFixed(1)} pts` : number(result.difference) }),
        el("td", { class: "number", "data-p": String(result.p_value), text: pValue(result.p_value) }),
      ]);
    });
    table.querySelector("tbody").replaceChildren(...rows);
    table.hidden = false;
    table.dataset.samples = String(answer.samples);
  } catch (problem) {
    table.hidden = true;
    error.textContent = problem.message;
  }
}

/* Wilcoxon's signed-rank test of two segmentations: the mean of each one's per-case mean Dice, the median of the
   per-case differences (what the test is about), the statistic (the smaller rank sum) and the cases ranked. */
function wilcoxonRow(result, title) {
  const n = `${result.n}${result.zeros ? ` (${result.zeros} tied at 0 dropped)` : ""}`;
  return el("tr", { "data-test": "mean_dice" }, [
    el("td", { text: title }), el("td", { text: `${result.test}, W = ${result.statistic}` }), el("td", { class: "number", text: n }),
    el("td", { class: "number", title: "mean over the shared cases", text: formatValue(result.a, "score") }),
    el("td", { class: "number", title: "mean over the shared cases", text: formatValue(result.b, "score") }),
    el("td", { class: "number", "data-median": String(result.median_difference), text: `${number(result.median_difference)} (median)` }),
    el("td", { class: "number", "data-p": String(result.p_value), text: pValue(result.p_value) }),
  ]);
}
