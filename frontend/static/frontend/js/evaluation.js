/* A run's evaluation on its test subset, as a clinician reads it (docs/results.md): the headline metrics with
   their 95% intervals and a line of plain words each, the confusion matrix, the per-class measures, the ROC curve
   with the operating points (two classes), the reliability diagram, and each sample's prediction, worst errors
   first. While the evaluation is queued or running the section says so, with the samples predicted of all (n of N)
   and, for the project's owners (the section's data-can-change="yes"), a Stop button, and asks again every 2 s
   until it has finished; leaving the page stops the asking (and cancels a request under way).

   evaluationView(section, runId, shown) returns { load }. shown: the newest evaluation as the page was drawn with
   it (the API's JSON, or null), shown at once. load(run), once the run has finished (its JSON), asks for the
   run's newest evaluation where the page had none (a run that succeeds is evaluated by itself). Everything it
   keeps is in one `state`. */
import { api, ApiError } from "./api.js";
import { drawChart } from "./charts.js";
import { el } from "./dom.js";
import { segmentationResults } from "./segmentation_results.js";

const POLL_MS = 2000;
const NONE = "—";

/* The headline metrics, in the order shown: their name, how a value is written, and what it means. */
export const METRICS = [
  ["accuracy", "Accuracy", "percent", "The share of samples given their true class."],
  ["balanced_accuracy", "Balanced accuracy", "percent",
    "The mean of each class's recall (sensitivity): a rare class counts as much as a common one."],
  ["macro_f1", "Macro F1", "score", "The mean over the classes of F1, the balance of precision and recall (1 is perfect)."],
  ["mcc", "Matthews correlation (MCC)", "score",
    "Agreement of the predicted with the true classes, counting every cell of the confusion matrix: 1 perfect, 0 no better than chance."],
  ["auc", "AUC (ROC)", "score",
    "The chance that a sample of the class is scored above one that is not (each class against the rest): 0.5 is chance, 1 perfect."],
  ["average_precision", "Average precision", "score", "The area under the precision–recall curve: how well the class is found without false alarms."],
  ["brier", "Brier score", "score", "The mean squared error of the predicted probabilities: lower is better, 0 is perfect."],
  ["ece", "Expected calibration error (ECE)", "score", "How far the model's confidence is from its accuracy, averaged over bins: lower is better."],
];
const PER_CLASS = [["sensitivity", "Sensitivity", "percent"], ["specificity", "Specificity", "percent"],
  ["precision", "Precision", "percent"], ["f1", "F1", "score"]];
const POINT_NAMES = { youden: "Youden", high_sensitivity: "High sensitivity", high_specificity: "High specificity", typed: "Chosen" };

export function formatValue(value, kind) {
  if (value === null || value === undefined || Number.isNaN(value)) return NONE;
  return kind === "percent" ? `${(value * 100).toFixed(1)}%` : value.toFixed(3);
}

/* "91.7% (95% CI 80.0–100.0%)" (or without "95% CI " where a heading says it), the interval a span of its own that
   stays on one line: a narrow cell breaks between the value and its interval. Each missing part is a dash. */
export function withInterval({ value, low, high } = {}, kind, level = 0.95, { prefix = true } = {}) {
  const shown = formatValue(value, kind);
  if ((low === null || low === undefined) && (high === null || high === undefined)) return [shown];
  const unit = kind === "percent" ? "%" : "";
  const bare = (x) => formatValue(x, kind).replace("%", "");
  const ci = prefix ? `${Math.round(level * 100)}% CI ` : "";
  return [shown, " ", el("span", { class: "interval", text: `(${ci}${bare(low)}–${bare(high)}${unit})` })];
}

