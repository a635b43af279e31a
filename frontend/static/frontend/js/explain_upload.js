/* "Explain an image" (templates/frontend/_explain_upload.html), on a run's page and an imported model's: one file
   uploaded, checked as soon as it is chosen (POST /api/explanations/check/: what it is and how it would reach the
   model, or what is wrong with it, beside the field), then explained by a worker (POST /api/explanations/) like a
   dataset's sample: the class probabilities, and the heat map over the file's own picture, plane by plane for a
   volume (axial, coronal, sagittal), with an opacity slider and a legend; or the prediction alone and why.

   A segmentation run's card ("Segment a file", data-segments) is the same upload, check and job, whose result is the
   predicted label map (mask_url) over the file in the classes' colours, a table of each class's volume (ml; mm² for a
   2D image), the mask's downloads (NIfTI, PNG, DICOM SEG), and, when the file is one of the dataset's samples with a
   mask, its ground truth beside it on the same plane (GET /api/samples/{id}/slice/?mask=1).

   explainUploadCard() sets the card up when the page has one; the page opens with ?explain=<id> showing it. */
import { api } from "./api.js";
import { clearErrors, el, setProgress, showErrors } from "./dom.js";
import { probabilityRows } from "./explain.js";
import { downloadLinks, sizeRows } from "./segment_upload.js";

const POLL_MS = 1500;
const UNFINISHED = ["queued", "running"];

