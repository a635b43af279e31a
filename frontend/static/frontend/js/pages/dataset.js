/* A dataset: its ingest (or merge, or preprocessing) watched live, then the report of every file,
   the samples per class, the names of a segmentation's label values, the thumbnails, the partitions,
   and labels joined from a table. */
import { api } from "../api.js";
import { drawChart } from "../charts.js";
import { clearErrors, el, formValues, showErrors } from "../dom.js";
import { watchJob } from "../jobs.js";
import { setUpPartitions } from "../partition_form.js";
import "../delete.js"; // sets up the page's Delete control (templates/frontend/_delete.html), if it has one

const root = document.getElementById("dataset-root");
const id = root.dataset.dataset;
const canChange = root.dataset.canChange === "yes";
const REPORT_ROWS = 50;
const THUMBNAILS_PER_PAGE = 48;
/* A file's outcomes (IngestReportEntry.Outcome); "attention" is the three that need a look. */
const OUTCOMES = ["accepted", "rejected", "skipped", "quarantined"];
const NEEDING_ATTENTION = ["rejected", "skipped", "quarantined"];
const OUTCOME_NAMES = { "": "All files", attention: "Needing attention", accepted: "Accepted", rejected: "Rejected", skipped: "Skipped",
  quarantined: "Quarantined (for review)" };
/* The ingest report as shown: the counts per outcome, the outcome chosen ("" for all), the first row shown. */
const report = { counts: {}, outcome: "", offset: 0, request: 0 };

watchJob(`/api/datasets/${id}/`, {
  view: {
    status: document.getElementById("dataset-status"),
    message: document.getElementById("dataset-message"),
    progress: document.getElementById("ingest-progress"),
    stop: document.getElementById("ingest-stop"),
  },
  onFinish: async (dataset) => {
    await showReport();
    if (dataset.status === "ready") showReadyDataset(dataset);
  },
});

/* The report of every file: its counts per outcome (each a filter), then one page of its rows. */
async function showReport() {
  const details = document.getElementById("report");
  const counts = Object.fromEntries(await Promise.all(OUTCOMES.map(async (outcome) =>
    [outcome, (await api("GET", reportUrl([outcome], 0, 1))).count])));
  const total = OUTCOMES.reduce((sum, outcome) => sum + counts[outcome], 0);
  if (!total) return;
  const attention = NEEDING_ATTENTION.reduce((sum, outcome) => sum + counts[outcome], 0);
  report.counts = { ...counts, "": total, attention };
  details.hidden = false;
  const present = OUTCOMES.filter((outcome) => counts[outcome]);
  document.getElementById("report-summary").textContent =
    `${total.toLocaleString()} files: ${present.map((outcome) => `${counts[outcome].toLocaleString()} ${outcome}`).join(", ")}`;
  // "Needing attention" only where it differs from a single outcome's filter.
  const filters = ["", ...(NEEDING_ATTENTION.filter((outcome) => counts[outcome]).length > 1 ? ["attention"] : []), ...present];
  document.getElementById("report-outcomes").replaceChildren(...filters.map((outcome) => el("button", {
    type: "button", class: `outcome-filter outcome-${outcome || "all"}`, "data-outcome": outcome, "aria-pressed": "false",
  }, [el("span", { text: OUTCOME_NAMES[outcome] }), " ", el("strong", { text: report.counts[outcome].toLocaleString() })])));
  document.getElementById("report-outcomes").addEventListener("click", (event) => {
    const button = event.target.closest("button[data-outcome]");
    if (button) showReportPage(button.dataset.outcome, 0);
  });
  document.getElementById("report-prev").addEventListener("click", () => showReportPage(report.outcome, Math.max(0, report.offset - REPORT_ROWS)));
  document.getElementById("report-next").addEventListener("click", () => showReportPage(report.outcome, report.offset + REPORT_ROWS));
  // Open on the files that need attention.
  if (attention && attention <= 20) details.open = true;
  await showReportPage(attention ? (filters.includes("attention") ? "attention" : NEEDING_ATTENTION.find((o) => counts[o])) : "", 0);
}

