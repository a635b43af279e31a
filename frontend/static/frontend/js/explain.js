/* The sample page's Explain card: a run's kept model on this sample (POST /api/explanations/, computed by a worker),
   its class probabilities and a Grad-CAM heat map laid over the viewer's plane, with an opacity slider and a legend.

   explainPanel({ sampleId, projectId, datasetId, plane }) returns { draw(axis, index) }, which the viewer calls
   each time it draws a plane so the heat map follows it. The page opens with an explanation when its address has
   ?explain=<explanation id>, or explains with ?run=<run id> (the evaluation's predictions table links so): the run's
   explanation of this sample is reused where there is one, else queued, and its progress shown until it is done.
   Leaving the page stops the asking. */
import { api } from "./api.js";
import { el, setProgress } from "./dom.js";

const POLL_MS = 1500;
const UNFINISHED = ["queued", "running"];

/* One row per class: its name (the predicted one marked) and its probability as a bar and a percentage. Also the
   upload card's (js/explain_upload.js). */
export function probabilityRows(classes, probabilities, predicted) {
  return classes.map((name, k) => el("tr", { class: name === predicted ? "predicted" : "" }, [
    el("td", { text: name === predicted ? `${name} (predicted)` : name }),
    el("td", {}, [el("span", { class: "bar-cell" }, [
      el("span", { class: "probability-bar", style: `width: ${Math.round(probabilities[k] * 120)}px` }),
      el("span", { text: `${(probabilities[k] * 100).toFixed(1)}%` })])]),
  ]));
}

