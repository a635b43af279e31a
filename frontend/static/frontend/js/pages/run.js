/* A training run watched live: its state, its metrics per epoch (the ones the user picks, smoothed
   or not, the kept epoch marked), its learning rate, speed and memory, and its log, pushed by the
   server as they are recorded (the run's event stream); Stop and Resume; then one Results card: the
   kept model (its test accuracy, downloads, report, who may see the run) above its evaluations. */
import { api } from "../api.js";
import { el } from "../dom.js";
import { evaluationView } from "../evaluation.js";
import { externalEvaluationForm } from "../external_evaluation.js";
import { explainUploadCard } from "../explain_upload.js";
import { jobView } from "../jobs.js";
import { drawMetricCharts, drawSystemCharts, MetricSeries, renderMetricPicker } from "../run_charts.js";
import { followStream } from "../stream.js";
import "../delete.js"; // sets up the page's Delete control (templates/frontend/_delete.html), if it has one

const LOG_LINES = 200; // the tail of the log the page keeps

const id = document.getElementById("run-root").dataset.run;
const series = new MetricSeries();
// Drawn first: the loss and the metric that picks the kept epoch (a segmentation's Dice per label beside it).
const root = document.getElementById("run-root").dataset;
const monitored = (root.monitor || "validation.accuracy").split(".")[1];
const firstPicked = ["loss", monitored === "loss" ? "accuracy" : monitored, ...(root.task === "segmentation" ? ["class_dice"] : [])];
const view = { picked: firstPicked, smoothing: 0, keptEpoch: null, revision: 0 };
// The results on the test subset: the evaluation the page was drawn with, if any.
const evaluation = evaluationView(document.getElementById("evaluation"), id,
  JSON.parse(document.getElementById("evaluation-data").textContent));
// Another dataset (for the project's owners, once the run has succeeded): its evaluation is shown in the results.
const externalCard = document.getElementById("external-evaluation");
if (externalCard) {
  externalEvaluationForm(externalCard, {
    onQueued: (queued) => {
      evaluation.show(queued);
      document.getElementById("evaluation").scrollIntoView({ behavior: "smooth", block: "start" });
    },
  });
}
let redrawing = false;

const showJob = jobView(`/api/runs/${id}/`, {
  status: document.getElementById("run-status"),
  message: document.getElementById("run-message"),
  progress: document.getElementById("run-progress"),
  eta: document.getElementById("run-eta"),
  stop: document.getElementById("run-stop"),
});

followStream(`/api/runs/${id}/events/`, {
  status: showStatus,
  point: addPoint,
  log: addLogLine,
  // The stream ends once the run has finished and every point was sent: the results are final.
  end: async () => {
    const run = await api("GET", `/api/runs/${id}/`);
    showResults(run);
    evaluation.load(run);
  },
});
setUpControls();

function showStatus(run) {
  showJob(run);
  const queue = document.getElementById("run-queue");
  queue.hidden = run.queue_position === null;
  if (run.queue_position !== null) {
    queue.textContent = run.queue_position === 1 ? `Next in the ${run.queue} queue: it starts when a worker of that queue is free.`
      : `Waiting in the ${run.queue} queue: ${run.queue_position - 1} run(s) before it.`;
  }
  const resume = document.getElementById("run-resume");
  if (resume) resume.hidden = !(run.finished && run.status !== "succeeded" && run.has_checkpoint);
  showKept(run.results && run.results.kept);
}

function showKept(kept) {
  if (!kept) return;
  const line = document.getElementById("run-kept");
  line.hidden = false;
  line.textContent = `Kept model: ${kept.reason}`;
  if (kept.epoch !== view.keptEpoch) {
    view.keptEpoch = kept.epoch;
    scheduleRedraw();
  }
}

function addPoint(point) {
  if (series.add(point)) scheduleRedraw();
}

/* Points come one event each, hundreds at once after a reconnection: draw once per frame. */
function scheduleRedraw() {
  if (redrawing) return;
  redrawing = true;
  requestAnimationFrame(() => {
    redrawing = false;
    view.revision += 1;
    drawAll();
  });
}

