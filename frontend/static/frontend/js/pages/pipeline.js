/* The pipeline editor: operations found in the catalogue become steps whose forms come from each
   operation's schema; eight real samples are drawn before and after the steps as they change;
   saving makes a pipeline or a new version. A saved pipeline can then run over a dataset
   (preprocessing) or measure one (aggregation). */
import { api } from "../api.js";
import { clearErrors, el, showErrors } from "../dom.js";
import { paramField } from "../params.js";
import "../delete.js"; // sets up the page's Delete control (templates/frontend/_delete.html), if it has one

const PREVIEW_DELAY_MS = 400;
const root = document.getElementById("pipeline-root");
const form = document.getElementById("pipeline-form");
const kindChoice = form.querySelector('select[name="kind"]');
const projectId = Number(root.dataset.project);
const pipelineId = root.dataset.pipeline ? Number(root.dataset.pipeline) : null;

const [operations, measureSchemas, pipeline] = await Promise.all([
  api("GET", "/api/operations/"), api("GET", "/api/measures/"), pipelineId ? api("GET", `/api/pipelines/${pipelineId}/`) : null,
]);
const catalogue = Object.fromEntries(operations.map((op) => [op.name, op]));
const latestVersion = pipeline ? pipeline.versions[pipeline.versions.length - 1] : { steps: [], measures: [] };
let steps = latestVersion.steps;
let measures = latestVersion.measures;
let seed = 0;
let previewTimer = null;
let latestPreview = 0;

function describeVersions(versions) {
  const latest = versions[versions.length - 1];
  const used = versions.filter((v) => v.used).map((v) => `v${v.number}`);
  document.getElementById("pipeline-versions").textContent = `Version ${latest.number}` +
    (used.length ? ` · used, so kept unchanged: ${used.join(", ")}; saving changes makes a new version` : " · not used yet: saving changes it in place");
}

function renderCatalogue() {
  const query = document.getElementById("operation-search").value.trim().toLowerCase();
  // Preprocessing and aggregation run once: random operations belong in augmentation pipelines only.
  const runOnce = kindChoice.value !== "augmentation";
  const matches = Object.values(catalogue).filter((op) => !(runOnce && op.random) &&
    (!query || `${op.title} ${op.name} ${op.help} ${op.category}`.toLowerCase().includes(query)));
  document.getElementById("operation-list").replaceChildren(...matches.map((op) => el("li", { title: op.help }, [
    el("button", { type: "button", class: "add-operation", "data-op": op.name, text: "Add" }),
    el("span", { class: "operation-title", text: ` ${op.title} ` }),
    el("span", { class: `badge badge-${op.category}`, text: op.category }),
    el("span", { class: "muted", text: ` ${op.dims.map((d) => `${d}D`).join("/")}${op.random ? " · random" : ""}` }),
  ])));
}

function defaults(op) {
  return Object.fromEntries(catalogue[op].params.map((p) => [p.name, p.default]));
}

function stepParamField(index, param, value) {
  const update = (newValue) => { steps[index].params[param.name] = newValue; schedulePreview(); };
  return paramField(`steps[${index}].${param.name}`, param, value, update);
}

function stepItem(step, index) {
  const op = catalogue[step.op];
  const move = (label, text, delta) => {
    const button = el("button", { type: "button", "aria-label": label, title: label, text });
    button.disabled = index + delta < 0 || index + delta >= steps.length;
    button.addEventListener("click", () => { [steps[index], steps[index + delta]] = [steps[index + delta], steps[index]]; changed(); });
    return button;
  };
  const remove = el("button", { type: "button", "aria-label": "Remove", title: "Remove", text: "✕", class: "remove-step" });
  remove.addEventListener("click", () => { steps.splice(index, 1); changed(); });
  return el("li", { class: "step", "data-op": step.op }, [
    el("div", { class: "step-head" }, [el("strong", { text: op ? op.title : step.op }), el("span", { class: "step-buttons" },
      [move("Move up", "↑", -1), move("Move down", "↓", 1), remove])]),
    el("span", { class: "error", "data-error-for": `steps[${index}].op`, role: "alert" }),
    ...(op ? op.params.map((param) => stepParamField(index, param, step.params[param.name] ?? param.default)) : []),
  ]);
}

function renderSteps() {
  document.getElementById("no-steps").hidden = steps.length > 0;
  document.getElementById("steps").replaceChildren(...steps.map(stepItem));
}

function changed() {
  renderSteps();
  schedulePreview();
}