export function explainUploadCard() {
  const card = document.getElementById("explain-upload");
  if (!card) return null;
  const form = document.getElementById("explain-upload-form");
  const fileField = form.querySelector('[name="file"]');
  const button = document.getElementById("explain-upload-button");
  const facts = document.getElementById("explain-upload-facts");
  const status = document.getElementById("explain-upload-status");
  const progress = document.getElementById("explain-upload-progress");
  const result = document.getElementById("explain-upload-result");
  const picture = document.getElementById("upload-plane");
  const heat = document.getElementById("upload-heat");
  const viewer = document.getElementById("upload-viewer");
  const axisField = viewer.querySelector('[name="axis"]');
  const indexField = viewer.querySelector('[name="index"]');
  const controls = document.getElementById("upload-heat-controls");
  const opacity = controls.querySelector('[name="opacity"]');
  const showHeat = controls.querySelector('[name="show-heat"]');
  const truth = document.getElementById("upload-truth");
  const truthPicture = document.getElementById("upload-truth-plane");
  const segments = Boolean(card.dataset.segments);
  const model = card.dataset.run ? { run: card.dataset.run } : { imported_model: card.dataset.imported };
  const state = { explanation: null, timer: null, leaving: false, checked: null, planes: { axial: 1 } };

  function say(text) { status.textContent = text; }

  function formData() {
    const data = new FormData();
    for (const [key, value] of Object.entries(model)) data.append(key, value);
    if (fileField.files[0]) data.append("file", fileField.files[0]);
    return data;
  }

  /* Checked when chosen: nothing is kept or queued; a refusal shows beside the field. */
  async function check() {
    clearErrors(form);
    facts.textContent = "";
    button.disabled = true;
    const file = fileField.files[0];
    if (!file) return;
    facts.textContent = `Reading ${file.name}…`;
    const asked = file;
    try {
      const answer = await api("POST", "/api/explanations/check/", formData());
      if (fileField.files[0] !== asked) return; // another file was chosen meanwhile
      const shape = answer.kind === "volume" ? answer.shape.slice(-3).join(" × ") : answer.shape.slice(0, 2).join(" × ");
      facts.textContent = `${answer.modality} ${answer.kind === "volume" ? "volume" : "image"} ${shape}, `
        + `${answer.channels} channel${answer.channels === 1 ? "" : "s"}: it fits, ${answer.fits}`;
      button.disabled = false;
    } catch (error) {
      if (fileField.files[0] !== asked) return;
      facts.textContent = "";
      showErrors(form, error);
    }
  }

  async function start(event) {
    event.preventDefault();
    clearErrors(form);
    if (!fileField.files[0]) { showErrors(form, { errors: [{ field: "file", message: "Choose an image file first." }] }); return; }
    button.disabled = true;
    say("Sending the file…");
    try {
      show(await api("POST", "/api/explanations/", formData()));
    } catch (error) {
      say("");
      showErrors(form, error);
    } finally {
      button.disabled = !fileField.files[0];
    }
  }

  function show(explanation) {
    clearTimeout(state.timer);
    state.explanation = explanation;
    const address = new URL(window.location.href);
    address.searchParams.set("explain", explanation.id);
    window.history.replaceState(null, "", address);
    const name = explanation.upload ? explanation.upload.name : `explanation ${explanation.id}`;
    if (UNFINISHED.includes(explanation.status)) {
      progress.hidden = false;
      setProgress(progress, explanation.progress, explanation.status === "queued" ? "Waiting for a worker…"
        : explanation.progress_message || "Working…");
      say(`${segments ? "Segmenting" : "Explaining"} ${name}: ${explanation.status}.`);
      state.timer = setTimeout(() => poll(explanation.id), POLL_MS);
      return;
    }
    progress.hidden = true;
    if (explanation.status !== "done") {
      result.hidden = true;
      say(`The ${segments ? "segmentation" : "explanation"} of ${name} ${explanation.status}: ${explanation.message}`);
      return;
    }
    showResults(explanation);
  }

  async function poll(id) {
    if (state.leaving) return;
    try { show(await api("GET", `/api/explanations/${id}/`)); } catch (error) { say(error.message); }
  }

  function showResults(explanation) {
    say(`${explanation.upload.name}: ${explanation.message}`);
    result.hidden = false;
    const legend = document.getElementById("upload-legend");
    if (explanation.mask_url) showMask(explanation, legend);
    else showHeatMap(explanation, legend);
    if (explanation.upload.fits) legend.append(el("span", { class: "upload-fits", text: ` The file went in ${explanation.upload.fits}` }));
    state.planes = explanation.upload.planes;
    axisField.replaceChildren(...Object.keys(state.planes).map((axis) => el("option", { value: axis, text: axis })));
    axisField.closest("label").hidden = explanation.upload.kind !== "volume";
    setAxis();
  }

  function showHeatMap(explanation, legend) {
    const { classes, probabilities, predicted, explained_class: explained, layer, windows, note } = explanation.results;
    document.querySelector("#upload-probabilities tbody").replaceChildren(...probabilityRows(classes, probabilities, predicted));
    controls.hidden = !explanation.heat_map_url;
    if (!explanation.heat_map_url) {
      legend.textContent = `No heat map: ${note || "this model gives none."}`;
    } else {
      const stitched = windows > 1 ? ` Stitched from ${windows} sliding windows, as the model read this volume.` : "";
      legend.textContent = `Grad-CAM of the class “${explained}” at the layer ${layer}: red where the model found the most `
        + `evidence for ${explained}, blue the least, nothing where none. Scaled to this image's own peak. It shows where `
        + `the model looked, not a finding.${stitched}`;
    }
  }

  /* A segmentation: the mask over the file, the classes' sizes and colours, the downloads, the ground truth beside. */
  function showMask(explanation, legend) {
    const results = explanation.results;
    const volume = results.label_map_shape[0] > 1 || explanation.upload.kind === "volume";
    document.getElementById("upload-probabilities").hidden = true;
    document.getElementById("upload-segmentation").hidden = false;
    document.getElementById("upload-plane-caption").hidden = !results.ground_truth_sample;
    document.getElementById("upload-volume-unit").textContent = volume ? "Volume (ml)" : "Area (mm²)";
    document.querySelector("#upload-volumes tbody").replaceChildren(...sizeRows(results, volume));
    document.getElementById("upload-downloads").replaceChildren(...downloadLinks(explanation.downloads));
    controls.hidden = false;
    truth.hidden = !results.ground_truth_sample;
    document.getElementById("upload-truth-sample").textContent = results.ground_truth_sample
      ? `(sample ${results.ground_truth_sample}: this file is one of the dataset's)` : "";
    const sized = volume && !results.sizes.some((size) => "ml" in size) ? " Its spacing is unknown, so no volume in ml: voxels only." : "";
    legend.textContent = `Each ${volume ? "voxel" : "pixel"} labelled by the model, on the file's own grid, in the colours `
      + `of the table.${sized}${results.seg_note ? ` No DICOM SEG: ${results.seg_note}` : ""}`;
  }

  /* A new plane opens on its middle slice. */
  function setAxis() {
    const count = state.planes[axisField.value] || 1;
    indexField.max = count - 1;
    indexField.value = Math.floor(count / 2);
    indexField.closest("label").hidden = count < 2;
    draw();
  }

  function draw() {
    const explanation = state.explanation;
    if (!explanation || explanation.status !== "done") return;
    const params = new URLSearchParams({ axis: axisField.value, index: indexField.value });
    picture.src = `${explanation.image_url}?${params}`;
    document.getElementById("upload-index-label").textContent = `${Number(indexField.value) + 1} of ${Number(indexField.max) + 1}`;
    const overlay = explanation.heat_map_url || explanation.mask_url;
    if (overlay) heat.src = `${overlay}?${params}`;
    heat.hidden = !overlay || !showHeat.checked;
    const sample = explanation.results.ground_truth_sample;
    if (sample) truthPicture.src = `/api/samples/${sample}/slice/?${params}&mask=1`;
  }

  fileField.addEventListener("change", check);
  form.addEventListener("submit", start);
  axisField.addEventListener("change", setAxis);
  indexField.addEventListener("input", draw);
  opacity.addEventListener("input", () => { heat.style.opacity = opacity.value; });
  showHeat.addEventListener("change", () => {
    heat.hidden = !showHeat.checked || !(state.explanation?.heat_map_url || state.explanation?.mask_url);
  });
  heat.style.opacity = opacity.value;
  window.addEventListener("pagehide", () => { state.leaving = true; clearTimeout(state.timer); });

  const wanted = new URLSearchParams(window.location.search).get("explain");
  if (wanted) poll(wanted);
  return { show };
}