export function evaluationView(section, runId, shown = null) {
  const state = {
    evaluation: null, // the evaluation shown (the API's JSON)
    timer: null, // the next poll, while the evaluation is unfinished
    requests: new Set(), // the AbortControllers of the requests under way
    leaving: false, // the page is being left: ask nothing more
    order: "worst", wrongOnly: false, predictionsAsked: 0, // the predictions table's controls, and which answer is the latest
    listed: [], // the run's evaluations, for the choice of the one shown
    stopping: null, // the id of the evaluation whose Stop was accepted (it says "Stopping…" until it has stopped)
  };
  const part = (name) => section.querySelector(`[data-part="${name}"]`);
  // Stop, for the project's owners: shown while the evaluation shown is unfinished.
  const stopButton = section.dataset.canChange === "yes"
    ? el("button", { type: "button", class: "danger", id: "evaluation-stop", hidden: true, text: "Stop" }) : null;
  if (stopButton) {
    part("status").after(stopButton);
    stopButton.addEventListener("click", stopEvaluation);
  }

  window.addEventListener("pagehide", () => {
    state.leaving = true;
    clearTimeout(state.timer);
    for (const controller of state.requests) controller.abort();
  });
  part("choice").addEventListener("change", (event) => {
    const chosen = state.listed.find((one) => String(one.id) === event.target.value);
    if (chosen) show(chosen);
  });
  // A segmentation's results have cards of their own (per label, per case): segmentation_results.js draws them.
  const segmentation = segmentationResults(part("segmentation"), { get, withInterval, formatValue });
  part("order").addEventListener("change", (event) => { state.order = event.target.value; showPredictions(); });
  part("wrong").addEventListener("change", (event) => { state.wrongOnly = event.target.checked; showPredictions(); });

  /* GET through an AbortController, so leaving the page cancels it; null once the page is being left. */
  async function get(url) {
    if (state.leaving) return null;
    const controller = new AbortController();
    state.requests.add(controller);
    try {
      const response = await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin", signal: controller.signal });
      const data = await response.json().catch(() => null);
      if (!response.ok) throw new ApiError(response.status, data);
      return data;
    } catch (error) {
      if (controller.signal.aborted) return null;
      throw error instanceof ApiError ? error : new ApiError(0, { message: "The server could not be reached." });
    } finally {
      state.requests.delete(controller);
    }
  }

  async function load(run) {
    // Already shown (or followed until it finishes), or the run had finished before the page was drawn: the page says so.
    if (state.evaluation || section.dataset.watch !== "yes") return;
    let listed;
    try { listed = await get(`/api/evaluations/?run=${runId}`); } catch (error) { return say(error.message, "error"); }
    if (!listed) return;
    const evaluations = listed.results || listed;
    listChoices(evaluations);
    const evaluation = evaluations.find((one) => one.subset === "test") || evaluations[0];
    if (!evaluation) {
      return say(run.status === "succeeded" ? "This run has not been evaluated yet." : "Only a run that succeeded is evaluated on its test subset.");
    }
    follow(evaluation);
  }

  /* Another of the run's evaluations (a subset, or another dataset): shown in place of the one shown. */
  function show(evaluation) {
    clearTimeout(state.timer);
    part("body").hidden = true;
    follow(evaluation);
    refreshChoices();
  }

  async function refreshChoices() {
    let listed;
    try { listed = await get(`/api/evaluations/?run=${runId}`); } catch { return; } // the choice stays as it was
    if (listed) listChoices(listed.results || listed);
  }

  /* The choice of the evaluation shown, when the run has more than one. */
  function listChoices(evaluations) {
    state.listed = evaluations;
    part("choice-box").hidden = evaluations.length < 2;
    const choice = part("choice");
    choice.replaceChildren(...evaluations.map((one) => el("option", { value: String(one.id), text: `${measuredOn(one)} (${one.status})` })));
    if (state.evaluation) choice.value = String(state.evaluation.id);
  }

  function follow(evaluation) {
    state.evaluation = evaluation;
    part("title").textContent = `Results on ${measuredOn(evaluation)}`;
    const stopping = !evaluation.finished && (evaluation.stop_requested || state.stopping === evaluation.id);
    if (stopButton) {
      stopButton.hidden = evaluation.finished || stopping;
      stopButton.disabled = false;
    }
    if (!evaluation.finished) {
      say(`Evaluating on ${measuredOn(evaluation)}…${stopping ? " Stopping…" : progressWords(evaluation)}`, "busy");
      state.timer = setTimeout(poll, POLL_MS);
    } else if (evaluation.status === "done") {
      say("");
      showResults(evaluation);
    } else {
      say(evaluation.status === "failed" ? `The evaluation failed: ${evaluation.message || "no reason was given."}`
        : `The evaluation was ${evaluation.status}${evaluation.message ? `: ${evaluation.message}` : "."}`, "error");
    }
  }

  /* Stop asks the server; the evaluation itself says when it has stopped (the next poll). */
  async function stopEvaluation() {
    const asked = state.evaluation;
    if (!asked) return;
    stopButton.disabled = true;
    try {
      await api("POST", `/api/evaluations/${asked.id}/stop/`);
      state.stopping = asked.id;
      if (state.evaluation === asked) say(`Evaluating on ${measuredOn(asked)}… Stopping…`, "busy");
      stopButton.hidden = true;
    } catch (error) {
      stopButton.disabled = false;
      // 409: it ended meanwhile, which the next poll shows; anything else is said.
      if (error.status !== 409) say(error.message, "error");
    }
  }

  async function poll() {
    let evaluation;
    try { evaluation = await get(`/api/evaluations/${state.evaluation.id}/`); } catch (error) {
      console.warn(`Watching the evaluation: ${error.message}`); // a restart or a lost connection: ask again
      state.timer = state.leaving ? null : setTimeout(poll, POLL_MS);
      return;
    }
    if (!evaluation) return;
    follow(evaluation);
    if (evaluation.finished) refreshChoices(); // the choice names each evaluation's state: this one's has changed
  }

  function say(text, kind = "") {
    const line = part("status");
    line.textContent = text;
    line.hidden = !text;
    line.className = kind;
  }

  function showResults(evaluation) {
    const results = evaluation.results || {};
    part("body").hidden = false;
    const level = results.level || 0.95;
    // The results say which task made them: a segmentation's replace the classifier's cards (ROC, calibration, confusion).
    const segmented = results.task === "segmentation";
    part("segmentation").hidden = !segmented;
    part("classification").hidden = segmented;
    if (segmented) {
      part("summary").textContent = `${results.samples} ${evaluation.subset} cases${patientWords(results)}; `
        + `${Math.round(level * 100)}% intervals from ${results.resamples} bootstrap resamples of ${bootstrapUnit(results)}.`;
      segmentation.show(evaluation);
      return;
    }
    const samples = evaluation.dataset ? `samples of dataset ${evaluation.dataset_name}` : `${evaluation.subset} samples`;
    const leftOut = Object.entries(evaluation.class_mapping || {}).filter(([, to]) => !to).map(([from]) => from);
    const left = leftOut.length ? ` (classes left out: ${leftOut.join(", ")})` : "";
    part("summary").textContent = `${results.samples} ${samples}${left}${patientWords(results)}; `
      + `${Math.round(level * 100)}% intervals from ${results.resamples} bootstrap resamples of ${bootstrapUnit(results)}, stratified by class.`;
    const positive = positiveClass(results);
    part("positive").hidden = !positive;
    part("positive").replaceChildren(...(positive ? [
      "Positive class: ", el("strong", { text: positive }),
      el("span", { class: "muted", text: " (sensitivity and specificity of the ROC curve and the operating points, AUC, average precision and Brier score are of it)" }),
    ] : []));
    part("metrics").replaceChildren(...METRICS.map(([key, name, kind, help]) => el("tr", {}, [
      el("th", { scope: "row" }, [name, el("span", { class: "metric-help muted", text: help })]),
      el("td", { "data-metric": key }, withInterval((results.metrics || {})[key], kind, level)),
    ])));
    linkDownloads(evaluation);
    showConfusion(results);
    showPerClass(results, level);
    showCurves(results, evaluation);
    showPredictions();
  }

  /* The metrics and the predictions as CSV, XLSX and JSON files (GET /api/evaluations/{id}/export/). */
  function linkDownloads(evaluation) {
    for (const table of ["metrics", "predictions"]) {
      for (const link of part(`${table}-downloads`).querySelectorAll("a[data-format]")) {
        link.href = `/api/evaluations/${evaluation.id}/export/?table=${table}&file=${link.dataset.format}`;
      }
    }
  }

  function showConfusion({ classes = [], confusion = {} }) {
    const counts = confusion.counts || [];
    const shares = confusion.normalised || [];
    part("confusion").replaceChildren(
      el("thead", {}, [el("tr", {}, [el("th", { text: "True ↓ · Predicted →" }), ...classes.map((name) => el("th", { scope: "col", class: "number", text: name }))])]),
      el("tbody", {}, classes.map((name, row) => el("tr", {}, [
        el("th", { scope: "row", text: name }),
        ...classes.map((_, column) => {
          const share = (shares[row] || [])[column];
          const cell = el("td", { class: `number ${row === column ? "diagonal" : ""}`, "data-cell": `${row},${column}` }, [
            el("strong", { text: String((counts[row] || [])[column] ?? NONE) }), " ",
            el("span", { class: "muted", text: share === undefined || share === null ? "" : `(${(share * 100).toFixed(0)}%)` })]);
          cell.style.setProperty("--share", String(share || 0));
          return cell;
        }),
      ]))),
    );
  }

  function showPerClass({ per_class: perClass = {}, classes = [] }, level) {
    part("per-class").replaceChildren(
      el("thead", {}, [el("tr", {}, [el("th", { text: "Class" }), ...PER_CLASS.map(([, name]) => el("th", { text: name }))])]),
      el("tbody", {}, classes.map((name, c) => el("tr", {}, [
        el("th", { scope: "row", text: name }),
        ...PER_CLASS.map(([key, , kind]) => el("td", {}, withInterval((perClass[key] || [])[c], kind, level, { prefix: false }))),
      ]))),
    );
  }

  function showCurves(results, evaluation) {
    const points = results.operating_points || [];
    const positive = positiveClass(results);
    const where = measuredShort(evaluation); // "test", "validation" or the other dataset's name: what the points were measured on
    const roc = (results.roc || []).map((curve) => ({
      x: curve.x, y: curve.y, mode: "lines", name: positive ? `ROC (positive class: ${curve.class})` : curve.class,
      customdata: curve.thresholds, hovertemplate: "FPR %{x:.2f}, TPR %{y:.2f}, threshold %{customdata:.3f}<extra></extra>",
    }));
    const chance = { x: [0, 1], y: [0, 1], mode: "lines", name: "Chance", line: { dash: "dot", color: "#94a3b8" }, hoverinfo: "skip" };
    // Points that fall on one spot (several rules may choose one threshold) are one marker, named by all of them.
    const spots = new Map();
    for (const point of points.filter((one) => one.test.sensitivity !== null && one.test.specificity !== null)) {
      const key = `${point.test.sensitivity},${point.test.specificity}`;
      const name = POINT_NAMES[point.name] || point.name;
      if (spots.has(key)) spots.get(key).names.push(name); else spots.set(key, { ...point, names: [name] });
    }
    const marked = [...spots.values()];
    const markers = marked.length ? [{
      x: marked.map((point) => 1 - point.test.specificity), y: marked.map((point) => point.test.sensitivity),
      text: marked.map((point) => point.names.join("<br>")), mode: "markers+text", textposition: "bottom right",
      name: `Operating points (${where})`, marker: { size: 10, symbol: "diamond", color: "#b91c1c" },
      hovertemplate: "%{text}: sensitivity %{y:.2f}, specificity %{customdata:.2f}<extra></extra>",
      customdata: marked.map((point) => point.test.specificity),
    }] : [];
    const axes = (x, y) => ({ xaxis: { title: { text: x }, range: [-0.02, 1.02] }, yaxis: { title: { text: y }, range: [-0.02, 1.05] } });
    const rocChart = part("roc");
    // The positive class in the legend and the line above (the title stays "ROC curve": it names the downloaded files).
    if (roc.length) drawChart(rocChart, [...roc, chance, ...markers], { title: { text: "ROC curve" }, ...axes("False positive rate (1 − specificity)", "True positive rate (sensitivity)") });
    else rocChart.replaceChildren(el("p", { class: "muted", text: `No ROC curve: ${measuredOn(evaluation)} holds a single class.` }));

    const bins = ((results.calibration || {}).bins || []).filter((bin) => bin.count > 0);
    drawChart(part("reliability"), [
      { x: [0, 1], y: [0, 1], mode: "lines", name: "Perfectly calibrated", line: { dash: "dot", color: "#94a3b8" }, hoverinfo: "skip" },
      { x: bins.map((bin) => bin.confidence), y: bins.map((bin) => bin.accuracy), customdata: bins.map((bin) => bin.count),
        mode: "lines+markers", name: "Model", marker: { size: bins.map((bin) => 6 + Math.min(10, Math.sqrt(bin.count) * 2)) },
        hovertemplate: "confidence %{x:.2f}, accuracy %{y:.2f}, %{customdata} samples<extra></extra>" },
    ], { title: { text: "Reliability diagram" }, ...axes("Confidence (mean top probability)", "Accuracy in the bin") });

    const table = part("points");
    table.closest("[data-part='points-box']").hidden = !points.length;
    part("points-measured").textContent = where.charAt(0).toUpperCase() + where.slice(1);
    part("points-hint").textContent = `Thresholds on the probability of the positive class${positive ? ` (${positive})` : ""}, chosen on `
      + `the run's validation subset and then applied to ${measuredOn(evaluation)}.`;
    table.querySelector("tbody").replaceChildren(...points.map((point) => el("tr", {}, [
      el("th", { scope: "row", text: POINT_NAMES[point.name] || point.name }),
      el("td", { class: "number", text: formatValue(point.threshold, "score") }),
      ...["validation", "test"].flatMap((subset) => ["sensitivity", "specificity"].map((measure) =>
        el("td", { class: "number", text: formatValue((point[subset] || {})[measure], "percent") }))),
    ])));
  }

  async function showPredictions() {
    const asked = ++state.predictionsAsked;
    const query = new URLSearchParams({ order: state.order });
    if (state.wrongOnly) query.set("wrong", "1");
    const body = part("predictions").querySelector("tbody");
    let answer;
    try { answer = await get(`/api/evaluations/${state.evaluation.id}/predictions/?${query}`); } catch (error) {
      part("predictions-note").textContent = error.message;
      return;
    }
    if (!answer || asked !== state.predictionsAsked) return; // the page is being left, or a newer choice was made
    const rows = answer.results || answer;
    const total = answer.count ?? rows.length;
    part("predictions-note").textContent = !rows.length ? (state.wrongOnly ? "No sample was given the wrong class." : "No predictions were stored.")
      : total > rows.length ? `The first ${rows.length} of ${total} samples.` : `${total} sample${total === 1 ? "" : "s"}.`;
    body.replaceChildren(...rows.map((row) => el("tr", { class: row.correct ? "" : "wrong", "data-prediction": row.id }, [
      // The sample opens with this run's heat map over it (explained on the way there if it was not yet: explain.js).
      el("td", {}, [row.sample ? el("a", { href: `/samples/${row.sample}/?run=${state.evaluation.run}`, text: `#${row.sample}`,
        title: "Open the sample with this model's heat map" }) : NONE]),
      el("td", { text: row.patient || NONE }),
      el("td", { text: row.truth }),
      el("td", { text: row.predicted }),
      el("td", { class: "number", "data-value": row.truth_probability, text: formatValue(row.truth_probability, "score") }),
      el("td", { class: "number", "data-value": row.confidence, text: formatValue(row.confidence, "score") }),
    ])));
    body.closest("table").hidden = !rows.length;
  }

  if (shown) {
    follow(shown);
    refreshChoices(); // the run's other evaluations (another subset, another dataset), to choose from
  }
  return { load, show };
}