function renderMeasures() {
  document.getElementById("measures-field").hidden = kindChoice.value !== "aggregation";
  document.getElementById("measure-choices").replaceChildren(...measureSchemas.map((measure) => {
    const box = el("input", { type: "checkbox", name: "measures", value: measure.name });
    box.checked = measures.includes(measure.name);
    // Kept in the catalogue's order, whatever order they are ticked in.
    box.addEventListener("change", () => {
      measures = measureSchemas.map((m) => m.name).filter((name) => (name === measure.name ? box.checked : measures.includes(name)));
    });
    return el("label", { class: "check" }, [box, el("span", { text: ` ${measure.title}${measure.unit ? ` (${measure.unit})` : ""}` }),
      measure.needs_mask ? el("small", { class: "muted", text: " needs a mask" }) : ""]);
  }));
}

/* Typing in a field redraws once the typing pauses, not at every key. */
function schedulePreview() {
  clearTimeout(previewTimer);
  previewTimer = setTimeout(drawPreview, PREVIEW_DELAY_MS);
}

function previewPair(item) {
  return el("figure", { class: "preview-pair" }, [
    el("img", { src: item.before, alt: `${item.label}: before` }),
    item.after ? el("img", { src: item.after, alt: `${item.label}: after` }) : el("div", { class: "preview-error", text: item.error }),
    el("figcaption", { text: item.label || "(unlabelled)" }),
  ]);
}

async function drawPreview() {
  const grid = document.getElementById("preview");
  const dataset = document.getElementById("preview-dataset");
  if (!grid || !dataset) return;
  const request = ++latestPreview;
  const state = document.getElementById("preview-state");
  state.textContent = "Drawing…";
  try {
    const items = await api("POST", "/api/pipelines/preview/", { dataset: Number(dataset.value), steps, seed });
    if (request !== latestPreview) return; // the steps changed while this one was drawn
    // Only what a preview can refuse (the steps) is cleared: a save's refusal that came back while this one
    // was drawn (no measure chosen, a name missing) stays beside its field.
    form.querySelectorAll('[data-error-for^="steps"], [data-error-for="dataset"]').forEach((node) => { node.textContent = ""; });
    grid.replaceChildren(...items.map(previewPair));
    state.textContent = `seed ${seed}`;
  } catch (error) {
    if (request !== latestPreview) return;
    showErrors(form, error);
    state.textContent = "Fix the steps to see the preview.";
  }
}

async function save() {
  clearErrors(form);
  const name = form.querySelector('input[name="name"]').value;
  const kind = kindChoice.value;
  const withMeasures = kind === "aggregation" ? { measures } : {};
  try {
    if (pipelineId) {
      const saved = await api("PATCH", `/api/pipelines/${pipelineId}/`, { name, steps, ...withMeasures });
      describeVersions(saved.versions);
      document.getElementById("save-state").textContent = `Saved as version ${saved.versions[saved.versions.length - 1].number}.`;
    } else {
      const created = await api("POST", "/api/pipelines/", { project: projectId, name, kind, steps, ...withMeasures });
      window.location = `/projects/${projectId}/pipelines/${created.id}/`;
    }
  } catch (error) { showErrors(form, error); }
}

/* The forms that start a job over a dataset with the saved pipeline: each opens the job's page. */
function setUpJobForm(formId, start) {
  const jobForm = document.getElementById(formId);
  if (!jobForm) return;
  jobForm.addEventListener("submit", async () => {
    clearErrors(jobForm);
    const values = { dataset: Number(jobForm.querySelector('select[name="dataset"]').value), name: jobForm.querySelector('input[name="name"]').value };
    try {
      window.location = await start(values);
    } catch (error) { showErrors(jobForm, error); }
  });
}

if (pipeline) describeVersions(pipeline.versions);
document.getElementById("operation-search").addEventListener("input", renderCatalogue);
document.getElementById("operation-list").addEventListener("click", (event) => {
  const button = event.target.closest(".add-operation");
  if (!button) return;
  steps.push({ op: button.dataset.op, params: defaults(button.dataset.op) });
  changed();
});
document.getElementById("sample-again")?.addEventListener("click", () => { seed += 1; drawPreview(); });
document.getElementById("preview-dataset")?.addEventListener("change", drawPreview);
document.getElementById("pipeline-save")?.addEventListener("click", save);
setUpJobForm("run-form", async (values) => {
  const derived = await api("POST", `/api/pipelines/${pipelineId}/run/`, values);
  return `/datasets/${derived.id}/`;
});
setUpJobForm("measure-form", async (values) => {
  const table = await api("POST", "/api/aggregations/", { pipeline: pipelineId, ...values });
  return `/aggregations/${table.id}/`;
});
kindChoice.addEventListener("change", () => { renderMeasures(); renderCatalogue(); });
renderCatalogue();
renderSteps();
renderMeasures();
drawPreview();