export function explainPanel({ sampleId, projectId, datasetId }) {
  const form = document.getElementById("explain-form");
  const runField = form.querySelector('[name="run"]');
  const progress = document.getElementById("explain-progress");
  const status = document.getElementById("explain-status");
  const result = document.getElementById("explain-result");
  const heat = document.getElementById("heat");
  const controls = document.getElementById("heat-controls");
  const opacity = controls.querySelector('[name="opacity"]');
  const showHeat = controls.querySelector('[name="show-heat"]');
  const state = { explanation: null, timer: null, leaving: false, plane: { axis: "axial", index: null } };

  function say(text) { status.textContent = text; }

  function clearErrors() { form.querySelectorAll("[data-error-for]").forEach((node) => { node.textContent = ""; }); }

  /* A refusal beside its field (run or sample), anything else under the form. */
  function showError(error) {
    const spot = form.querySelector(`[data-error-for="${error.errors?.[0]?.field}"]`);
    if (spot) { spot.textContent = error.message; spot.setAttribute("role", "alert"); say(""); } else say(error.message);
  }

  async function listRuns(wanted) {
    const answer = await api("GET", `/api/runs/?project=${projectId}`);
    const runs = (answer.results || answer).filter((run) => run.status === "succeeded" && run.dataset === datasetId);
    if (wanted && !runs.some((run) => run.id === wanted)) {
      try { runs.unshift(await api("GET", `/api/runs/${wanted}/`)); } catch { /* not readable: the request says so */ }
    }
    runField.replaceChildren(...runs.map((run) => el("option", { value: run.id, text: `Run ${run.id}: ${run.name}` })));
    if (!runs.length) runField.append(el("option", { value: "", text: "(no run trained on this dataset has finished)" }));
    if (wanted) runField.value = String(wanted);
    document.getElementById("explain-button").disabled = !runs.length;
  }

  /* The run's explanation of this sample: the one there is (queued, running or done), else a new one. */
  async function explainWith(runId) {
    clearErrors();
    stopPolling();
    say("Asking for the explanation…");
    try {
      const earlier = await api("GET", `/api/explanations/?run=${runId}&sample=${sampleId}`);
      const usable = (earlier.results || earlier).find((e) => e.status !== "failed" && e.status !== "stopped");
      show(usable || await api("POST", "/api/explanations/", { run: runId, sample: sampleId }));
    } catch (error) { showError(error); }
  }

  async function open(explanationId) {
    try { show(await api("GET", `/api/explanations/${explanationId}/`)); } catch (error) { say(error.message); }
  }

  function show(explanation) {
    state.explanation = explanation;
    const address = new URL(window.location.href);
    address.searchParams.set("explain", explanation.id);
    address.searchParams.delete("run");
    window.history.replaceState(null, "", address);
    // A run of another dataset (an external evaluation's) is not among this dataset's: it is named all the same.
    if (!runField.querySelector(`option[value="${explanation.run}"]`)) {
      runField.prepend(el("option", { value: explanation.run, text: `Run ${explanation.run}` }));
      document.getElementById("explain-button").disabled = false;
    }
    runField.value = String(explanation.run);
    if (UNFINISHED.includes(explanation.status)) {
      const words = explanation.status === "queued" ? "Waiting for a worker…" : explanation.progress_message || "Working…";
      setProgress(progress, explanation.progress, words);
      say(`Explanation ${explanation.id} by run ${explanation.run} is ${explanation.status}.`);
      state.timer = setTimeout(() => poll(explanation.id), POLL_MS);
      return;
    }
    progress.hidden = true;
    if (explanation.status !== "done") {
      say(`Explanation ${explanation.id} ${explanation.status}: ${explanation.message}`);
      return;
    }
    showResults(explanation);
  }

  async function poll(explanationId) {
    if (state.leaving) return;
    try { show(await api("GET", `/api/explanations/${explanationId}/`)); } catch (error) { say(error.message); }
  }

  function stopPolling() {
    clearTimeout(state.timer);
    state.timer = null;
  }

  function showResults(explanation) {
    const { classes, probabilities, predicted, explained_class: explained, layer, windows, note } = explanation.results;
    say(explanation.message);
    result.hidden = false;
    document.getElementById("probabilities").hidden = Boolean(explanation.mask_url);
    if (explanation.mask_url) { // a segmentation run's model: its labels over the plane, the sizes in the message
      controls.hidden = false;
      document.getElementById("heat-legend-words").textContent = "The model's label for each voxel, in the classes' colours.";
      draw(state.plane.axis, state.plane.index);
      return;
    }
    document.querySelector("#probabilities tbody").replaceChildren(...probabilityRows(classes, probabilities, predicted));
    controls.hidden = !explanation.heat_map_url;
    if (!explanation.heat_map_url) {
      heat.hidden = true;
      say(`${explanation.message} ${note || ""}`.trim());
      return;
    }
    const stitched = windows > 1 ? ` Stitched from ${windows} sliding windows, as the model read this volume.` : "";
    document.getElementById("heat-legend-words").textContent = `Grad-CAM of the class “${explained}” at the layer ${layer}: `
      + `red where the model found the most evidence for ${explained}, blue the least, nothing where none. Scaled to this `
      + `sample's own peak, so colours compare regions of one sample, not samples. It shows where the model looked, not `
      + `a finding: a model can look at the right place for the wrong reason.${stitched}`;
    draw(state.plane.axis, state.plane.index);
  }

  /* The heat map's plane under the viewer's (same axis and index, same grid). */
  function draw(axis, index) {
    state.plane = { axis, index };
    const explanation = state.explanation;
    const overlay = explanation && (explanation.heat_map_url || explanation.mask_url);
    if (!overlay) return;
    heat.src = `${overlay}?${new URLSearchParams({ axis, index })}`;
    heat.hidden = !showHeat.checked;
  }

  opacity.addEventListener("input", () => { heat.style.opacity = opacity.value; });
  showHeat.addEventListener("change", () => {
    heat.hidden = !showHeat.checked || !(state.explanation?.heat_map_url || state.explanation?.mask_url);
  });
  heat.style.opacity = opacity.value;
  form.addEventListener("submit", () => { if (runField.value) explainWith(Number(runField.value)); });
  window.addEventListener("pagehide", () => { state.leaving = true; stopPolling(); });

  const params = new URLSearchParams(window.location.search);
  const wantedRun = Number(params.get("run")) || null;
  listRuns(wantedRun).catch((error) => say(error.message)).then(() => {
    if (params.get("explain")) open(params.get("explain"));
    else if (wantedRun) explainWith(wantedRun);
  });
  return { draw };
}
