/* One sample: a plane of it drawn by the server (slice, frame, window, mask), its facts and its tags. */
import { api } from "../api.js";
import { el } from "../dom.js";

const id = document.getElementById("viewer").dataset.sample;
const image = document.getElementById("plane");
const controls = document.getElementById("viewer-controls");
const field = (name) => controls.querySelector(`[name="${name}"]`);
let planes = {};

function draw() {
  const params = new URLSearchParams({ axis: field("axis").value, index: field("index").value, frame: field("frame").value,
    center: field("center").value, width: field("width").value, mask: field("mask").checked ? "true" : "false" });
  image.src = `/api/samples/${id}/slice/?${params}`;
  document.getElementById("index-label").textContent = `${Number(field("index").value) + 1} of ${Number(field("index").max) + 1}`;
}

/* A new plane opens on its middle slice. */
function setAxis() {
  const count = planes[field("axis").value];
  field("index").max = count - 1;
  field("index").value = Math.floor(count / 2);
  draw();
}

function describe(sample) {
  const shape = `${sample.kind === "volume" ? `${sample.depth}×` : ""}${sample.height}×${sample.width}`;
  const spacing = sample.spacing.length ? `spacing ${sample.spacing.map((v) => Number(v).toFixed(2)).join(" × ")} mm` : "";
  return [sample.label || "(unlabelled)", sample.kind, sample.modality, sample.patient, shape, spacing].filter(Boolean).join(" · ");
}

async function showSample() {
  const sample = await api("GET", `/api/samples/${id}/`);
  planes = sample.display.planes;
  field("axis").replaceChildren(...Object.keys(planes).map((axis) => el("option", { value: axis, text: axis })));
  field("frame").max = sample.display.frames - 1;
  field("frame").closest("label").hidden = sample.display.frames < 2;
  field("mask").closest("label").hidden = !sample.has_mask;
  field("center").value = sample.display.window_center;
  field("width").value = sample.display.window_width;
  document.getElementById("window-units").textContent = sample.display.units;
  // The presets are Hounsfield windows: they mean nothing outside CT.
  document.querySelectorAll("[data-preset]").forEach((button) => { button.hidden = sample.modality !== "CT"; });
  document.getElementById("sample-facts").textContent = describe(sample);
  setAxis();
}

async function showTags() {
  const rows = await api("GET", `/api/samples/${id}/tags/`);
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
