/* A dataset: its ingest (or merge, or preprocessing) watched live, then the report of every file,
   the samples per class, the thumbnails, the partitions, and labels joined from a table. */
import { api } from "../api.js";
import { drawChart } from "../charts.js";
import { clearErrors, el, formValues, showErrors } from "../dom.js";
import { watchJob } from "../jobs.js";

const root = document.getElementById("dataset-root");
const id = root.dataset.dataset;
const canChange = root.dataset.canChange === "yes";
const REPORT_ROWS = 500;
const THUMBNAILS_PER_PAGE = 48;
const NEEDING_ATTENTION = "rejected&status=quarantined&status=skipped";

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

async function showReport() {
  const details = document.getElementById("report");
  const filter = document.getElementById("report-filter");
  const counts = {};
  for (const outcome of ["accepted", "rejected", "skipped", "quarantined"]) {
    counts[outcome] = (await api("GET", `/api/datasets/${id}/report/?limit=1&status=${outcome}`)).count;
  }
  const total = Object.values(counts).reduce((a, b) => a + b, 0);
  if (!total) return;
  details.hidden = false;
  document.getElementById("report-summary").textContent =
    `${total} files: ${counts.accepted} accepted, ${counts.rejected} rejected, ${counts.skipped} skipped, ${counts.quarantined} quarantined`;
  // Open on the files that need attention.
  const needingAttention = counts.rejected + counts.quarantined + counts.skipped;
  if (needingAttention) {
    filter.value = NEEDING_ATTENTION;
    if (needingAttention <= 20) details.open = true;
  }
  filter.addEventListener("change", () => showReportRows(filter.value));
  await showReportRows(filter.value);
}

async function showReportRows(outcome) {
  const report = await api("GET", `/api/datasets/${id}/report/?limit=${REPORT_ROWS}${outcome ? `&status=${outcome}` : ""}`);
  document.querySelector("#report tbody").replaceChildren(...report.results.map((row) => el("tr", { class: `outcome-${row.status}` }, [
    el("td", { text: row.path }), el("td", { text: row.status }), el("td", { text: row.reason }),
  ])));
  document.getElementById("report-shown").textContent =
    report.count > REPORT_ROWS ? `first ${REPORT_ROWS} of ${report.count}` : `${report.count} file(s)`;
}

function showReadyDataset(dataset) {
  document.getElementById("ready-only").hidden = false;
  const labels = Object.keys(dataset.class_counts);
  const counts = labels.map((label) => dataset.class_counts[label]);
  drawChart("class-chart", [{ type: "bar", x: labels.map(labelName), y: counts, text: counts, textposition: "auto", marker: { color: "#2563eb" } }],
    { title: { text: `${dataset.num_samples} samples` }, yaxis: { title: { text: "samples" } } });
  const facts = [dataset.task, maskFacts(dataset), dataset.modalities, dataset.patient_count ? `${dataset.patient_count} patients` : ""];
  if (dataset.width) facts.push(`2D images cached at ${dataset.width}×${dataset.height}, ${dataset.channels === 1 ? "grayscale" : "colour"}`);
  document.getElementById("dataset-shape").textContent = facts.filter(Boolean).join(" · ");
  const labelFilter = document.getElementById("label-filter");
  for (const label of labels) labelFilter.append(el("option", { value: label, text: labelName(label) }));
  const sources = document.getElementById("source-filter");
  if (dataset.merged_from.length) {
    for (const source of dataset.merged_from) sources.append(el("option", { value: source, text: `dataset ${source}` }));
  } else {
    sources.closest("label").hidden = true;
  }
  setUpThumbnails();
  setUpPartitions();
  setUpTableJoin();
}

/** How many samples have a mask, how many have none, and the label values the masks hold. */
function maskFacts(dataset) {
  if (!dataset.masked_count) return "";
  const without = dataset.num_samples - dataset.masked_count;
  const values = dataset.mask_values.length ? ` (labels ${dataset.mask_values.join(", ")})` : "";
  return `${dataset.masked_count} of ${dataset.num_samples} samples have a mask${values}` +
    (without ? `, ${without} ${without === 1 ? "has" : "have"} none` : "");
}

function labelName(label) {
  return label || "(unlabelled)";
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

function thumbnail(sample) {
  return el("a", { href: `/samples/${sample.id}/`, class: "thumb-link" }, [
    el("figure", { class: "thumb" }, [
      el("img", { src: sample.thumbnail_url, alt: `${sample.label}: ${sample.source_path}`, loading: "lazy", title: sample.source_path }),
      el("figcaption", { text: `${labelName(sample.label)}${sample.kind === "volume" ? ` · ${sample.depth} slices` : ""}` }),
    ]),
  ]);
}

function setUpThumbnails() {
  let offset = 0;
  let latest = 0;
  const load = async () => {
    const request = ++latest;
    const page = await api("GET", `/api/datasets/${id}/samples/?${thumbnailQuery(offset)}`);
    if (request !== latest) return; // a newer filter or page was asked for while this one loaded
    document.getElementById("thumbnails").replaceChildren(...page.results.map(thumbnail));
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

/* "84 (lesion 42, normal 42)" */
function subsetSummary(counts) {
  const entries = Object.entries(counts || {});
  const total = entries.reduce((sum, [, n]) => sum + n, 0);
  return `${total} (${entries.map(([label, n]) => `${label} ${n}`).join(", ")})`;
}

function partitionRow(partition) {
  const leaking = Object.keys(partition.leaking_patients).length;
  return el("tr", { "data-partition": partition.id }, [
    el("td", {}, [el("a", { href: `/partitions/${partition.id}/`, text: partition.name }),
      el("span", { class: leaking ? "error" : "muted", text: leaking ? ` · ${leaking} patients in two subsets` : "" })]),
    el("td", { text: subsetSummary(partition.counts.train) }),
    el("td", { text: subsetSummary(partition.counts.validation) }),
    el("td", { text: subsetSummary(partition.counts.test) }),
    el("td", {}, canChange
      ? [el("a", { href: `/projects/${root.dataset.project}/runs/new/?partition=${partition.id}`, class: "button", text: "Train a model" })]
      : []),
  ]);
}

async function showPartitions() {
  const page = await api("GET", `/api/partitions/?dataset=${id}&limit=100`);
  document.getElementById("subset-filter").replaceChildren(el("option", { value: "", text: "All" }), ...page.results.flatMap((partition) =>
    ["train", "validation", "test"].map((subset) => el("option", { value: `${partition.id}:${subset}`, text: `${partition.name}: ${subset}` }))));
  document.querySelector("#partition-table tbody").replaceChildren(...page.results.map(partitionRow));
}

function setUpPartitions() {
  const form = document.getElementById("partition-form");
  if (form) form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(form);
    try {
      await api("POST", "/api/partitions/", { ...formValues(form), dataset: Number(id) });
      await showPartitions();
    } catch (error) { showErrors(form, error); }
  });
  showPartitions();
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