function reportUrl(outcomes, offset, limit) {
  const params = new URLSearchParams({ limit, offset });
  for (const outcome of outcomes) params.append("status", outcome);
  return `/api/datasets/${id}/report/?${params}`;
}

async function showReportPage(outcome, offset) {
  const request = ++report.request;
  Object.assign(report, { outcome, offset });
  for (const button of document.querySelectorAll("#report-outcomes button")) {
    button.setAttribute("aria-pressed", String(button.dataset.outcome === outcome));
  }
  const outcomes = outcome === "attention" ? NEEDING_ATTENTION : outcome ? [outcome] : [];
  const page = await api("GET", reportUrl(outcomes, offset, REPORT_ROWS));
  if (request !== report.request) return; // another filter or page was asked for while this one loaded
  document.querySelector("#report tbody").replaceChildren(...page.results.map((row) => el("tr", { class: `outcome-${row.status}` }, [
    el("td", { class: "report-path", text: row.path }), el("td", { text: row.status }), el("td", { text: row.reason }),
  ])));
  const last = Math.min(offset + REPORT_ROWS, page.count);
  document.getElementById("report-shown").textContent = page.count
    ? `${(offset + 1).toLocaleString()}–${last.toLocaleString()} of ${page.count.toLocaleString()} ${outcome === "" ? "files" : OUTCOME_NAMES[outcome].toLowerCase()}`
    : "no files";
  const prev = document.getElementById("report-prev");
  const next = document.getElementById("report-next");
  prev.disabled = offset === 0;
  next.disabled = last >= page.count;
  prev.hidden = next.hidden = page.count <= REPORT_ROWS;
  // A new page read from its first row: bring the top of the table back into view.
  const top = document.getElementById("report-outcomes");
  if (top.getBoundingClientRect().top < 0) top.scrollIntoView({ block: "start" });
}

function showReadyDataset(dataset) {
  document.getElementById("ready-only").hidden = false;
  const labels = Object.keys(dataset.class_counts);
  const segmentation = dataset.task === "segmentation";
  // A segmentation dataset without classes: its samples counted by whether they have a mask.
  const bars = segmentation && !labels.some(Boolean)
    ? { "with a mask": dataset.masked_count, "without a mask": dataset.num_samples - dataset.masked_count }
    : Object.fromEntries(labels.map((label) => [labelName(label, segmentation), dataset.class_counts[label]]));
  if (segmentation && !labels.some(Boolean)) document.getElementById("class-chart-title").textContent = "Samples and masks";
  const counts = Object.values(bars);
  drawChart("class-chart", [{ type: "bar", x: Object.keys(bars), y: counts, text: counts, textposition: "auto", marker: { color: "#2563eb" } }],
    { title: { text: `${dataset.num_samples} samples` }, yaxis: { title: { text: "samples" } } });
  const facts = [dataset.task, maskFacts(dataset), dataset.modalities, dataset.patient_count ? `${dataset.patient_count} patients` : ""];
  if (dataset.width) facts.push(`2D images cached at ${dataset.width}×${dataset.height}, ${dataset.channels === 1 ? "grayscale" : "colour"}`);
  document.getElementById("dataset-shape").textContent = facts.filter(Boolean).join(" · ");
  const labelFilter = document.getElementById("label-filter");
  for (const label of labels) labelFilter.append(el("option", { value: label, text: labelName(label, segmentation) }));
  labelFilter.closest("label").hidden = labels.length < 2; // one label: nothing to filter by
  const sources = document.getElementById("source-filter");
  if (dataset.merged_from.length) {
    for (const source of dataset.merged_from) sources.append(el("option", { value: source, text: `dataset ${source}` }));
  } else {
    sources.closest("label").hidden = true;
  }
  if (segmentation) setUpLabelNames(dataset);
  setUpThumbnails(segmentation);
  setUpPartitions();
  setUpTableJoin();
}

/* The Labels card: each value the masks hold, its name (typed here, or from the upload's label file) and how many
   masks hold it. Its rows come with the page (views.py: label_rows); a dataset that became ready while the page was
   open builds them from its API record, without the counts. */
