/* The learning-rate finder, for the run form: a short sweep of rising rates on the training images with
   the form's settings (a job, POST /api/rate-searches/), the loss against the rate on a chart, and a
   suggested rate the user can take with one click (docs/rate-finder.md).

   mountRateFinder(element, { settings, accept })
     settings(): the run form's request body as it stands (what it would POST to /api/runs/);
     accept(rate): puts a rate into the form (its learning rate, or its phases'); may return the words saying where.
   The page must load vendor/plotly.min.js, as every page that draws charts does (js/charts.js). */
import { api, ApiError } from "./api.js";
import { drawChart } from "./charts.js";
import { el } from "./dom.js";
import { watchJob } from "./jobs.js";

export function mountRateFinder(element, { settings, accept }) {
  const view = parts();
  element.replaceChildren(view.root);
  view.find.addEventListener("click", () => search(view, settings));
  view.use.addEventListener("click", () => {
    const rate = Number(view.use.dataset.rate);
    view.used.textContent = accept(rate) || `The learning rate is now ${formatRate(rate)}.`;
  });
}

/* A Stop button per search: the watcher wires its button to that search's address. */
function stopButton() {
  return el("button", { type: "button", class: "danger", text: "Stop", hidden: "" });
}

function parts() {
  const view = {
    find: el("button", { type: "button", class: "primary", text: "Find a learning rate" }),
    status: el("span", { class: "status", hidden: "" }),
    message: el("span"),
    progress: el("div", { class: "progress", hidden: "" }, [el("div", { class: "bar" }), el("span", { class: "label" })]),
    stop: stopButton(),
    errors: el("ul", { class: "error", role: "alert" }),
    chart: el("div", { class: "chart rate-finder-chart", hidden: "" }),
    suggestion: el("strong", { class: "big rate-finder-suggestion" }),
    use: el("button", { type: "button", class: "primary", text: "Use this rate", hidden: "" }),
    used: el("span", { class: "hint", role: "status" }),
  };
  view.root = el("div", { class: "rate-finder" }, [
    el("p", { class: "toolbar" }, [view.find, el("span", {
      class: "hint", text: "About a hundred training steps at rising rates, with the form's settings: the loss against the "
        + "rate, and a rate to start from.",
    })]),
    el("p", {}, [view.status, " ", view.message]), view.progress, view.stop, view.errors, view.chart,
    el("p", { class: "toolbar" }, [view.suggestion, view.use, view.used]),
  ]);
  return view;
}

async function search(view, settings) {
  reset(view);
  view.find.disabled = true;
  let job;
  try {
    job = await api("POST", "/api/rate-searches/", settings());
  } catch (error) {
    showErrors(view, error);
    view.find.disabled = false;
    return;
  }
  view.status.hidden = false;
  const stop = stopButton();
  view.stop.replaceWith(stop);
  view.stop = stop;
  watchJob(`/api/rate-searches/${job.id}/`, {
    view: { status: view.status, message: view.message, progress: view.progress, stop: view.stop },
    onFinish: (finished) => {
      view.find.disabled = false;
      view.find.textContent = "Search again";
      showResults(view, finished.results);
    },
  });
}

function reset(view) {
  view.errors.replaceChildren();
  view.chart.hidden = true;
  // The last search's words go too: a stale "Done" must not stand for the search just asked for.
  view.suggestion.textContent = view.used.textContent = view.message.textContent = view.status.textContent = "";
  view.use.hidden = view.status.hidden = true;
}

/* A 400 names each setting it refuses ("optimizer.momentum"): said in words, one line each. */
function showErrors(view, error) {
  const errors = error instanceof ApiError ? error.errors : [{ message: error.message, field: null }];
  view.errors.replaceChildren(...errors.map(({ field, message }) => el("li", {
    text: field && field !== "__all__" ? `${field.replaceAll(/[._]/g, " ")}: ${message}` : message,
  })));
}

function showResults(view, results) {
  if (!results || !results.rates || !results.rates.length) return; // failed, or stopped before the first step
  drawCurve(view.chart, results);
  if (results.suggestion === null) return; // the job's message says why
  const rate = Number(results.suggestion.toPrecision(2));
  view.suggestion.textContent = `Suggested learning rate: ${formatRate(rate)}`;
  view.use.dataset.rate = String(rate);
  view.use.hidden = false;
}

function drawCurve(chart, { rates, losses, suggestion }) {
  chart.hidden = false;
  const traces = [{ type: "scatter", mode: "lines", name: "training loss (smoothed)", x: rates, y: losses, line: { color: "#2563eb" } }];
  const shapes = [];
  if (suggestion !== null) {
    const at = rates.indexOf(suggestion);
    traces.push({ type: "scatter", mode: "markers", name: `suggested: ${formatRate(suggestion)}`, x: [suggestion], y: [losses[at]],
      marker: { size: 12, color: "#dc2626", symbol: "diamond" } });
    shapes.push({ type: "line", xref: "x", yref: "paper", x0: suggestion, x1: suggestion, y0: 0, y1: 1,
      line: { color: "#dc2626", dash: "dot", width: 1 } });
  }
  drawChart(chart, traces, { title: { text: "Loss against learning rate" }, shapes,
    xaxis: { type: "log", title: { text: "learning rate" }, exponentformat: "power" },
    yaxis: { title: { text: "training loss" } } });
}

/* 0.0086 and 0.3 as such; smaller rates as 2.5e-5 (few read 0.000025 at a glance). */
function formatRate(rate) {
  return rate >= 1e-3 ? String(Number(rate.toPrecision(2))) : rate.toExponential(1);
}
