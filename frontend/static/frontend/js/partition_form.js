/* The dataset page's partitions: the table of those made, and the form for a new one. As the form's fields
   change it asks POST /api/partitions/preview/ what the split would give, and shows it before anything is
   created: samples and patients per subset, warnings (far from the percentages asked, split by image), a
   subset that would be empty beside its field, and a link to the same partition made before. */
import { api } from "./api.js";
import { clearErrors, el, formValues, showErrors } from "./dom.js";

const PREVIEW_DELAY_MS = 250;

/* "84 (lesion 42, normal 42)", or "0" for an empty subset. */
function subsetSummary(counts) {
  const entries = Object.entries(counts || {});
  const total = entries.reduce((sum, [, n]) => sum + n, 0);
  return entries.length ? `${total} (${entries.map(([label, n]) => `${label} ${n}`).join(", ")})` : "0";
}

function sampleCount(partition) {
  return Object.values(partition.counts).reduce((sum, counts) => sum + Object.values(counts || {}).reduce((a, n) => a + n, 0), 0);
}

/* After the name: patients in two subsets (an error), or that it was split by image (no patient IDs). */
function patientNote(partition) {
  const leaking = Object.keys(partition.leaking_patients).length;
  if (leaking) return el("span", { class: "error", text: ` · ${leaking} patients in two subsets` });
  if (partition.samples_without_patient && partition.samples_without_patient === sampleCount(partition)) {
    return el("span", { class: "by-image", title: "No sample has a patient ID: images of one patient may be in two subsets.", text: " · split by image" });
  }
  return el("span", { class: "muted", text: "" });
}

function partitionRow(partition, view) {
  return el("tr", { "data-partition": partition.id }, [
    el("td", {}, [el("a", { href: `/partitions/${partition.id}/`, text: partition.name }), patientNote(partition)]),
    el("td", { text: subsetSummary(partition.counts.train) }),
    el("td", { text: subsetSummary(partition.counts.validation) }),
    el("td", { text: subsetSummary(partition.counts.test) }),
    el("td", {}, view.canChange
      ? [el("a", { href: `/projects/${view.project}/runs/new/?partition=${partition.id}`, class: "button", text: "Train a model" })]
      : []),
  ]);
}

async function showPartitions(view) {
  const page = await api("GET", `/api/partitions/?dataset=${view.dataset}&limit=100`);
  document.getElementById("subset-filter").replaceChildren(el("option", { value: "", text: "All" }), ...page.results.flatMap((partition) =>
    ["train", "validation", "test"].map((subset) => el("option", { value: `${partition.id}:${subset}`, text: `${partition.name}: ${subset}` }))));
  document.querySelector("#partition-table tbody").replaceChildren(...page.results.map((partition) => partitionRow(partition, view)));
}

function existingLink(existing) {
  return el("a", { href: `/partitions/${existing.id}/`, class: "existing-partition", text: existing.name });
}

/* What the split would give, beside the form; a subset it would leave empty is refused beside its field. */
function showPreview(view, preview) {
  const parts = [el("p", { class: "partition-counts", text: preview.summary })];
  if (preview.warnings.length) parts.push(el("ul", { class: "warnings" }, preview.warnings.map((text) => el("li", { text }))));
  if (preview.existing) {
    parts.push(el("p", { class: "partition-existing" },
      ["This partition exists already: ", existingLink(preview.existing), ". Open it, or change the seed or the percentages."]));
  }
  view.preview.replaceChildren(...parts);
  view.preview.hidden = false;
  view.preview.classList.toggle("refused", Boolean(preview.refusals.length));
  clearErrors(view.form);
  if (preview.refusals.length) showErrors(view.form, { errors: preview.refusals });
  view.submit.disabled = Boolean(preview.refusals.length || preview.existing);
}

async function askPreview(view) {
  const asked = ++view.latest;
  try {
    const preview = await api("POST", "/api/partitions/preview/", { ...formValues(view.form), dataset: view.dataset });
    if (asked === view.latest) showPreview(view, preview);
  } catch (error) {
    if (asked !== view.latest) return; // the fields changed again, or the form was sent, while it was asked
    view.preview.hidden = true;
    view.submit.disabled = false;
    showErrors(view.form, error, { quiet: true }); // half-typed values: said softly, the send says it plainly
  }
}

function previewSoon(view) {
  view.submit.disabled = false; // the new values are not judged yet
  clearTimeout(view.timer);
  view.timer = setTimeout(() => askPreview(view), PREVIEW_DELAY_MS);
}

async function create(view) {
  clearTimeout(view.timer);
  view.latest += 1; // a preview still on its way answers older values than this
  clearErrors(view.form);
  try {
    await api("POST", "/api/partitions/", { ...formValues(view.form), dataset: view.dataset });
    await showPartitions(view);
    askPreview(view); // it now says that this partition exists
  } catch (error) {
    showErrors(view.form, error);
    const existing = error.errors.find((item) => item.existing)?.existing;
    if (existing) view.form.querySelector('[data-error-for="__all__"]').append(" ", existingLink(existing));
  }
}

export function setUpPartitions() {
  const root = document.getElementById("dataset-root");
  const form = document.getElementById("partition-form");
  const view = {
    dataset: Number(root.dataset.dataset), project: root.dataset.project, canChange: root.dataset.canChange === "yes",
    form, preview: document.getElementById("partition-preview"), submit: form?.querySelector('button[type="submit"]'),
    latest: 0, timer: null,
  };
  if (form) {
    form.addEventListener("input", () => previewSoon(view));
    form.addEventListener("submit", (event) => { event.preventDefault(); create(view); });
    askPreview(view);
  }
  showPartitions(view);
}