function setUpLabelNames(dataset) {
  const card = document.getElementById("labels-card");
  const form = document.getElementById("labels-form");
  const given = JSON.parse(document.getElementById("label-rows").textContent);
  const masks = Object.fromEntries(given.map((row) => [row.value, row.masks]));
  card.hidden = false;
  showLabelRows(form, dataset, masks);
  if (!canChange) return;
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(form);
    const saved = document.getElementById("labels-saved");
    saved.textContent = "";
    // A blank name is no name: the value goes by its number again (background for 0).
    const names = Object.fromEntries([...form.querySelectorAll("input[data-value]")]
      .filter((input) => input.value.trim()).map((input) => [input.dataset.value, input.value]));
    try {
      const changed = await api("PATCH", `/api/datasets/${id}/`, { label_names: names });
      showLabelRows(form, changed, masks);
      saved.textContent = "Saved.";
    } catch (error) { showErrors(form, error); }
  });
}

function showLabelRows(form, dataset, masks) {
  const values = [...new Set([0, ...dataset.mask_values])].sort((a, b) => a - b);
  const unnamed = new Set(dataset.unnamed_label_values);
  form.querySelector("tbody").replaceChildren(...values.map((value) => {
    const name = dataset.label_names[String(value)] || "";
    const input = el("input", { type: "text", value: name, maxlength: "100", "data-value": String(value),
      placeholder: value === 0 ? "background" : `label ${value}`, "aria-label": `Name of label ${value}` });
    input.readOnly = !canChange;
    const flag = unnamed.has(value) ? [" ", el("span", { class: "badge badge-unnamed", text: `label ${value} has no name` })] : [];
    return el("tr", { "data-value": String(value), class: unnamed.has(value) ? "unnamed" : "" }, [
      el("th", { scope: "row", class: "label-value", text: String(value) }),
      el("td", { class: "label-name" }, [input, ...flag]),
      el("td", { class: "number", text: value in masks ? masks[value].toLocaleString() : "–" }),
    ]);
  }));
  const warning = document.getElementById("labels-unnamed");
  const list = [...unnamed];
  warning.hidden = !list.length;
  warning.textContent = list.length === 1
    ? `Label ${list[0]} has no name: runs and results call it "label ${list[0]}" until it is named.`
    : `Labels ${list.join(", ")} have no names: runs and results call them by their numbers until they are named.`;
}

/** How many samples have a mask, how many have none, and the label values the masks hold. */
function maskFacts(dataset) {
  if (!dataset.masked_count) return "";
  const without = dataset.num_samples - dataset.masked_count;
  const values = dataset.mask_values.length ? ` (labels ${dataset.mask_values.join(", ")})` : "";
  return `${dataset.masked_count} of ${dataset.num_samples} samples have a mask${values}` +
    (without ? `, ${without} ${without === 1 ? "has" : "have"} none` : "");
}

/* A segmentation dataset's samples are labelled by their masks: a class is extra. */
function labelName(label, segmentation) {
  return label || (segmentation ? "no class" : "(unlabelled)");
}

function thumbnailQuery(offset) {
  const value = (elementId) => document.getElementById(elementId).value;
  const params = new URLSearchParams({ limit: THUMBNAILS_PER_PAGE, offset });
  if (value("label-filter") !== "__all__") params.set("label", value("label-filter"));
  if (value("patient-filter").trim()) params.set("patient", value("patient-filter").trim());
  if (value("source-filter")) params.set("source", value("source-filter"));
  if (value("subset-filter")) {
    const [partition, subset] = value("subset-filter").split(":");
    params.set("partition", partition);
    params.set("subset", subset);
  }
  return params.toString();
}

function thumbnailCaption(sample, segmentation) {
  const what = segmentation && !sample.label ? (sample.has_mask ? "mask" : "no mask") : labelName(sample.label, segmentation);
  return `${what}${sample.kind === "volume" ? ` · ${sample.depth} slices` : ""}`;
}

