/* A group of runs (docs/results.md, "Groups: repeats over seeds and cross-validation folds"): every metric per epoch as the mean across the runs
   with a band of ± one sample standard deviation, the test (or out-of-fold) metrics as mean ± SD across the runs beside
   the pooled evaluation's 95% interval, and the runs with their status. The group's JSON (GET /api/groups/<id>/) is
   asked again every 2 s until it has settled (every run finished, evaluated and pooled); leaving the page stops the
   asking. Everything the page keeps is in one `state`. */
import "../delete.js"; // sets up the page's Delete control (templates/frontend/_delete.html), if it has one
import { drawChart } from "../charts.js";
import { el } from "../dom.js";
import { followGroup } from "../group_follow.js";
import { METRICS, bootstrapUnit, formatValue, patientWords, positiveClass, withInterval } from "../evaluation.js";

const SUBSET_COLOURS = { train: "31, 119, 180", validation: "255, 127, 14", system: "44, 160, 44" };
const RATES = new Set(["accuracy", "balanced_accuracy", "macro_f1", "auc"]); // drawn on 0 to 100%
const SYSTEM_TITLES = { learning_rate: "learning rate", images_per_second: "images per second", memory_mb: "memory (MB)" };
// What a quantity can be: a band of ± one SD is cut where the quantity cannot go (a time, a speed, a loss or an
// accuracy below 0; a share above 1). Everything is at least 0 but the Matthews correlation (-1 to 1).
const AT_MOST_ONE = new Set(["accuracy", "balanced_accuracy", "macro_f1", "mcc", "auc", "average_precision", "brier", "ece",
  "sensitivity", "specificity", "precision", "recall", "f1", "dice", "iou"]);
function bounds(name) {
  return { low: name === "mcc" ? -1 : 0, high: AT_MOST_ONE.has(name) ? 1 : Infinity };
}

const root = document.getElementById("group-root");
const state = {
  id: root.dataset.group,
  group: JSON.parse(document.getElementById("group-data").textContent),
};

show();
followGroup(state, show);

function show() {
  showProgress(state.group.summary);
  showCurves(state.group.summary.curves);
  showMetrics(state.group.summary);
  showMembers(state.group.members);
}

function showProgress(summary) {
  const words = [`${summary.finished} of ${summary.members} runs finished`];
  if (summary.succeeded < summary.finished) words.push(`${summary.finished - summary.succeeded} did not succeed`);
  words.push(`${summary.evaluated} evaluated on ${summary.subset === "validation" ? "the fold each held out" : "the test subset"}`);
  if (summary.pooled.error) words.push(summary.pooled.error);
  else if (summary.evaluated && !summary.pooled.current) words.push("pooling their predictions…");
  document.getElementById("group-progress").textContent = `${words.join(" · ")}.`;
}

/* ---- the curves: one chart per metric, a band per subset ---- */

function bandTraces(name, subset, epochs) {
  const colour = SUBSET_COLOURS[subset] ?? "100, 100, 100";
  const x = epochs.map((point) => point.epoch);
  const mean = epochs.map((point) => point.mean);
  const deviation = epochs.map((point) => point.std ?? 0);
  const spreadText = epochs.map((point) => (point.std === null ? `(${point.n} run)` : `± ${point.std.toPrecision(3)} (${point.n} runs)`));
  const { low, high } = bounds(name);
  const line = { x, y: mean, text: spreadText, mode: "lines+markers", legendgroup: subset, line: { color: `rgb(${colour})` },
    marker: { size: 5 }, hovertemplate: "epoch %{x}: %{y:.4g} %{text}<extra>%{fullData.name}</extra>" };
  // A single run has no spread: its line alone, named as one run.
  if (epochs.every((point) => point.std === null || point.std === undefined)) {
    const most = Math.max(...epochs.map((point) => point.n));
    return [{ ...line, name: `${subset} (${most} run${most === 1 ? "" : "s"})` }];
  }
  return [
    { x, y: mean.map((m, k) => Math.min(high, m + deviation[k])), mode: "lines", line: { width: 0 }, hoverinfo: "skip", showlegend: false,
      legendgroup: subset },
    { x, y: mean.map((m, k) => Math.max(low, m - deviation[k])), mode: "lines", line: { width: 0 }, fill: "tonexty",
      fillcolor: `rgba(${colour}, 0.18)`, hoverinfo: "skip", showlegend: false, legendgroup: subset },
    { ...line, name: `${subset} (mean ± SD)` },
  ];
}