function drawAll() {
  const names = series.metricNames();
  document.getElementById("metric-empty").hidden = names.length > 0;
  renderMetricPicker(document.getElementById("metric-picker"), names, view.picked, (picked) => {
    view.picked = picked;
    drawAll();
  });
  drawMetricCharts(document.getElementById("metric-charts"), series, view);
  const system = document.getElementById("system-charts");
  if (series.xy("system", "learning_rate")) {
    system.querySelector("p")?.remove();
    drawSystemCharts(system, series, view.revision);
  }
}

function setUpControls() {
  const slider = document.getElementById("smoothing");
  slider.addEventListener("input", () => {
    view.smoothing = Number(slider.value);
    document.getElementById("smoothing-value").textContent = view.smoothing ? view.smoothing.toFixed(2) : "off";
    drawAll();
  });
  const resume = document.getElementById("run-resume");
  if (resume) {
    resume.addEventListener("click", async () => {
      resume.disabled = true;
      try {
        await api("POST", `/api/runs/${id}/resume/`);
        window.location.reload(); // a new stream, from the run queued again
      } catch (error) {
        resume.disabled = false;
        document.getElementById("run-action-error").textContent = error.message;
      }
    });
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

function showResults(run) {
  showStatus(run);
  const hint = document.getElementById("run-stop-hint");
  if (hint) hint.hidden = !(run.status !== "succeeded" && run.has_checkpoint);
  document.getElementById("results").hidden = false;
  const test = (run.results && run.results.test) || {};
  // A classifier's headline is its accuracy; a segmentation's (no accuracy) its mean foreground Dice.
  const dice = test.accuracy === undefined && test.mean_dice !== undefined && test.mean_dice !== null;
  document.getElementById("test-metric").textContent = dice ? "mean Dice" : "accuracy";
  document.getElementById("test-accuracy").textContent = dice ? test.mean_dice.toFixed(3)
    : test.accuracy !== undefined ? `${(test.accuracy * 100).toFixed(1)}%` : "not measured";
  document.getElementById("test-detail").textContent = test.loss !== undefined ? `(test loss ${test.loss.toFixed(4)}, measured as training ended)` : "";
  const link = document.getElementById("model-download");
  if (run.model_url) link.href = run.model_url; else link.hidden = true;
  const weights = document.getElementById("weights-download");
  if (run.weights_url) weights.href = run.weights_url; else weights.hidden = true;
  showExportCheck(run.results || {});
  document.getElementById("run-config").textContent = JSON.stringify({ spec: run.spec, provenance: run.provenance }, null, 2);
  setUpPublicToggle(run);
}

/* The export's parity check beside the download, in words: does the ONNX file, run by onnxruntime outside the
   toolkit, give the classes the toolkit gives? A failed check is said plainly; the file stays downloadable. */
function showExportCheck(results) {
  const line = document.getElementById("model-check");
  const { text, passed } = exportCheckWords(results);
  line.hidden = !text;
  line.textContent = text;
  line.className = passed ? "ok" : "failed";
}

function exportCheckWords(results) {
  const check = results.onnx;
  if (!check) {
    // Runs from before the class check: only the difference on the export's own example images was measured.
    const old = results.onnx_max_abs_difference;
    return old === undefined ? { text: "", passed: true }
      : { text: `Checked when exported: onnxruntime's outputs differ from the toolkit's by at most ${small(old)} on the example images.`, passed: old <= 1e-4 };
  }
  if (check.error) return { text: `No ONNX file: ${check.error}`, passed: false };
  const where = `${check.images} ${check.subset} image${check.images === 1 ? "" : "s"}`;
  const largest = check.max_abs_difference === null ? "not a number" : small(check.max_abs_difference);
  if (check.passed) {
    return { text: `Checked: onnxruntime gives the same classes as the toolkit on ${where}; largest difference ${largest}.`, passed: true };
  }
  const why = check.same_predictions
    ? `it gives the same classes on ${where}, but its outputs differ by up to ${largest} (at most ${small(check.tolerance)} is expected)`
    : `onnxruntime gives a different class than the toolkit for some of the ${where} (largest difference ${largest})`;
  return { text: `Check failed: ${why}. The file may not behave as the model does here; it stays available to download.`, passed: false };
}

/* 3e-6 rather than 0.000003: differences span many orders of magnitude; 0.25 stays 0.25. */
function small(value) {
  if (value === 0) return "0";
  return value >= 0.01 ? String(Number(value.toPrecision(2))) : value.toExponential(0);
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
explainUploadCard();
