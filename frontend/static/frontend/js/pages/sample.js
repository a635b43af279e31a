/* One sample: a plane of it drawn by the server (slice, frame, window, mask), its facts and its tags, and a run's
   explanation of it (probabilities, heat map over the plane: explain.js). */
import { api } from "../api.js";
import { el } from "../dom.js";
import { explainPanel } from "../explain.js";
import { casePanel } from "../segmentation_case.js";

const viewer = document.getElementById("viewer");
const id = viewer.dataset.sample;
const segmentation = viewer.dataset.task === "segmentation";
const image = document.getElementById("plane");
const controls = document.getElementById("viewer-controls");
const field = (name) => controls.querySelector(`[name="${name}"]`);
let planes = {};
const explanation = explainPanel({ sampleId: Number(id), projectId: Number(viewer.dataset.project),
  datasetId: Number(viewer.dataset.dataset) });
// A segmentation evaluation's case (?evaluation=<id>): its predicted mask over the plane.
const predictedCase = casePanel({ sampleId: Number(id) });

function draw() {
  const params = new URLSearchParams({ axis: field("axis").value, index: field("index").value, frame: field("frame").value,
    center: field("center").value, width: field("width").value, mask: field("mask").checked ? "true" : "false" });
  image.src = `/api/samples/${id}/slice/?${params}`;
  explanation.draw(field("axis").value, field("index").value); // its heat map follows the plane shown
  predictedCase.draw(field("axis").value, field("index").value); // and the case's predicted mask
  document.getElementById("index-label").textContent = `${Number(field("index").value) + 1} of ${Number(field("index").max) + 1}`;
}

/* A new plane opens on its middle slice. */
function setAxis() {
  const count = planes[field("axis").value];
  field("index").max = count - 1;
  field("index").value = Math.floor(count / 2);
  field("index").closest("label").hidden = count < 2;
  draw();
}

/* What the sample is labelled with: its class, its mask and the label values the mask holds. */
function targets(sample) {
  const values = sample.meta.mask_values || [];
  const mask = sample.has_mask ? `mask${values.length ? ` (labels ${values.join(", ")})` : ""}` : "";
  return segmentation ? [sample.label, mask || "no mask"] : [sample.label || "(unlabelled)", mask];
}

function describe(sample) {
  const shape = `${sample.kind === "volume" ? `${sample.depth}×` : ""}${sample.height}×${sample.width}`;
  const spacing = sample.spacing.length ? `spacing ${sample.spacing.map((v) => Number(v).toFixed(2)).join(" × ")} mm` : "";
  return [...targets(sample), sample.kind, sample.modality, sample.patient, shape, spacing].filter(Boolean).join(" · ");
}

async function showSample() {
  const sample = await api("GET", `/api/samples/${id}/`);
  planes = sample.display.planes;
  field("axis").replaceChildren(...Object.keys(planes).map((axis) => el("option", { value: axis, text: axis })));
  // Planes to choose from only in a volume of more than one slice.
  field("axis").closest("label").hidden = !(sample.kind === "volume" && sample.depth > 1);
  field("frame").max = sample.display.frames - 1;
  field("frame").closest("label").hidden = sample.display.frames < 2;
  field("mask").closest("label").hidden = !sample.has_mask;
  field("center").value = sample.display.window_center;
  field("width").value = sample.display.window_width;
  document.getElementById("window-units").textContent = sample.display.units;
  // The presets are Hounsfield windows: they mean nothing outside CT.
  document.querySelectorAll("[data-preset]").forEach((button) => { button.hidden = sample.modality !== "CT"; });
  document.querySelector("[data-preset]").parentElement.hidden = sample.modality !== "CT";
  document.getElementById("sample-facts").textContent = describe(sample);
  setAxis();
}

async function showTags() {
  const rows = await api("GET", `/api/samples/${id}/tags/`);
  document.getElementById("tags-card").hidden = !rows.length; // a PNG or JPEG has none
  document.querySelector("#tags tbody").replaceChildren(...rows.map((row) => el("tr", {}, [
    el("td", { text: row.tag }), el("td", { text: row.name, class: "tag-name", "data-depth": Math.min(row.depth, 3) }),
    el("td", { text: row.value })])));
}

/* The picture's address answers a failure in the API's error shape: ask again to tell the person why. */
image.addEventListener("error", async () => {
  let why = "The picture could not be drawn.";
  try { await api("GET", image.src); } catch (error) { why = error.message; }
  document.getElementById("viewer-error").textContent = why;
});
image.addEventListener("load", () => { document.getElementById("viewer-error").textContent = ""; });
field("axis").addEventListener("change", setAxis);
for (const name of ["index", "frame"]) field(name).addEventListener("input", draw);
for (const name of ["center", "width", "mask"]) field(name).addEventListener("change", draw);
document.querySelectorAll("[data-preset]").forEach((button) => button.addEventListener("click", () => {
  [field("center").value, field("width").value] = button.dataset.preset.split(",");
  draw();
}));
showSample();
showTags();