function thumbnail(sample, segmentation) {
  return el("a", { href: `/samples/${sample.id}/`, class: "thumb-link" }, [
    el("figure", { class: "thumb" }, [
      el("img", { src: sample.thumbnail_url, alt: `${thumbnailCaption(sample, segmentation)}: ${sample.source_path}`, loading: "lazy", title: sample.source_path }),
      el("figcaption", { text: thumbnailCaption(sample, segmentation) }),
    ]),
  ]);
}

function setUpThumbnails(segmentation) {
  let offset = 0;
  let latest = 0;
  const load = async () => {
    const request = ++latest;
    const page = await api("GET", `/api/datasets/${id}/samples/?${thumbnailQuery(offset)}`);
    if (request !== latest) return; // a newer filter or page was asked for while this one loaded
    document.getElementById("thumbnails").replaceChildren(...page.results.map((sample) => thumbnail(sample, segmentation)));
    document.getElementById("page-info").textContent =
      page.count ? `${offset + 1}–${Math.min(offset + THUMBNAILS_PER_PAGE, page.count)} of ${page.count}` : "no samples";
    document.getElementById("page-prev").disabled = offset === 0;
    document.getElementById("page-next").disabled = offset + THUMBNAILS_PER_PAGE >= page.count;
  };
  const fromStart = () => { offset = 0; load(); };
  for (const name of ["label-filter", "patient-filter", "source-filter", "subset-filter"]) {
    document.getElementById(name).addEventListener("change", fromStart);
  }
  document.getElementById("page-prev").addEventListener("click", () => { offset = Math.max(0, offset - THUMBNAILS_PER_PAGE); load(); });
  document.getElementById("page-next").addEventListener("click", () => { offset += THUMBNAILS_PER_PAGE; load(); });
  load();
}

/* What joining the table would do, in sentences. */
function describeJoin(preview) {
  const examples = (list) => (list.length ? ` (e.g. ${list.slice(0, 3).join(", ")})` : "");
  const labels = Object.entries(preview.label_counts).map(([label, n]) => `${label}: ${n}`).join(", ") || "none";
  return [
    `${preview.matched_samples} of ${preview.samples} samples matched a row; ${preview.rows} rows in the table.`,
    `Samples without a row: ${preview.unmatched_samples}${examples(preview.unmatched_sample_examples)}`,
    `Rows without a sample: ${preview.unmatched_rows}${examples(preview.unmatched_row_examples)}`,
    `Labels it would give: ${labels}${preview.conflicts ? `; ${preview.conflicts} samples have rows that disagree and would keep their label` : ""}`,
  ];
}

function setUpTableJoin() {
  const form = document.getElementById("table-form");
  if (!form) return;
  const result = document.getElementById("table-result");
  const applyButton = document.getElementById("table-apply");
  const send = (action) => {
    const data = new FormData();
    data.append("table", form.querySelector('input[name="table"]').files[0]);
    for (const name of ["column", "image_key", "label_column"]) data.append(name, form.querySelector(`[name="${name}"]`).value);
    for (const option of form.querySelector('[name="identifier_columns"]').selectedOptions) data.append("identifier_columns", option.value);
    return api("POST", `/api/datasets/${id}/table/${action}/`, data);
  };
  form.querySelector('input[name="table"]').addEventListener("change", async () => {
    clearErrors(form);
    applyButton.disabled = true;
    form.querySelector('[name="column"]').value = "";
    try {
      const { columns } = await send("preview");
      for (const name of ["column", "label_column", "identifier_columns"]) {
        const none = name === "label_column" ? [el("option", { value: "", text: "(none)" })] : [];
        form.querySelector(`[name="${name}"]`).replaceChildren(...none, ...columns.map((column) => el("option", { value: column, text: column })));
      }
    } catch (error) { showErrors(form, error); }
  });
  document.getElementById("table-preview").addEventListener("click", async () => {
    clearErrors(form);
    try {
      const preview = await send("preview");
      result.hidden = false;
      result.replaceChildren(...describeJoin(preview).map((text) => el("p", { text })));
      applyButton.disabled = !preview.matched_samples;
    } catch (error) { showErrors(form, error); }
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      await send("apply");
      window.location.reload();
    } catch (error) { showErrors(form, error); }
  });
}
