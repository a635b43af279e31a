/* A training run watched live: its state, loss and accuracy per epoch and its log, pushed by the
   server as they are recorded (the run's event stream); Stop; then the test result, the model
   download and who may see the run. */
import { api } from "../api.js";
import { drawChart } from "../charts.js";
import { el } from "../dom.js";
import { jobView } from "../jobs.js";
import { followStream } from "../stream.js";

const LOG_LINES = 200; // the tail of the log the page keeps

const id = document.getElementById("run-root").dataset.run;
const series = {}; // "subset/metric" -> {x: epochs, y: values}
let lastPoint = 0; // the id of the newest metric point drawn
let redrawing = false;

const showJob = jobView(`/api/runs/${id}/`, {
  status: document.getElementById("run-status"),
  message: document.getElementById("run-message"),
  progress: document.getElementById("run-progress"),
  eta: document.getElementById("run-eta"),
  stop: document.getElementById("run-stop"),
});
// The empty axes first, so the page shows where the curves will go.
drawCharts();
followStream(`/api/runs/${id}/events/`, {
  status: showJob,
  point: addPoint,
  log: addLogLine,
  // The stream ends once the run has finished and every point was sent: the results are final.
  end: async () => showResults(await api("GET", `/api/runs/${id}/`)),
});

function addPoint(point) {
  const key = `${point.subset}/${point.name}`;
  series[key] = series[key] || { x: [], y: [] };
  series[key].x.push(point.epoch);
  series[key].y.push(point.value);
  lastPoint = Math.max(lastPoint, point.id);
  // Points come one event each, hundreds at once after a reconnection: draw once per frame.
  if (!redrawing) {
    redrawing = true;
    requestAnimationFrame(() => { redrawing = false; drawCharts(); });
  }
}

function addLogLine(line) {
  const log = document.getElementById("run-log");
  const following = log.scrollTop + log.clientHeight >= log.scrollHeight - 4; // at the bottom: stay there
  const time = new Date(line.recorded_at).toLocaleTimeString();
  log.append(el("div", { class: "log-line" }, [el("time", { text: time }), ` ${line.text}`]));
  while (log.childElementCount > LOG_LINES) log.firstElementChild.remove();
  document.getElementById("run-log-empty").hidden = true;
  if (following) log.scrollTop = log.scrollHeight;
}

function drawCharts() {
  for (const metric of ["loss", "accuracy"]) {
    // Fresh arrays each time: Plotly.react redraws only data it sees as new.
    const traces = ["train", "validation"].filter((subset) => series[`${subset}/${metric}`]).map((subset) => ({
      x: [...series[`${subset}/${metric}`].x], y: [...series[`${subset}/${metric}`].y], name: subset,
      mode: "lines+markers", line: { dash: subset === "train" ? "solid" : "dot" },
    }));
    drawChart(`${metric}-chart`, traces, {
      title: { text: metric }, datarevision: lastPoint,
      xaxis: { title: { text: "epoch" }, dtick: 1 },
      yaxis: metric === "accuracy" ? { range: [0, 1.02], tickformat: ".0%" } : { rangemode: "tozero" },
    });
  }
}

function showResults(run) {
  const hint = document.getElementById("run-stop-hint");
  if (hint) hint.hidden = true;
  document.getElementById("results").hidden = false;
  const test = (run.results && run.results.test) || {};
  document.getElementById("test-accuracy").textContent =
    test.accuracy !== undefined ? `${(test.accuracy * 100).toFixed(1)}%` : "not measured";
  const kept = run.results && run.results.kept ? ` Kept: ${run.results.kept.reason}` : "";
  document.getElementById("test-detail").textContent = (test.loss !== undefined ? `(test loss ${test.loss.toFixed(4)})` : "") + kept;
  const link = document.getElementById("model-download");
  if (run.model_url) link.href = run.model_url; else link.hidden = true;
  document.getElementById("run-config").textContent = JSON.stringify({ spec: run.spec, provenance: run.provenance }, null, 2);
  setUpPublicToggle(run);
}

function setUpPublicToggle(run) {
  const state = document.getElementById("public-state");
  const button = document.getElementById("run-public");
  const show = (isPublic) => {
    state.textContent = isPublic ? "Public: every user of this server can see this run and download its model."
      : "Private to the project's members.";
    if (button) button.textContent = isPublic ? "Make private" : "Share with everyone";
  };
  show(run.public);
  if (!button) return;
  let isPublic = run.public;
  button.addEventListener("click", async () => {
    try {
      isPublic = (await api("POST", `/api/runs/${id}/visibility/`, { public: !isPublic })).public;
      show(isPublic);
    } catch (error) { state.textContent = error.message; }
  });
}
