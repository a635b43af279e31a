/* A sweep (docs/results.md, "Sweeps"): what it tries, how far it got, its best trial (with "Use the best settings",
   the run form filled from that run), a parallel-coordinates chart of every trial's settings against its outcome, and
   the trials' table. The sweep's JSON (GET /api/groups/<id>/) is asked again every 2 s until it has settled (every
   trial spent or the sweep stopped, and every member told); leaving the page stops the asking. */
import { api } from "../api.js";
import "../delete.js"; // sets up the page's Delete control (templates/frontend/_delete.html), if it has one
import { drawChart } from "../charts.js";
import { el } from "../dom.js";
import { followGroup } from "../group_follow.js";
import { makeSortable } from "../sortable.js";

const OUTCOMES = { complete: "complete", pruned: "pruned early", stopped: "stopped", failed: "failed", replaced: "failed; trained again" };
const STATUSES = { queued: "queued", running: "training", succeeded: "succeeded", failed: "failed", stopped: "stopped" };

const root = document.getElementById("sweep-root");
const state = {
  id: root.dataset.group,
  project: root.dataset.project,
  group: JSON.parse(document.getElementById("group-data").textContent),
};

document.getElementById("sweep-stop")?.addEventListener("click", stopSweep);
let resizing = null; // a phone turned sideways: the chart's colour scale comes back
window.addEventListener("resize", () => { clearTimeout(resizing); resizing = setTimeout(() => showChart(state.group.summary), 200); });
show();
followGroup(state, show);

function show() {
  const summary = state.group.summary;
  showSearch(summary);
  showProgress(summary);
  showBest(summary);
  showChart(summary);
  showTrials(summary);
}

/* ---- what it tries ---- */

function settingWords(dimension) {
  if (dimension.values) return `${dimension.setting}: ${dimension.values.map(String).join(", ")}`;
  const scale = dimension.log ? ", on a log scale" : "";
  const whole = dimension.integer ? " (whole numbers)" : "";
  return `${dimension.setting}: from ${dimension.low} to ${dimension.high}${scale}${whole}`;
}

function showSearch(summary) {
  const search = summary.search;
  const list = document.getElementById("sweep-search");
  const better = search.direction === "maximize" ? "higher" : "lower";
  list.replaceChildren(
    ...search.dimensions.map((dimension) => el("li", { text: settingWords(dimension) })),
    el("li", { text: `${summary.samplers[search.sampler]}; ${search.trials} trials, ${search.parallel} at a time.` }),
    el("li", { text: `Pruner: ${summary.pruners[search.pruner]}.` }),
    el("li", { text: `Picked by ${search.objective} (${better} is better), at each run's kept epoch.` }),
  );
}

function showProgress(summary) {
  const rows = summary.rows;
  const training = rows.filter((row) => row.status === "running").length;
  const queued = rows.filter((row) => row.status === "queued").length;
  const pruned = rows.filter((row) => row.outcome === "pruned").length;
  const words = [`${summary.used} of ${summary.trials} trials started`, `${summary.finished} finished`];
  if (training) words.push(`${training} training`);
  if (queued) words.push(`${queued} queued`);
  if (pruned) words.push(`${pruned} pruned early`);
  if (summary.stopped) words.push("the sweep was stopped: no more trials start");
  else if (summary.settled) words.push("the sweep is done");
  document.getElementById("sweep-progress").textContent = `${words.join(" · ")}.`;
  const stop = document.getElementById("sweep-stop");
  if (stop) stop.hidden = summary.settled || summary.stopped;
}

function showBest(summary) {
  const best = summary.best;
  const words = document.getElementById("sweep-best");
  const use = document.getElementById("sweep-use-best");
  use.hidden = !best;
  if (!best) {
    words.textContent = "No trial has finished yet: the best appears when one has.";
    return;
  }
  const settings = Object.entries(best.values).map(([setting, value]) => `${setting} ${formatSetting(value)}`).join(", ");
  words.replaceChildren(summary.settled ? "Best: " : "Best so far: ", el("a", { href: `/runs/${best.run}/`, text: `trial ${best.trial + 1}` }),
    ` (${settings}), ${summary.search.objective} ${formatSetting(best.objective, 4)}.`);
  use.href = `/projects/${state.project}/runs/new/?from=${best.run}`;
  use.title = "Opens the run form with this trial's settings: train it on more data, longer, or repeat it with seeds.";
}

/* 0.0123456 -> "0.0123", 0.01 -> "0.01" (no trailing zeros), words and whole numbers as they are. */
function formatSetting(value, digits = 3) {
  return typeof value === "number" && !Number.isInteger(value) ? String(Number(value.toPrecision(digits))) : String(value);
}

/* ---- settings against the outcome: one line per trial (Plotly's parallel coordinates) ---- */