function showCurves(curves) {
  document.getElementById("group-curves-empty").hidden = curves.length > 0;
  const container = document.getElementById("group-charts");
  const byName = new Map();
  for (const curve of curves) {
    if (!byName.has(curve.name)) byName.set(curve.name, []);
    byName.get(curve.name).push(curve);
  }
  // Every chart's cell is in the grid before any is drawn, so each is drawn at its cell's width.
  for (const name of byName.keys()) {
    if (!container.querySelector(`[data-metric="${name}"]`)) {
      container.append(el("div", { class: "chart", "data-metric": name, id: `group-chart-${name}` }));
    }
  }
  for (const [name, ofName] of byName) {
    const traces = ofName.flatMap((curve) => bandTraces(name, curve.subset, curve.epochs));
    drawChart(container.querySelector(`[data-metric="${name}"]`), traces, {
      title: { text: SYSTEM_TITLES[name] ?? name.replace(/_/g, " ") },
      datarevision: JSON.stringify(ofName.map((curve) => curve.epochs.length + curve.epochs.at(-1).mean)),
      xaxis: { title: { text: "epoch" }, rangemode: "tozero", dtick: ofName[0].epochs.length < 8 ? 1 : undefined },
      yaxis: RATES.has(name) ? { range: [0, 1.02], tickformat: ".0%" } : name === "learning_rate" ? { type: "log", exponentformat: "power" } : { rangemode: "tozero" },
    });
  }
}

/* ---- the metrics: across the runs, and pooled ---- */

function meanAndDeviation({ mean, std, n = 0 }, kind) {
  if (mean === null || mean === undefined) return "—";
  if (std === null || std === undefined || n < 2) return formatValue(mean, kind); // one run has no spread: its value alone
  const deviation = kind === "percent" ? `${(std * 100).toFixed(1)}%` : std.toFixed(3);
  return `${formatValue(mean, kind)} ± ${deviation}`;
}

function showMetrics(summary) {
  const pooled = summary.pooled.results;
  const note = document.getElementById("group-metrics-note");
  const where = summary.subset === "validation" ? "on the fold it held out" : "on the test subset";
  const single = summary.evaluated === 1;
  const positive = pooled ? positiveClass(pooled) : null;
  note.textContent = !summary.evaluated ? `Each run is measured ${where} once it has succeeded; the figures appear then.`
    : `${single ? `One run measured ${where} so far: its value alone (a standard deviation needs two runs).`
      : `Mean ± SD: each run measured ${where}, then the ${summary.evaluated} figures averaged.`} Pooled: every run's predictions read as `
      + `one evaluation${pooled ? ` (${pooled.samples} predictions${patientWords(pooled)})` : ""}, its interval from a `
      + `bootstrap that resamples ${pooled ? bootstrapUnit(pooled) : "patients"}.${positive ? ` Positive class: ${positive} (AUC, average precision and Brier score are of it).` : ""}`;
  document.querySelector("#group-metrics thead th:nth-child(2)").textContent = single ? "Value (1 run)" : "Mean ± SD across runs";
  const rows = METRICS.filter(([name]) => summary.test[name] || (pooled && pooled.metrics[name])).map(([name, title, kind, words]) => {
    const across = summary.test[name] ?? { mean: null, std: null, n: 0 };
    return el("tr", { "data-metric": name }, [
      el("td", {}, [el("span", { text: title }), el("br"), el("small", { class: "muted", text: words })]),
      el("td", { class: "number", text: meanAndDeviation(across, kind) }),
      el("td", { class: "number", text: String(across.n) }),
      el("td", { class: "number" }, pooled && pooled.metrics[name] ? withInterval(pooled.metrics[name], kind, pooled.level, { prefix: false }) : ["—"]),
    ]);
  });
  document.querySelector("#group-metrics tbody").replaceChildren(...rows);
}

/* ---- the runs ---- */

function showMembers(members) {
  const folds = state.group.kind === "folds";
  const rows = members.map((member) => el("tr", { "data-run": member.run }, [
    el("td", {}, [el("a", { href: `/runs/${member.run}/`, text: member.name })]),
    ...(folds ? [el("td", { class: "number", text: String(member.fold) })] : []),
    el("td", { class: "number", text: String(member.seed) }),
    el("td", { title: member.message }, [el("span", { class: `status status-${member.status}`, text: member.status })]),
    el("td", { class: "number", text: `${member.epochs_completed} of ${member.epochs}` }),
  ]));
  document.querySelector("#group-members tbody").replaceChildren(...rows);
}
