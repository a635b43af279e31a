/* A run's metric series and their charts: the metrics the user picks (train and validation
   side by side), smoothed or not, the kept epoch marked; and the run's own measurements per
   epoch (learning rate, images per second, memory). Points come one by one, from the stream or
   from the JSON endpoint; adding one twice (a reconnect) changes nothing. */
import { drawChart, removeChart } from "./charts.js";
import { el } from "./dom.js";

const SUBSET_STYLE = { train: { dash: "solid" }, validation: { dash: "dot" } };
const SYSTEM = [
  ["learning_rate", "Learning rate", { type: "log", exponentformat: "power" }],
  ["images_per_second", "Images per second", { rangemode: "tozero" }],
  ["memory_mb", "Memory (MB)", { rangemode: "tozero" }],
];
const RATES = new Set(["accuracy", "balanced_accuracy", "macro_f1", "auc"]); // drawn on 0 to 100%
const OVERLAPS = new Set(["mean_dice", "class_dice", "iou", "pixel_accuracy", "case_dice"]); // drawn on 0 to 1
/* A metric with a value per class is recorded as "<metric>.<class>" (class_dice.liver): one chart, a line per class. */
const metricOf = (name) => name.split(".")[0];
const TITLES = { class_dice: "Dice per label", mean_dice: "mean Dice" };
const titleOf = (name) => TITLES[name] ?? name.replace(/_/g, " ");

export class MetricSeries {
  constructor() {
    this.points = new Map(); // "subset/name" -> Map(epoch -> value)
  }

  /* Returns true when the point was new or changed (a resumed run may record an epoch again, with the same value). */
  add({ epoch, subset, name, value }) {
    const key = `${subset}/${name}`;
    if (!this.points.has(key)) this.points.set(key, new Map());
    const byEpoch = this.points.get(key);
    const changed = byEpoch.get(epoch) !== value;
    byEpoch.set(epoch, value);
    return changed;
  }

  /* The metrics measured on the training or validation subset, loss first (a per-class metric once, by its name). */
  metricNames() {
    const names = new Set();
    for (const key of this.points.keys()) {
      const [subset, name] = key.split("/");
      if (subset !== "system") names.add(metricOf(name));
    }
    return [...names].sort((a, b) => (a === "loss" ? -1 : b === "loss" ? 1 : a.localeCompare(b)));
  }

  /* The classes a per-class metric was recorded for on a subset, in the order first seen ([] for another metric). */
  classesOf(subset, metric) {
    const prefix = `${subset}/${metric}.`;
    return [...this.points.keys()].filter((key) => key.startsWith(prefix)).map((key) => key.slice(prefix.length));
  }

  xy(subset, name) {
    const byEpoch = this.points.get(`${subset}/${name}`);
    if (!byEpoch) return null;
    const epochs = [...byEpoch.keys()].sort((a, b) => a - b);
    return { x: epochs, y: epochs.map((epoch) => byEpoch.get(epoch)) };
  }
}

/* Exponential moving average with TensorBoard's debiasing: weight 0 leaves the values as they are. */
export function smooth(values, weight) {
  if (!weight) return [...values];
  let average = 0;
  return values.map((value, k) => {
    average = average * weight + (1 - weight) * value;
    return average / (1 - weight ** (k + 1));
  });
}

/* A per-class metric's lines: one per class, on the validation subset where it was measured (else the training one). */
function classTraces(series, metric, smoothing) {
  const subset = series.classesOf("validation", metric).length ? "validation" : "train";
  return series.classesOf(subset, metric).map((label) => {
    const xy = series.xy(subset, `${metric}.${label}`);
    return { x: xy.x, y: smooth(xy.y, smoothing), name: `${label} (${subset})`, mode: "lines+markers", marker: { size: 5 } };
  });
}