/* An axis per setting, named by its last part (learning_rate) to fit a phone; words as ticks; a range or list of
   numbers spanning a hundredfold or more on a log scale. */
function axis(dimension, rows) {
  const values = rows.map((row) => row.values[dimension.setting]);
  const label = dimension.setting.split(".").at(-1);
  if (dimension.values && dimension.values.some((value) => typeof value !== "number")) {
    const listed = dimension.values.map(String);
    return { label, values: values.map((value) => listed.indexOf(String(value))), tickvals: listed.map((_, k) => k), ticktext: listed };
  }
  const span = dimension.values ?? [dimension.low, dimension.high];
  const logScale = dimension.log || (Math.min(...span) > 0 && Math.max(...span) / Math.min(...span) >= 100);
  if (logScale) {
    const low = Math.floor(Math.log10(Math.min(...span))), high = Math.ceil(Math.log10(Math.max(...span)));
    const ticks = Array.from({ length: high - low + 1 }, (_, k) => low + k);
    return { label: `${label} (log)`, values: values.map(Math.log10), range: [low, high], tickvals: ticks,
      ticktext: ticks.map((t) => String(10 ** t >= 1 ? 10 ** t : Number((10 ** t).toPrecision(1)))) };
  }
  return { label, values };
}

function showChart(summary) {
  const rows = summary.rows.filter((row) => row.objective !== null && row.objective !== undefined && row.outcome !== "replaced");
  document.getElementById("sweep-chart-empty").hidden = rows.length > 0;
  const chart = document.getElementById("sweep-chart");
  chart.hidden = !rows.length;
  if (!rows.length) return;
  const objective = summary.search.objective;
  const dimensions = [...summary.search.dimensions.map((dimension) => axis(dimension, rows)),
    { label: objective.split(".").at(-1), values: rows.map((row) => row.objective) }];
  const higher = summary.search.direction === "maximize";
  const narrow = chart.clientWidth < 600; // a phone: the colour scale would crowd the axes out
  drawChart(chart, [{
    type: "parcoords", dimensions, labelangle: narrow ? -20 : 0,
    line: { color: rows.map((row) => row.objective), colorscale: "Viridis", reversescale: !higher, showscale: !narrow,
      colorbar: { title: { text: objective.split(".").at(-1) } } },
  }], {
    title: { text: `Trials by ${objective.replace(".", " ")}` }, // short: it names the downloaded image too
    margin: { t: 90, r: narrow ? 40 : 60, b: 30, l: narrow ? 50 : 70 },
    datarevision: JSON.stringify([narrow, rows.map((row) => [row.run, row.objective])]),
  });
}

/* ---- the trials ---- */

function showTrials(summary) {
  const table = document.getElementById("sweep-table");
  const settings = summary.search.dimensions.map((dimension) => dimension.setting);
  const head = table.tHead.rows[0];
  if (!head.cells.length) {
    head.append(el("th", { class: "number", text: "Trial" }), ...settings.map((s) => el("th", { text: s })),
      el("th", { text: "Outcome" }), el("th", { class: "number", text: "Epochs" }),
      el("th", { class: "number", text: summary.search.objective }));
    makeSortable(table);
  }
  const best = summary.best?.run;
  const rows = [...summary.rows].sort((a, b) => a.trial - b.trial || a.attempt - b.attempt);
  table.tBodies[0].replaceChildren(...rows.map((row) => el("tr", { "data-run": row.run, class: row.run === best ? "best" : "" }, [
    el("td", { class: "number", "data-sort": row.trial }, [el("a", { href: `/runs/${row.run}/`,
      text: `${row.trial + 1}${row.attempt > 1 ? " (again)" : ""}` })]),
    ...settings.map((setting) => el("td", { text: formatSetting(row.values[setting]) })),
    el("td", { text: outcomeWords(row) }),
    el("td", { class: "number", text: `${row.epochs_completed} of ${row.epochs}` }),
    el("td", { class: "number", "data-sort": row.objective ?? "", text: row.objective === null ? "—" : formatSetting(row.objective, 4) }),
  ])));
}

function outcomeWords(row) {
  if (row.outcome === "pruned") return `pruned after epoch ${row.pruned_at}`;
  if (row.outcome) return OUTCOMES[row.outcome] ?? row.outcome;
  return STATUSES[row.status] ?? row.status;
}

async function stopSweep() {
  const button = document.getElementById("sweep-stop");
  button.disabled = true;
  document.getElementById("sweep-error").textContent = "";
  try {
    state.group = await api("POST", `/api/groups/${state.id}/stop/`);
    show();
  } catch (error) {
    document.getElementById("sweep-error").textContent = error.message;
  } finally {
    button.disabled = false;
  }
}