/* "the test subset", or "dataset Hospital B" for an evaluation on another dataset. */
/* " 120 of 400 samples predicted (the validation subset, for the operating points)", or "" before a worker has
   counted (a queued evaluation). */
export function progressWords(evaluation) {
  if (evaluation.status === "queued" || !evaluation.progress_total) return "";
  const what = evaluation.progress_message ? ` (${evaluation.progress_message.replace(/^Predicting /, "")})` : "";
  return ` ${evaluation.progress_done} of ${evaluation.progress_total} samples predicted${what}`;
}

export function measuredOn(evaluation) {
  return evaluation.dataset ? `dataset ${evaluation.dataset_name}` : `the ${evaluation.subset} subset`;
}

/* A short name of what an evaluation measured, for a legend or a column: "test", "validation", or the other
   dataset's name (an evaluation on another dataset is not the test subset). */
export function measuredShort(evaluation) {
  return evaluation.dataset ? evaluation.dataset_name : evaluation.subset;
}

/* The positive class of a two-class task: the second class (the one AUC, average precision, Brier score, the ROC
   curve and the operating points are of); null for more classes. */
export function positiveClass(results) {
  const classes = (results && results.classes) || [];
  return classes.length === 2 ? classes[1] : null;
}

/* Whether the samples' patients were known: results count the samples without a patient ID
   (`samples_without_patient`); results from before the count hold as many "patients" as samples when each sample
   was its own unit. */
function withoutPatients(results) {
  const without = results.samples_without_patient;
  if (without === undefined || without === null) return results.patients === results.samples ? "each" : 0;
  return without >= results.samples ? "all" : without;
}

/* What the bootstrap drew: "patients", or "images" where no patient ID was known (each image its own unit). */
export function bootstrapUnit(results) {
  const without = withoutPatients(results);
  return without === "all" || without === "each" ? "images" : "patients";
}

/* " of 10 patients", ", without patient IDs (each image its own unit)", or with some samples unknown
   " of 10 patients (3 samples without a patient ID count as their own)". */
export function patientWords(results) {
  const without = withoutPatients(results);
  if (without === "all") return ", without patient IDs (each image is its own unit)";
  if (without === "each") return ", each image its own unit";
  const some = without ? ` (${without} sample${without === 1 ? "" : "s"} without a patient ID count${without === 1 ? "s" : ""} as their own)` : "";
  return ` of ${results.patients} patient${results.patients === 1 ? "" : "s"}${some}`;
}
