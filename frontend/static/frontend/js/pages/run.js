/* A training run watched live: loss and accuracy per epoch drawn as the points arrive, Stop,
   then the test result, the model download and who may see the run. */
import { api } from "../api.js";
import { drawChart } from "../charts.js";
import { watchJob } from "../jobs.js";

const id = document.getElementById("run-root").dataset.run;
const series = {}; // "subset/metric" -> {x: epochs, y: values}
let lastPoint = 0; // the id of the newest metric point drawn

watchJob(`/api/runs/${id}/`, {
  view: {
    status: document.getElementById("run-status"),
    message: document.getElementById("run-message"),
    progress: document.getElementById("run-progress"),
    eta: document.getElementById("run-eta"),
    stop: document.getElementById("run-stop"),
  },
  onUpdate: fetchMetrics,
  onFinish: showResults,
});

async function fetchMetrics() {
  const points = await api("GET", `/api/runs/${id}/metrics/?after=${lastPoint}`);
  for (const point of points) {
    const key = `${point.subset}/${point.name}`;
    series[key] = series[key] || { x: [], y: [] };
    series[key].x.push(point.epoch);
    series[key].y.push(point.value);
    lastPoint = Math.max(lastPoint, point.id);
  }
  // Draw the empty axes once even before the first point, so the page shows where the curves will go.
  if (points.length || !document.querySelector("#loss-chart .plot-container")) drawCharts();
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
