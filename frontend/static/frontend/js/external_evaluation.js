/* The run page's "Evaluate on another dataset" card (docs/results.md, "Another dataset"): choosing a dataset asks
   whether it fits the model and how its classes map onto the model's (GET /api/evaluations/class-mapping/); a dataset
   that does not fit is refused beside the field at once, before anything is queued. The mapping is shown as a table
   whose every row can be changed (or the class left out); Evaluate queues the evaluation (POST /api/evaluations/) and
   hands it to the page's results section. */
import { api } from "./api.js";
import { clearErrors, el, showErrors } from "./dom.js";

const LEAVE_OUT = "";

export function externalEvaluationForm(card, { onQueued }) {
  const runId = Number(card.dataset.run);
  const form = card.querySelector("#external-form");
  const datasetField = card.querySelector("#external-dataset");
  const mappingBox = card.querySelector("#external-mapping-box");
  const submit = card.querySelector("#external-submit");
  let asked = 0; // which answer is the latest: a slow answer for an earlier choice is dropped

  datasetField.addEventListener("change", choose);
  form.addEventListener("submit", (event) => { event.preventDefault(); evaluate(); });

  async function choose() {
    clearErrors(form);
    mappingBox.hidden = true;
    submit.disabled = true;
    const dataset = datasetField.value;
    if (!dataset) return;
    const mine = ++asked;
    let facts;
    try {
      facts = await api("GET", `/api/evaluations/class-mapping/?run=${runId}&dataset=${dataset}`);
    } catch (error) {
      if (mine === asked) showErrors(form, error);
      return;
    }
    if (mine !== asked) return;
    showMapping(facts);
    submit.disabled = false;
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
    clearErrors(form);
    submit.disabled = true;
    try {
      const evaluation = await api("POST", "/api/evaluations/", {
        run: runId, dataset: Number(datasetField.value), class_mapping: mapping(),
      });
      onQueued(evaluation);
    } catch (error) {
      showErrors(form, error);
    } finally {
      submit.disabled = !datasetField.value;
    }
  }
}
