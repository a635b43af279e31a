/* The run page's "Evaluate on another dataset" card (docs/results.md, "Another dataset"): choosing a dataset asks
   whether it fits the model and how its classes map onto the model's (GET /api/evaluations/class-mapping/); a dataset
   that does not fit is refused beside the field at once, before anything is queued. The mapping is shown as a table
   whose every row can be changed (or the class left out); Evaluate queues the evaluation (POST /api/evaluations/) and
   hands it to the page's results section. A dataset holding some of the run's own images is flagged beside the field
   (all of them is refused by the API: code same_images). While the request is under way, and while the evaluation
   is queued (with its place in the queue) or running (with its progress), the card shows it and Evaluate stays
   disabled; an evaluation on another dataset still under way when the page opens is followed the same way. */
import { api } from "./api.js";
import { clearErrors, el, showErrors } from "./dom.js";
import { watchJob } from "./jobs.js";
import { measuredOn } from "./evaluation.js";

const LEAVE_OUT = "";

export function externalEvaluationForm(card, { onQueued }) {
  const runId = Number(card.dataset.run);
  const form = card.querySelector("#external-form");
  const datasetField = card.querySelector("#external-dataset");
  const mappingBox = card.querySelector("#external-mapping-box");
  const submit = card.querySelector("#external-submit");
  const warning = card.querySelector("#external-dataset-warning");
  const job = {
    box: card.querySelector("#external-job"), what: card.querySelector("#external-what"),
    queue: card.querySelector("#external-queue"),
    view: { status: card.querySelector("#external-status"), message: card.querySelector("#external-message"),
      progress: card.querySelector("#external-progress") },
  };
  const state = { asked: 0, busy: false, fits: false }; // asked: which answer is the latest (a slow one for an earlier choice is dropped)

  datasetField.addEventListener("change", choose);
  form.addEventListener("submit", (event) => { event.preventDefault(); evaluate(); });
  followUnfinished();

  /* Evaluate is offered once a chosen dataset fits, and never while one is being queued, waits or runs. */
  function updateSubmit() {
    submit.disabled = state.busy || !state.fits || !datasetField.value;
  }

  async function choose() {
    clearErrors(form);
    mappingBox.hidden = true;
    warning.hidden = true;
    state.fits = false;
    updateSubmit();
    const dataset = datasetField.value;
    if (!dataset) return;
    const mine = ++state.asked;
    let facts;
    try {
      facts = await api("GET", `/api/evaluations/class-mapping/?run=${runId}&dataset=${dataset}`);
    } catch (error) {
      if (mine === state.asked) showErrors(form, error);
      return;
    }
    if (mine !== state.asked) return;
    showMapping(facts);
    showShared(facts);
    state.fits = true;
    updateSubmit();
  }

  /* Some of the dataset's images are the run's own (a copy of its data): said beside the field before launching. */
  function showShared({ shared_samples: shared = 0, shared_with_training: trained = 0, samples = {} }) {
    const total = Object.values(samples).reduce((sum, count) => sum + count, 0);
    warning.hidden = !shared;
    if (!shared) return;
    const trainedWords = trained ? `, ${trained} of them images the model was trained on` : "";
    warning.textContent = `${shared} of this dataset's ${total || shared} samples are images of the run's own dataset${trainedWords}: `
      + "on those this is not an external validation, and the figures will look better than on new data.";
  }

  function showMapping({ run_classes: runClasses, dataset_classes: datasetClasses, samples, suggested }) {
    const rows = datasetClasses.map((name) => el("tr", { "data-class": name }, [
      el("td", { text: name || "(unlabelled)" }),
      el("td", { class: "number", text: String(samples[name] ?? 0) }),
      el("td", {}, [choice(name, runClasses, suggested[name])]),
    ]));
    card.querySelector("#external-mapping tbody").replaceChildren(...rows);
    mappingBox.hidden = false;
    if (!Object.values(suggested).some(Boolean)) {
      card.querySelector('[data-error-for="class_mapping"]').textContent =
        "No class name matches the model's: choose the model's class for each class to evaluate.";
    }
  }

  function choice(name, runClasses, suggestion) {
    const select = el("select", { "aria-label": `The model's class for ${name || "(unlabelled)"}` },
      [el("option", { value: LEAVE_OUT, text: "— leave out —" }), ...runClasses.map((run) => el("option", { value: run, text: run }))]);
    select.value = suggestion || LEAVE_OUT;
    return select;
  }

  function mapping() {
    return Object.fromEntries([...card.querySelectorAll("#external-mapping tbody tr")].map((row) => {
      const chosen = row.querySelector("select").value;
      return [row.dataset.class, chosen === LEAVE_OUT ? null : chosen];
    }));
  }

  async function evaluate() {
    if (state.busy) return; // a second press while the first is under way
    clearErrors(form);
    state.busy = true;
    updateSubmit();
    showJob({ status: "queued", finished: false, progress_done: 0, progress_total: 0 }, "Sending…");
    let evaluation;
    try {
      evaluation = await api("POST", "/api/evaluations/", {
        run: runId, dataset: Number(datasetField.value), class_mapping: mapping(),
      });
    } catch (error) {
      job.box.hidden = true;
      state.busy = false;
      updateSubmit();
      showErrors(form, error);
      return;
    }
    follow(evaluation);
    onQueued(evaluation);
  }

  /* An evaluation on another dataset still under way when the page opens: shown, and Evaluate waits for it. */
  async function followUnfinished() {
    let listed;
    try { listed = await api("GET", `/api/evaluations/?run=${runId}`); } catch { return; }
    const unfinished = (listed.results || listed).find((one) => one.dataset && !one.finished);
    if (unfinished && !state.busy) follow(unfinished);
  }

  /* The evaluation queued here, followed until it ends: its state, its place in the queue, its progress. */
  function follow(evaluation) {
    state.busy = true;
    updateSubmit();
    showJob(evaluation);
    watchJob(`/api/evaluations/${evaluation.id}/`, {
      view: job.view,
      onUpdate: (current) => showJob(current),
      onFinish: (ended) => {
        showJob(ended);
        state.busy = false;
        updateSubmit();
      },
    });
  }

  function showJob(evaluation, sending = "") {
    job.box.hidden = false;
    const ended = evaluation.finished;
    job.what.textContent = sending || (evaluation.dataset ? `Evaluation on ${measuredOn(evaluation)}` : "")
      + (ended && evaluation.status === "done" ? ": its results are shown in the Results card above." : "");
    job.view.status.className = `status status-${evaluation.status}`;
    job.view.status.textContent = sending ? "Queuing" : evaluation.status.charAt(0).toUpperCase() + evaluation.status.slice(1);
    job.view.progress.hidden = Boolean(ended);
    const position = evaluation.queue_position;
    job.queue.hidden = !position;
    if (position) {
      job.queue.textContent = position === 1 ? `Next in the ${evaluation.queue} queue: it starts when a worker of that queue is free.`
        : `Waiting in the ${evaluation.queue} queue: ${position - 1} job(s) before it.`;
    }
  }
}
