/* The toolkit's pages: each page's script talks to the REST API, so the browser
   and scripts share one set of rules and messages. No build step, no CDN. */
"use strict";

const POLL_MS = 1000;

function csrfToken() {
  const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
  return match ? decodeURIComponent(match[1]) : "";
}

class ApiError extends Error {
  constructor(status, body) {
    super((body && body.message) || `The server answered ${status}.`);
    this.status = status;
    this.body = body || {};
  }
}

async function api(method, url, body) {
  const options = { method, headers: { Accept: "application/json" }, credentials: "same-origin" };
  if (method !== "GET") options.headers["X-CSRFToken"] = csrfToken();
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const response = await fetch(url, options);
  const data = response.status === 204 ? null : await response.json().catch(() => null);
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

function el(tag, attributes = {}, children = []) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (key === "text") node.textContent = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

/* Errors: each API error names its field; show it beside that field, or at the form's foot. */
function clearErrors(form) {
  form.querySelectorAll("[data-error-for]").forEach((node) => { node.textContent = ""; });
}

function showErrors(form, error) {
  clearErrors(form);
  const errors = (error.body && error.body.errors) || [{ message: error.message, field: null }];
  for (const item of errors) {
    const slot = form.querySelector(`[data-error-for="${item.field}"]`) || form.querySelector('[data-error-for="__all__"]');
    slot.textContent = slot.textContent ? `${slot.textContent} ${item.message}` : item.message;
  }
}

function formValues(form) {
  const values = {};
  for (const input of form.querySelectorAll("input, select, textarea")) {
    if (!input.name || input.type === "file" || (input.type === "radio" && !input.checked)) continue;
    values[input.name] = input.type === "number" && input.value !== "" ? Number(input.value) : input.value;
  }
  return values;
}

function setProgress(container, fraction, label) {
  container.hidden = false;
  const percent = Math.max(0, Math.min(1, fraction || 0)) * 100;
  container.querySelector(".bar").style.width = `${percent.toFixed(1)}%`;
  container.querySelector(".label").textContent = label || `${percent.toFixed(0)}%`;
  container.setAttribute("role", "progressbar");
  container.setAttribute("aria-valuenow", percent.toFixed(0));
}

function setStatus(node, status) {
  node.className = `status status-${status}`;
  node.textContent = status.charAt(0).toUpperCase() + status.slice(1);
}

function formatSeconds(seconds) {
  if (seconds === null || seconds === undefined) return "";
  if (seconds < 60) return `${Math.round(seconds)} s`;
  const minutes = Math.floor(seconds / 60);
  return minutes < 60 ? `${minutes} min ${Math.round(seconds % 60)} s` : `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}

function poll(step) {
  /* Calls step() every POLL_MS until it returns true ("done"). */
  let stopped = false;
  const tick = async () => {
    if (stopped) return;
    let done = false;
    try { done = await step(); } catch (error) { console.error(error); }
    if (!done) setTimeout(tick, POLL_MS);
  };
  tick();
  return () => { stopped = true; };
}

const CHART_LAYOUT = {
  margin: { t: 40, r: 10, b: 45, l: 55 },
  height: 320,
  legend: { orientation: "h", y: -0.25 },
  font: { family: "system-ui, sans-serif", size: 12 },
};

/* ---- pages ---- */

const pages = {};

pages.home = () => {
  const form = document.getElementById("project-form");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      const project = await api("POST", "/api/projects/", formValues(form));
      window.location = `/projects/${project.id}/`;
    } catch (error) { showErrors(form, error); }
  });
};

function setUpSharing() {
  const form = document.getElementById("share-form");
  if (!form) return;
  const project = form.dataset.project;
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(form);
    try {
      await api("POST", `/api/projects/${project}/members/`, formValues(form));
      window.location.reload();
    } catch (error) { showErrors(form, error); }
  });
  document.querySelectorAll("[data-unshare]").forEach((button) => button.addEventListener("click", async () => {
    try {
      await api("DELETE", `/api/projects/${project}/members/${button.dataset.unshare}/`);
      window.location.reload();
    } catch (error) { showErrors(form, error); }
  }));
}

pages.project = () => {
  setUpSharing();
  setUpMerge();
  const form = document.getElementById("upload-form");
  if (!form) return;
  const bar = form.querySelector(".progress");
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    clearErrors(form);
    const chosen = [...form.querySelector('input[name="files"]').files, ...form.querySelector('input[name="folder"]').files];
    if (!chosen.length) {
      showErrors(form, new ApiError(400, { errors: [{ message: "Choose files, a folder or a zip archive to upload.", field: null }] }));
      return;
    }
    const data = new FormData();
    data.append("project", form.dataset.project);
    data.append("name", form.querySelector('input[name="name"]').value);
    data.append("labels_from", form.querySelector('select[name="labels_from"]').value);
    // Folder names can be labels: send each file's path inside the chosen folder.
    for (const file of chosen) {
      data.append("files", file);
      data.append("paths", file.webkitRelativePath || file.name);
    }
    const request = new XMLHttpRequest();
    request.open("POST", "/api/datasets/");
    request.setRequestHeader("X-CSRFToken", csrfToken());
    request.setRequestHeader("Accept", "application/json");
    const started = Date.now();
    request.upload.onprogress = (e) => {
      if (!e.lengthComputable) return;
      const elapsed = (Date.now() - started) / 1000;
      const eta = e.loaded ? elapsed * (e.total - e.loaded) / e.loaded : 0;
      setProgress(bar, e.loaded / e.total,
        `Uploading ${chosen.length} file(s): ${(e.loaded / 1e6).toFixed(1)} of ${(e.total / 1e6).toFixed(1)} MB · ${formatSeconds(eta)} left`);
    };
    request.upload.onload = () => setProgress(bar, 1, "Checking the files…");
    request.onload = () => {
      let body = null;
      try { body = JSON.parse(request.responseText); } catch (e) { body = null; }
      if (request.status === 202) { window.location = `/datasets/${body.id}/`; return; }
      bar.hidden = true;
      showErrors(form, new ApiError(request.status, body));
    };
    request.onerror = () => { bar.hidden = true; showErrors(form, new ApiError(0, { message: "The upload failed: the server could not be reached." })); };
    setProgress(bar, 0, "Uploading…");
    request.send(data);
  });
};

function setUpMerge() {
  const form = document.getElementById("merge-form");
  if (!form) return;
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(form);
    const mapping = {};
    for (const line of form.querySelector("textarea").value.split("\n")) {
      const [from, to] = line.split("->").map((part) => (part || "").trim());
      if (from) mapping[from] = to || "";
    }
    try {
      const merged = await api("POST", "/api/datasets/merge/", {
        name: form.querySelector('input[name="name"]').value,
        datasets: [...form.querySelectorAll('input[name="datasets"]:checked')].map((box) => Number(box.value)),
        label_mapping: mapping,
      });
      window.location = `/datasets/${merged.id}/`;
    } catch (error) { showErrors(form, error); }
  });
}

pages.dataset = () => {
  const root = document.getElementById("dataset-root");
  const id = root.dataset.dataset;
  const statusNode = document.getElementById("dataset-status");
  const progress = document.getElementById("ingest-progress");
  const stopButton = document.getElementById("ingest-stop") || document.createElement("button");
  stopButton.addEventListener("click", async () => {
    stopButton.disabled = true;
    try { await api("POST", `/api/datasets/${id}/stop/`); } catch (error) { alert(error.message); }
  });
  let firstSeen = null; // (time, steps done) when progress was first seen: the rate since gives the ETA
  poll(async () => {
    const dataset = await api("GET", `/api/datasets/${id}/`);
    setStatus(statusNode, dataset.status);
    document.getElementById("dataset-message").textContent = dataset.message;
    const active = dataset.status === "queued" || dataset.status === "ingesting";
    stopButton.hidden = !active;
    if (active) {
      const done = dataset.progress_done;
      if (firstSeen === null && dataset.status === "ingesting") firstSeen = { time: Date.now(), done };
      const rate = firstSeen && done > firstSeen.done ? (done - firstSeen.done) / ((Date.now() - firstSeen.time) / 1000) : 0;
      const eta = rate ? ` · ${formatSeconds((dataset.progress_total - done) / rate)} left` : "";
      const what = dataset.status === "queued" ? "Waiting for a worker" : `${done} of ${dataset.progress_total} steps`;
      setProgress(progress, dataset.progress, `${Math.round(dataset.progress * 100)}% · ${what}${eta}`);
      return false;
    }
    progress.hidden = true;
    await showReport(id);
    if (dataset.status === "ready") showReadyDataset(dataset);
    return true;
  });
};

async function showReport(id) {
  const details = document.getElementById("report");
  const filter = document.getElementById("report-filter");
  const load = async () => {
    const outcome = filter.value ? `&status=${filter.value}` : "";
    const report = await api("GET", `/api/datasets/${id}/report/?limit=500${outcome}`);
    document.querySelector("#report tbody").replaceChildren(...report.results.map((row) => el("tr", { class: `outcome-${row.status}` }, [
      el("td", { text: row.path }), el("td", { text: row.status }), el("td", { text: row.reason }),
    ])));
    document.getElementById("report-shown").textContent = report.count > 500 ? `first 500 of ${report.count}` : `${report.count} file(s)`;
  };
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
  if (counts.rejected + counts.quarantined + counts.skipped) {
    filter.value = "rejected&status=quarantined&status=skipped";
    if (counts.rejected + counts.quarantined + counts.skipped <= 20) details.open = true;
  }
  filter.addEventListener("change", load);
  await load();
}

function showReadyDataset(dataset) {
  document.getElementById("ready-only").hidden = false;
  const labels = Object.keys(dataset.class_counts);
  const counts = labels.map((label) => dataset.class_counts[label]);
  const names = labels.map((label) => label || "(unlabelled)");
  Plotly.newPlot("class-chart", [{ type: "bar", x: names, y: counts, text: counts, textposition: "auto", marker: { color: "#2563eb" } }],
    { ...CHART_LAYOUT, title: { text: `${dataset.num_samples} samples` }, yaxis: { title: { text: "samples" } } },
    { displaylogo: false, responsive: true });
  const facts = [dataset.task, dataset.modalities, dataset.patient_count ? `${dataset.patient_count} patients` : ""];
  if (dataset.width) facts.push(`2D images cached at ${dataset.width}×${dataset.height}, ${dataset.channels === 1 ? "grayscale" : "colour"}`);
  document.getElementById("dataset-shape").textContent = facts.filter(Boolean).join(" · ");
  const filter = document.getElementById("label-filter");
  for (const label of labels) filter.append(el("option", { value: label, text: label || "(unlabelled)" }));
  const sources = document.getElementById("source-filter");
  if (dataset.merged_from.length) {
    for (const source of dataset.merged_from) sources.append(el("option", { value: source, text: `dataset ${source}` }));
  } else {
    sources.closest("label").hidden = true;
  }
  setUpThumbnails(dataset.id);
  setUpPartitions(dataset);
  setUpTableJoin(dataset.id);
}

function setUpThumbnails(id) {
  const pageSize = 48;
  let offset = 0;
  let total = 0;
  const grid = document.getElementById("thumbnails");
  const value = (selector) => document.getElementById(selector).value;
  const query = () => {
    const params = new URLSearchParams({ limit: pageSize, offset });
    if (value("label-filter") !== "__all__") params.set("label", value("label-filter"));
    if (value("patient-filter").trim()) params.set("patient", value("patient-filter").trim());
    if (value("source-filter")) params.set("source", value("source-filter"));
    if (value("subset-filter")) {
      const [partition, subset] = value("subset-filter").split(":");
      params.set("partition", partition);
      params.set("subset", subset);
    }
    return params.toString();
  };
  let latest = 0;
  const load = async () => {
    const request = ++latest;
    const page = await api("GET", `/api/datasets/${id}/samples/?${query()}`);
    if (request !== latest) return; // a newer filter or page was asked for while this one loaded
    total = page.count;
    grid.replaceChildren(...page.results.map((sample) => el("a", { href: `/samples/${sample.id}/`, class: "thumb-link" }, [
      el("figure", { class: "thumb" }, [
        el("img", { src: sample.thumbnail_url, alt: `${sample.label}: ${sample.source_path}`, loading: "lazy", title: sample.source_path }),
        el("figcaption", { text: `${sample.label || "(unlabelled)"}${sample.kind === "volume" ? ` · ${sample.depth} slices` : ""}` }),
      ]),
    ])));
    document.getElementById("page-info").textContent =
      total ? `${offset + 1}–${Math.min(offset + pageSize, total)} of ${total}` : "no samples";
    document.getElementById("page-prev").disabled = offset === 0;
    document.getElementById("page-next").disabled = offset + pageSize >= total;
  };
  for (const name of ["label-filter", "source-filter", "subset-filter"]) {
    document.getElementById(name).addEventListener("change", () => { offset = 0; load(); });
  }
  document.getElementById("patient-filter").addEventListener("change", () => { offset = 0; load(); });
  document.getElementById("page-prev").addEventListener("click", () => { offset = Math.max(0, offset - pageSize); load(); });
  document.getElementById("page-next").addEventListener("click", () => { offset += pageSize; load(); });
  load();
}

function setUpTableJoin(id) {
  const form = document.getElementById("table-form");
  if (!form) return;
  const result = document.getElementById("table-result");
  const applyButton = document.getElementById("table-apply");
  const send = async (url) => {
    const data = new FormData();
    data.append("table", form.querySelector('input[name="table"]').files[0]);
    for (const name of ["column", "image_key", "label_column"]) data.append(name, form.querySelector(`[name="${name}"]`).value);
    for (const option of form.querySelector('[name="identifier_columns"]').selectedOptions) data.append("identifier_columns", option.value);
    const response = await fetch(url, { method: "POST", body: data, headers: { "X-CSRFToken": csrfToken(), Accept: "application/json" } });
    const body = await response.json().catch(() => null);
    if (!response.ok) throw new ApiError(response.status, body);
    return body;
  };
  form.querySelector('input[name="table"]').addEventListener("change", async () => {
    clearErrors(form);
    applyButton.disabled = true;
    form.querySelector('[name="column"]').value = "";
    try {
      const first = await send(`/api/datasets/${id}/table/preview/`);
      for (const name of ["column", "label_column", "identifier_columns"]) {
        const select = form.querySelector(`[name="${name}"]`);
        const keep = name === "label_column" ? [el("option", { value: "", text: "(none)" })] : [];
        select.replaceChildren(...keep, ...first.columns.map((column) => el("option", { value: column, text: column })));
      }
    } catch (error) { showErrors(form, error); }
  });
  document.getElementById("table-preview").addEventListener("click", async () => {
    clearErrors(form);
    try {
      const preview = await send(`/api/datasets/${id}/table/preview/`);
      const labels = Object.entries(preview.label_counts).map(([label, n]) => `${label}: ${n}`).join(", ") || "none";
      result.hidden = false;
      result.replaceChildren(
        el("p", { text: `${preview.matched_samples} of ${preview.samples} samples matched a row; ${preview.rows} rows in the table.` }),
        el("p", { text: `Samples without a row: ${preview.unmatched_samples}${preview.unmatched_sample_examples.length ? ` (e.g. ${preview.unmatched_sample_examples.slice(0, 3).join(", ")})` : ""}` }),
        el("p", { text: `Rows without a sample: ${preview.unmatched_rows}${preview.unmatched_row_examples.length ? ` (e.g. ${preview.unmatched_row_examples.slice(0, 3).join(", ")})` : ""}` }),
        el("p", { text: `Labels it would give: ${labels}${preview.conflicts ? `; ${preview.conflicts} samples have rows that disagree and would keep their label` : ""}` }),
      );
      result.id = "table-result";
      applyButton.disabled = !preview.matched_samples;
    } catch (error) { showErrors(form, error); }
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      await send(`/api/datasets/${id}/table/apply/`);
      window.location.reload();
    } catch (error) { showErrors(form, error); }
  });
}

function subsetSummary(counts) {
  const entries = Object.entries(counts || {});
  const total = entries.reduce((sum, [, n]) => sum + n, 0);
  return `${total} (${entries.map(([label, n]) => `${label} ${n}`).join(", ")})`;
}

async function setUpPartitions(dataset) {
  const root = document.getElementById("dataset-root");
  const table = document.querySelector("#partition-table tbody");
  const render = async () => {
    const page = await api("GET", `/api/partitions/?dataset=${dataset.id}&limit=100`);
    const subsets = document.getElementById("subset-filter");
    subsets.replaceChildren(el("option", { value: "", text: "All" }), ...page.results.flatMap((partition) =>
      ["train", "validation", "test"].map((subset) => el("option", { value: `${partition.id}:${subset}`, text: `${partition.name}: ${subset}` }))));
    table.replaceChildren(...page.results.map((partition) => el("tr", { "data-partition": partition.id }, [
      el("td", {}, [el("a", { href: `/partitions/${partition.id}/`, text: partition.name }),
        el("span", { class: Object.keys(partition.leaking_patients).length ? "error" : "muted",
          text: Object.keys(partition.leaking_patients).length ? ` · ${Object.keys(partition.leaking_patients).length} patients in two subsets` : "" })]),
      el("td", { text: subsetSummary(partition.counts.train) }),
      el("td", { text: subsetSummary(partition.counts.validation) }),
      el("td", { text: subsetSummary(partition.counts.test) }),
      el("td", {}, root.dataset.canChange === "yes"
        ? [el("a", { href: `/projects/${root.dataset.project}/runs/new/?partition=${partition.id}`, class: "button", text: "Train a model" })]
        : []),
    ])));
  };
  const form = document.getElementById("partition-form");
  if (form) form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(form);
    try {
      await api("POST", "/api/partitions/", { ...formValues(form), dataset: dataset.id });
      await render();
    } catch (error) { showErrors(form, error); }
  });
  await render();
}

pages.partition = async () => {
  const root = document.getElementById("partition-root");
  const partition = await api("GET", `/api/partitions/${root.dataset.partition}/`);
  const subsets = ["train", "validation", "test"];
  const labels = [...new Set(subsets.flatMap((subset) => Object.keys(partition.counts[subset] || {})))].sort();
  const count = (subset, label) => (partition.counts[subset] || {})[label] || 0;
  const table = document.querySelector("#partition-counts tbody");
  table.replaceChildren(...labels.map((label) => el("tr", {}, [el("td", { text: label || "(unlabelled)" }),
    ...subsets.map((subset) => el("td", { text: String(count(subset, label)) })),
    el("td", { text: String(subsets.reduce((total, subset) => total + count(subset, label), 0)) })])),
  el("tr", { class: "total" }, [el("td", { text: "All" }), ...subsets.map((subset) => el("td", {
    text: String(labels.reduce((total, label) => total + count(subset, label), 0)) })),
  el("td", { text: String(labels.reduce((total, label) => total + subsets.reduce((t, s) => t + count(s, label), 0), 0)) })]));
  Plotly.newPlot("partition-chart", subsets.map((subset) => ({ type: "bar", name: subset, x: labels, y: labels.map((label) => count(subset, label)) })),
    { ...CHART_LAYOUT, barmode: "group", title: { text: "Samples per class in each subset" }, yaxis: { title: { text: "samples" } } },
    { displaylogo: false, responsive: true });
  const leaks = Object.entries(partition.leaking_patients);
  const check = document.getElementById("leakage");
  if (!leaks.length) {
    check.className = "ok";
    check.textContent = "No patient in two subsets.";
  } else {
    check.className = "error";
    check.replaceChildren(el("span", { text: `${leaks.length} patients are in more than one subset: ` }),
      ...leaks.slice(0, 50).map(([patient, found]) => el("code", { text: `${patient} (${found.join(", ")}) ` })));
  }
  const how = { percentages: `${partition.train_percent}/${partition.validation_percent}/${partition.test_percent} %, stratified by label, patients kept whole`,
    kfold: `fold ${partition.fold} of ${partition.folds} (validation), the other folds train`, column: `from the table column '${partition.column}'` };
  document.getElementById("partition-facts").textContent = `${how[partition.method]}${partition.method === "column" ? "" : ` · seed ${partition.seed}`}`;
};

pages.sample = () => {
  const root = document.getElementById("viewer");
  const id = root.dataset.sample;
  const image = document.getElementById("plane");
  const controls = document.getElementById("viewer-controls");
  const field = (name) => controls.querySelector(`[name="${name}"]`);
  let facts = null;
  const draw = () => {
    const params = new URLSearchParams({ axis: field("axis").value, index: field("index").value, frame: field("frame").value,
      center: field("center").value, width: field("width").value, mask: field("mask").checked ? "true" : "false" });
    image.src = `/api/samples/${id}/slice/?${params}`;
    document.getElementById("index-label").textContent = `${Number(field("index").value) + 1} of ${Number(field("index").max) + 1}`;
  };
  const setAxis = () => {
    const count = facts.display.planes[field("axis").value];
    field("index").max = count - 1;
    field("index").value = Math.floor(count / 2);
    draw();
  };
  image.addEventListener("error", async () => {
    const response = await fetch(image.src, { headers: { Accept: "application/json" } });
    const body = await response.json().catch(() => ({}));
    document.getElementById("viewer-error").textContent = body.message || "The picture could not be drawn.";
  });
  image.addEventListener("load", () => { document.getElementById("viewer-error").textContent = ""; });
  api("GET", `/api/samples/${id}/`).then((sample) => {
    facts = sample;
    const planes = Object.keys(sample.display.planes);
    field("axis").replaceChildren(...planes.map((axis) => el("option", { value: axis, text: axis })));
    field("frame").max = sample.display.frames - 1;
    field("frame").closest("label").hidden = sample.display.frames < 2;
    field("mask").closest("label").hidden = !sample.has_mask;
    field("center").value = sample.display.window_center;
    field("width").value = sample.display.window_width;
    document.getElementById("window-units").textContent = sample.display.units;
    document.querySelectorAll("[data-preset]").forEach((button) => { button.hidden = sample.modality !== "CT"; });
    document.getElementById("sample-facts").textContent = [sample.label || "(unlabelled)", sample.kind, sample.modality,
      sample.patient, `${sample.kind === "volume" ? `${sample.depth}×` : ""}${sample.height}×${sample.width}`,
      sample.spacing.length ? `spacing ${sample.spacing.map((v) => Number(v).toFixed(2)).join(" × ")} mm` : ""].filter(Boolean).join(" · ");
    setAxis();
  });
  api("GET", `/api/samples/${id}/tags/`).then((rows) => {
    document.querySelector("#tags tbody").replaceChildren(...rows.map((row) => el("tr", {}, [
      el("td", { text: row.tag }), el("td", { text: row.name, class: "tag-name", "data-depth": Math.min(row.depth, 3) }),
      el("td", { text: row.value })])));
  });
  field("axis").addEventListener("change", setAxis);
  for (const name of ["index", "frame"]) field(name).addEventListener("input", draw);
  for (const name of ["center", "width", "mask"]) field(name).addEventListener("change", draw);
  document.querySelectorAll("[data-preset]").forEach((button) => button.addEventListener("click", () => {
    const [center, width] = button.dataset.preset.split(",");
    field("center").value = center;
    field("width").value = width;
    draw();
  }));
};

pages.pipeline = async () => {
  const root = document.getElementById("pipeline-root");
  const form = document.getElementById("pipeline-form");
  const projectId = Number(root.dataset.project);
  let pipelineId = root.dataset.pipeline ? Number(root.dataset.pipeline) : null;
  const catalogue = Object.fromEntries((await api("GET", "/api/operations/")).map((op) => [op.name, op]));
  const measureSchemas = await api("GET", "/api/measures/");
  const kindChoice = form.querySelector('select[name="kind"]');
  let steps = [];
  let measures = [];
  if (pipelineId) {
    const pipeline = await api("GET", `/api/pipelines/${pipelineId}/`);
    const latest = pipeline.versions[pipeline.versions.length - 1];
    steps = latest.steps;
    measures = latest.measures;
    describeVersions(pipeline.versions);
  }
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
    const list = document.getElementById("operation-list");
    // Preprocessing and aggregation run once: random operations belong in augmentation pipelines only.
    const runOnce = kindChoice.value !== "augmentation";
    const matches = Object.values(catalogue).filter((op) => !(runOnce && op.random) &&
      (!query || `${op.title} ${op.name} ${op.help} ${op.category}`.toLowerCase().includes(query)));
    list.replaceChildren(...matches.map((op) => el("li", { title: op.help }, [
      el("button", { type: "button", class: "add-operation", "data-op": op.name, text: "Add" }),
      el("span", { class: "operation-title", text: ` ${op.title} ` }),
      el("span", { class: `badge badge-${op.category}`, text: op.category }),
      el("span", { class: "muted", text: ` ${op.dims.map((d) => `${d}D`).join("/")}${op.random ? " · random" : ""}` }),
    ])));
  }

  function defaults(op) {
    return Object.fromEntries(catalogue[op].params.map((p) => [p.name, p.default]));
  }

  function paramField(index, param, value) {
    const name = `steps[${index}].${param.name}`;
    const update = (newValue) => { steps[index].params[param.name] = newValue; schedulePreview(); };
    let input;
    if (param.kind === "bool") {
      input = el("input", { type: "checkbox", name });
      input.checked = Boolean(value);
      input.addEventListener("change", () => update(input.checked));
    } else if (param.kind === "choice") {
      input = el("select", { name }, param.choices.map((c) => el("option", { value: c, text: c })));
      input.value = value;
      input.addEventListener("change", () => update(input.value));
    } else if (param.kind === "range") {
      const bound = (part) => {
        const box = el("input", { type: "number", step: "any", name: `${name}.${part}`, "aria-label": `${param.label} ${part ? "high" : "low"}` });
        if (param.minimum !== undefined) box.min = param.minimum;
        if (param.maximum !== undefined) box.max = param.maximum;
        box.value = value[part];
        box.addEventListener("input", () => { const pair = [...steps[index].params[param.name]]; pair[part] = Number(box.value); update(pair); });
        return box;
      };
      input = el("span", { class: "range" }, [bound(0), el("span", { text: " to " }), bound(1)]);
    } else {
      input = el("input", { type: param.kind === "text" ? "text" : "number", name, step: param.kind === "int" ? "1" : "any" });
      if (param.minimum !== undefined) input.min = param.minimum;
      if (param.maximum !== undefined) input.max = param.maximum;
      input.value = value;
      input.addEventListener("input", () => update(param.kind === "text" ? input.value : Number(input.value)));
    }
    return el("label", { title: param.help }, [el("span", { text: `${param.label} ` }), input,
      el("small", { class: "muted", text: ` ${param.help}` }), el("span", { class: "error", "data-error-for": name, role: "alert" })]);
  }

  function renderSteps() {
    const list = document.getElementById("steps");
    document.getElementById("no-steps").hidden = steps.length > 0;
    list.replaceChildren(...steps.map((step, index) => {
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
        ...(op ? op.params.map((param) => paramField(index, param, step.params[param.name] ?? param.default)) : []),
      ]);
    }));
  }

  function changed() { renderSteps(); schedulePreview(); }

  function renderMeasures() {
    document.getElementById("measures-field").hidden = kindChoice.value !== "aggregation";
    document.getElementById("measure-choices").replaceChildren(...measureSchemas.map((measure) => {
      const box = el("input", { type: "checkbox", name: "measures", value: measure.name });
      box.checked = measures.includes(measure.name);
      box.addEventListener("change", () => {
        measures = measureSchemas.map((m) => m.name).filter((name) => (name === measure.name ? box.checked : measures.includes(name)));
      });
      return el("label", { class: "check" }, [box, el("span", { text: ` ${measure.title}${measure.unit ? ` (${measure.unit})` : ""}` }),
        measure.needs_mask ? el("small", { class: "muted", text: " needs a mask" }) : ""]);
    }));
  }

  function schedulePreview() {
    clearTimeout(previewTimer);
    previewTimer = setTimeout(drawPreview, 400);
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
      if (request !== latestPreview) return;
      clearErrors(form);
      grid.replaceChildren(...items.map((item) => el("figure", { class: "preview-pair" }, [
        el("img", { src: item.before, alt: `${item.label}: before` }),
        item.after ? el("img", { src: item.after, alt: `${item.label}: after` }) : el("div", { class: "preview-error", text: item.error }),
        el("figcaption", { text: item.label || "(unlabelled)" }),
      ])));
      state.textContent = `seed ${seed}`;
    } catch (error) {
      if (request !== latestPreview) return;
      showErrors(form, error);
      state.textContent = "Fix the steps to see the preview.";
    }
  }

  document.getElementById("operation-search").addEventListener("input", renderCatalogue);
  document.getElementById("operation-list").addEventListener("click", (event) => {
    const button = event.target.closest(".add-operation");
    if (!button) return;
    steps.push({ op: button.dataset.op, params: defaults(button.dataset.op) });
    changed();
  });
  const again = document.getElementById("sample-again");
  if (again) again.addEventListener("click", () => { seed += 1; drawPreview(); });
  const datasetChoice = document.getElementById("preview-dataset");
  if (datasetChoice) datasetChoice.addEventListener("change", drawPreview);
  const save = document.getElementById("pipeline-save");
  if (save) save.addEventListener("click", async () => {
    clearErrors(form);
    const name = form.querySelector('input[name="name"]').value;
    try {
      const aggregation = kindChoice.value === "aggregation";
      if (pipelineId) {
        const pipeline = await api("PATCH", `/api/pipelines/${pipelineId}/`, aggregation ? { name, steps, measures } : { name, steps });
        describeVersions(pipeline.versions);
        document.getElementById("save-state").textContent = `Saved as version ${pipeline.versions[pipeline.versions.length - 1].number}.`;
      } else {
        const kind = kindChoice.value;
        const pipeline = await api("POST", "/api/pipelines/", { project: projectId, name, kind, steps, ...(aggregation ? { measures } : {}) });
        window.location = `/projects/${projectId}/pipelines/${pipeline.id}/`;
      }
    } catch (error) { showErrors(form, error); }
  });
  const runForm = document.getElementById("run-form");
  if (runForm) runForm.addEventListener("submit", async () => {
    clearErrors(runForm);
    try {
      const derived = await api("POST", `/api/pipelines/${pipelineId}/run/`, {
        dataset: Number(runForm.querySelector('select[name="dataset"]').value), name: runForm.querySelector('input[name="name"]').value });
      window.location = `/datasets/${derived.id}/`;
    } catch (error) { showErrors(runForm, error); }
  });
  const measureForm = document.getElementById("measure-form");
  if (measureForm) measureForm.addEventListener("submit", async () => {
    clearErrors(measureForm);
    try {
      const table = await api("POST", "/api/aggregations/", { pipeline: pipelineId,
        dataset: Number(measureForm.querySelector('select[name="dataset"]').value), name: measureForm.querySelector('input[name="name"]').value });
      window.location = `/aggregations/${table.id}/`;
    } catch (error) { showErrors(measureForm, error); }
  });
  kindChoice.addEventListener("change", () => { renderMeasures(); renderCatalogue(); });
  renderCatalogue();
  renderSteps();
  renderMeasures();
  drawPreview();
};

pages.aggregation = () => {
  const id = document.getElementById("aggregation-root").dataset.aggregation;
  const stopButton = document.getElementById("aggregation-stop") || document.createElement("button");
  stopButton.addEventListener("click", async () => {
    stopButton.disabled = true;
    try { await api("POST", `/api/aggregations/${id}/stop/`); } catch (error) { alert(error.message); }
  });
  let firstSeen = null;
  poll(async () => {
    const table = await api("GET", `/api/aggregations/${id}/`);
    setStatus(document.getElementById("aggregation-status"), table.status);
    document.getElementById("aggregation-message").textContent = table.message;
    const active = table.status === "queued" || table.status === "running";
    stopButton.hidden = !active;
    const progress = document.getElementById("aggregation-progress");
    if (active) {
      const done = table.progress_done;
      if (firstSeen === null && table.status === "running") firstSeen = { time: Date.now(), done };
      const rate = firstSeen && done > firstSeen.done ? (done - firstSeen.done) / ((Date.now() - firstSeen.time) / 1000) : 0;
      const eta = rate ? ` · ${formatSeconds((table.progress_total - done) / rate)} left` : "";
      const what = table.status === "queued" ? "Waiting for a worker" : `${done} of ${table.progress_total} steps`;
      setProgress(progress, table.progress, `${Math.round(table.progress * 100)}% · ${what}${eta}`);
      return false;
    }
    progress.hidden = true;
    if (table.status === "ready") showMeasures(table);
    return true;
  });
};

function showMeasures(table) {
  document.getElementById("aggregation-results").hidden = false;
  const values = table.columns.filter((column) => column.name !== "histogram");
  const labels = Object.keys(table.histograms).length ? Object.keys(table.histograms)
    : [...new Set(Object.values(table.summary).flatMap((measure) => Object.keys(measure.labels)))].sort();
  const unit = (column) => (column.unit ? ` (${column.unit})` : "");
  const choice = document.getElementById("chart-measure");
  choice.replaceChildren(...values.filter((c) => table.summary[c.name]).map((c) => el("option", { value: c.name, text: `${c.title}${unit(c)}` })));
  const draw = () => {
    const column = values.find((c) => c.name === choice.value);
    if (!column) return;
    const measure = table.summary[column.name];
    const boxes = Object.entries(measure.labels).map(([label, data]) => ({
      type: "box", name: label, x: [label], q1: [data.box.q1], median: [data.box.median], q3: [data.box.q3],
      lowerfence: [data.box.lowerfence], upperfence: [data.box.upperfence], mean: [data.box.mean],
      hovertext: `${data.box.count} samples · min ${data.box.min} · max ${data.box.max}`,
    }));
    Plotly.react("box-chart", boxes, { ...CHART_LAYOUT, title: { text: `${column.title} per label` }, showlegend: false,
      yaxis: { title: { text: `${column.name}${unit(column)}` } } }, { displaylogo: false, responsive: true });
    const centres = measure.edges.slice(0, -1).map((edge, k) => (edge + measure.edges[k + 1]) / 2);
    const bars = Object.entries(measure.labels).map(([label, data]) => ({ type: "bar", name: label, x: centres, y: data.counts, opacity: 0.7 }));
    Plotly.react("histogram-chart", bars, { ...CHART_LAYOUT, barmode: "overlay", bargap: 0, title: { text: `${column.title}: samples per bin` },
      xaxis: { title: { text: `${column.name}${unit(column)}` } }, yaxis: { title: { text: "samples" } } }, { displaylogo: false, responsive: true });
  };
  choice.addEventListener("change", draw);
  draw();
  if (table.histogram_edges.length) drawIntensityHistogram(table);
  setUpExports(table);
  showRows(table, values, labels);
}

function drawIntensityHistogram(table) {
  const chart = document.getElementById("intensity-chart");
  chart.hidden = false;
  const edges = table.histogram_edges;
  const centres = edges.slice(0, -1).map((edge, k) => (edge + edges[k + 1]) / 2);
  // Fractions, not counts: labels with more (or larger) samples would otherwise hide the others.
  const traces = Object.entries(table.histograms).map(([label, counts]) => {
    const total = counts.reduce((sum, count) => sum + count, 0) || 1;
    return { type: "scatter", mode: "lines", line: { shape: "hvh" }, name: label, x: centres, y: counts.map((count) => count / total) };
  });
  Plotly.react(chart, traces, { ...CHART_LAYOUT, title: { text: "Intensity histogram per label (share of voxels)" },
    xaxis: { title: { text: "intensity after the steps" } }, yaxis: { tickformat: ".1%" } }, { displaylogo: false, responsive: true });
}

function setUpExports(table) {
  const base = `/api/aggregations/${table.id}/export/`;
  document.getElementById("export-csv").href = base;
  document.getElementById("export-xlsx").href = `${base}?file=xlsx`;
  const histogram = document.getElementById("export-histogram");
  histogram.hidden = !table.histogram_edges.length;
  histogram.href = `${base}?table=histogram`;
}

function showRows(table, columns, labels) {
  const PAGE = 100;
  let offset = 0;
  const labelChoice = document.getElementById("row-label");
  labelChoice.replaceChildren(el("option", { value: "", text: "All" }), ...labels.map((label) => el("option", { value: label, text: label })));
  document.querySelector("#aggregation-rows thead").replaceChildren(el("tr", {}, [
    el("th", { text: "Sample" }), el("th", { text: "Label" }), el("th", { text: "Patient" }),
    ...columns.map((c) => el("th", { text: c.unit ? `${c.title} (${c.unit})` : c.title })), el("th", { text: "Problems" })]));
  const format = (value) => (value === undefined || value === null ? "–" : Number(value).toPrecision(4).replace(/\.?0+$/, ""));
  const load = async () => {
    const label = labelChoice.value ? `&label=${encodeURIComponent(labelChoice.value)}` : "";
    const page = await api("GET", `/api/aggregations/${table.id}/rows/?limit=${PAGE}&offset=${offset}${label}`);
    document.querySelector("#aggregation-rows tbody").replaceChildren(...page.results.map((row) => el("tr", {}, [
      el("td", {}, [el("a", { href: `/samples/${row.sample}/`, text: `#${row.index + 1}` })]),
      el("td", { class: "nowrap", text: row.label || "(unlabelled)" }), el("td", { class: "nowrap", text: row.patient }),
      ...columns.map((c) => el("td", { class: "number", text: format(row.values[c.name]) })),
      el("td", { class: "problems", text: Object.entries(row.problems).map(([name, why]) => `${name === "*" ? "steps" : name}: ${why}`).join("; ") }),
    ])));
    document.getElementById("rows-shown").textContent = page.count
      ? `${offset + 1}–${offset + page.results.length} of ${page.count}` : "No rows.";
    document.getElementById("rows-previous").disabled = offset === 0;
    document.getElementById("rows-next").disabled = offset + PAGE >= page.count;
  };
  labelChoice.addEventListener("change", () => { offset = 0; load(); });
  document.getElementById("rows-previous").addEventListener("click", () => { offset = Math.max(0, offset - PAGE); load(); });
  document.getElementById("rows-next").addEventListener("click", () => { offset += PAGE; load(); });
  load();
}