function metricTraces(series, name, smoothing) {
  if (series.classesOf("validation", name).length || series.classesOf("train", name).length) {
    return classTraces(series, name, smoothing);
  }
  const traces = [];
  for (const subset of ["train", "validation"]) {
    const xy = series.xy(subset, name);
    if (!xy) continue;
    if (smoothing) {
      traces.push({ x: xy.x, y: xy.y, name: `${subset} (raw)`, mode: "lines", opacity: 0.25, showlegend: false,
        line: { ...SUBSET_STYLE[subset], width: 1 }, hoverinfo: "skip", legendgroup: subset });
    }
    traces.push({ x: xy.x, y: smooth(xy.y, smoothing), name: subset, mode: "lines+markers", legendgroup: subset,
      line: SUBSET_STYLE[subset], marker: { size: 5 } });
  }
  return traces;
}

function keptEpochLine(epoch) {
  if (!epoch) return {};
  return {
    shapes: [{ type: "line", xref: "x", yref: "paper", x0: epoch, x1: epoch, y0: 0, y1: 1, line: { color: "#2b8a3e", width: 1.5, dash: "dash" } }],
    annotations: [{ x: epoch, y: 1, xref: "x", yref: "paper", text: `kept: epoch ${epoch}`, showarrow: false, yanchor: "bottom",
      font: { size: 11, color: "#2b8a3e" } }],
  };
}

/* The chart elements for these names in `container`, made where missing, all in the grid before any is drawn:
   a chart drawn alone takes the width of the whole row (charts.js then follows each one's width). */
function chartCells(container, names, attribute, make) {
  for (const name of names) {
    if (!container.querySelector(`[${attribute}="${name}"]`)) container.append(make(name));
  }
  return names.map((name) => container.querySelector(`[${attribute}="${name}"]`));
}

/* One chart per picked metric, in `container` (charts are made or reused by metric name). */
export function drawMetricCharts(container, series, { picked, smoothing = 0, keptEpoch = null, revision = 0 }) {
  const wanted = picked.filter((name) => series.metricNames().includes(name));
  for (const chart of container.querySelectorAll("[data-metric]")) {
    if (!wanted.includes(chart.dataset.metric)) removeChart(chart);
  }
  const charts = chartCells(container, wanted, "data-metric",
    (name) => el("div", { class: "chart", "data-metric": name, id: `metric-chart-${name}` }));
  for (const [k, name] of wanted.entries()) {
    drawChart(charts[k], metricTraces(series, name, smoothing), {
      title: { text: titleOf(name) }, datarevision: `${revision}-${smoothing}-${keptEpoch}`,
      xaxis: { title: { text: "epoch" }, rangemode: "tozero" },
      yaxis: RATES.has(name) ? { range: [0, 1.02], tickformat: ".0%" } : OVERLAPS.has(name) ? { range: [0, 1.02] } : { rangemode: "tozero" },
      ...keptEpochLine(keptEpoch),
    });
  }
}

/* The run's measurements per epoch: learning rate, throughput, memory. */
export function drawSystemCharts(container, series, revision = 0) {
  const measured = SYSTEM.filter(([name]) => series.xy("system", name));
  const charts = chartCells(container, measured.map(([name]) => name), "data-system",
    (name) => el("div", { class: "chart small", "data-system": name, id: `system-chart-${name}` }));
  for (const [k, [name, title, yaxis]] of measured.entries()) {
    const xy = series.xy("system", name);
    drawChart(charts[k], [{ x: xy.x, y: xy.y, mode: "lines+markers", name: title, marker: { size: 4 } }], {
      title: { text: title }, height: 240, showlegend: false, datarevision: revision,
      xaxis: { title: { text: "epoch" } }, yaxis,
    });
  }
}

/* Checkboxes for the metrics measured so far; `onChange(picked)` when the user changes them. */
export function renderMetricPicker(container, names, picked, onChange) {
  const shown = [...container.querySelectorAll("input")].map((box) => box.value);
  if (shown.join() === names.join()) return;
  container.replaceChildren(...names.map((name) => {
    const box = el("input", { type: "checkbox", value: name, name: "metric" });
    box.checked = picked.includes(name);
    box.addEventListener("change", () => onChange([...container.querySelectorAll("input:checked")].map((b) => b.value)));
    return el("label", { class: "radio" }, [box, ` ${titleOf(name)}`]);
  }));
}