pages["run-new"] = () => {
  const form = document.getElementById("run-form");
  const gpuInput = form.querySelector('input[value="gpu"]');
  api("GET", "/api/resources/").then((resources) => {
    const hint = document.getElementById("resources-hint");
    const gpus = resources.workers.reduce((sum, worker) => sum + worker.gpu_count, 0);
    gpuInput.disabled = !resources.gpu_available;
    hint.textContent = resources.gpu_available
      ? `${gpus} GPU(s) online.`
      : (resources.cpu_available ? "No GPU worker is online; the run will use a CPU worker."
        : "No worker is online right now; the run will wait in the queue until one starts.");
  }).catch(() => {});
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(form);
    try {
      const values = formValues(form);
      if (!values.augmentation) delete values.augmentation; // "None"
      const run = await api("POST", "/api/runs/", values);
      window.location = `/runs/${run.id}/`;
    } catch (error) { showErrors(form, error); }
  });
};

pages.run = () => {
  const id = document.getElementById("run-root").dataset.run;
  const stopButton = document.getElementById("run-stop") || document.createElement("button");
  const series = {};
  let lastPoint = 0;
  stopButton.addEventListener("click", async () => {
    stopButton.disabled = true;
    try { await api("POST", `/api/runs/${id}/stop/`); } catch (error) { alert(error.message); }
  });
  const drawCharts = () => {
    for (const metric of ["loss", "accuracy"]) {
      // Fresh arrays each time: Plotly.react redraws only data it sees as new.
      const traces = ["train", "validation"].filter((subset) => series[`${subset}/${metric}`]).map((subset) => ({
        x: [...series[`${subset}/${metric}`].x], y: [...series[`${subset}/${metric}`].y], name: subset,
        mode: "lines+markers", line: { dash: subset === "train" ? "solid" : "dot" },
      }));
      Plotly.react(`${metric}-chart`, traces, {
        ...CHART_LAYOUT, title: { text: metric }, datarevision: lastPoint,
        xaxis: { title: { text: "epoch" }, dtick: 1 },
        yaxis: metric === "accuracy" ? { range: [0, 1.02], tickformat: ".0%" } : { rangemode: "tozero" },
      }, { displaylogo: false, responsive: true });
    }
  };
  const fetchMetrics = async () => {
    const points = await api("GET", `/api/runs/${id}/metrics/?after=${lastPoint}`);
    for (const point of points) {
      const key = `${point.subset}/${point.name}`;
      series[key] = series[key] || { x: [], y: [] };
      series[key].x.push(point.epoch);
      series[key].y.push(point.value);
      lastPoint = Math.max(lastPoint, point.id);
    }
    if (points.length || !document.querySelector("#loss-chart .plot-container")) drawCharts();
  };
  poll(async () => {
    const run = await api("GET", `/api/runs/${id}/`);
    await fetchMetrics();
    setStatus(document.getElementById("run-status"), run.status);
    document.getElementById("run-message").textContent = run.message || run.progress_message;
    setProgress(document.getElementById("run-progress"), run.progress,
      `${Math.round(run.progress * 100)}%${run.progress_message ? " · " + run.progress_message : ""}`);
    document.getElementById("run-eta").textContent = run.eta_seconds !== null ? `About ${formatSeconds(run.eta_seconds)} left` : "";
    const finished = ["stopped", "succeeded", "failed"].includes(run.status);
    stopButton.hidden = finished || run.status === "stopping";
    const hint = document.getElementById("run-stop-hint");
    if (hint) hint.hidden = finished;
    if (finished) showResults(run);
    return finished;
  });
};

function showResults(run) {
  const results = document.getElementById("results");
  results.hidden = false;
  document.getElementById("test-accuracy").textContent =
    run.test_accuracy !== null ? `${(run.test_accuracy * 100).toFixed(1)}%` : "not measured";
  document.getElementById("test-detail").textContent = run.test_loss !== null ? `(test loss ${run.test_loss.toFixed(4)})` : "";
  const link = document.getElementById("model-download");
  if (run.model_url) link.href = run.model_url; else link.hidden = true;
  document.getElementById("run-config").textContent = JSON.stringify(run.config, null, 2);
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
  if (!button || button.dataset.bound) return;
  button.dataset.bound = "yes";
  button.addEventListener("click", async () => {
    try {
      const updated = await api("POST", `/api/runs/${run.id}/visibility/`, { public: button.textContent !== "Make private" });
      show(updated.public);
    } catch (error) { state.textContent = error.message; }
  });
}

window.addEventListener("DOMContentLoaded", () => {
  const page = document.body.dataset.page;
  if (pages[page]) pages[page]();
});
