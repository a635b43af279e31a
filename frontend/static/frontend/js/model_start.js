/* What a run's model starts from, and the size of the images it takes: fields of the run form (pages/run_new.js).

   "Start from" offers random weights, ImageNet (torchvision's file, when this server has it: GET /api/training/
   says so per architecture, and why not), MedicalNet (for the 3D ResNets that have it, likewise), an earlier run's kept model (GET /api/runs/starting-points/, the runs
   the user can read of this architecture) and an imported model (when the server has GET /api/imported-models/).
   The input size says what the network takes and, when the dataset's images do not fit, offers the size that does.
   The builders only draw: what the user picks goes back through `choose(path, value)`, the form's one way in. */
import { el } from "./dom.js";

const SOURCES = { random: "Random weights", imagenet: "ImageNet", medicalnet: "MedicalNet", run: "An earlier run", imported: "An imported model" };
/* Published weights: who publishes them (the label), and which networks have them (the reason when this one has not). */
const PUBLISHED = {
  imagenet: { publisher: "torchvision", networks: "the torchvision networks (ResNet, DenseNet, EfficientNet …) have." },
  medicalnet: { publisher: "Tencent", networks: "the 3D ResNets (ResNet-18 (3D), ResNet-50 (3D)) have." },
};

function errorSlot(path) {
  return el("span", { class: "error", "data-error-for": path, role: "alert" });
}

/* Why a source cannot be picked ("" when it can). */
function unavailable(source, architecture, runs, imported) {
  if (PUBLISHED[source]) {
    const file = architecture.weights_available?.[source];
    if (!file) return `${architecture.title} has no ${SOURCES[source]} weights; ${PUBLISHED[source].networks}`;
    return file.available ? "" : file.message;
  }
  if (source === "run") {
    if (runs === undefined) return `Looking for earlier runs of ${architecture.title} …`;
    return runs.length ? "" : `No run of ${architecture.title} that you can read has kept a model yet.`;
  }
  if (source === "imported") return imported && !imported.length ? "No model has been imported yet." : "";
  return "";
}

function runWords(run) {
  const accuracy = run.test_accuracy === null || run.test_accuracy === undefined ? "" : ` · test accuracy ${(run.test_accuracy * 100).toFixed(1)}%`;
  const epoch = run.kept_epoch ? ` · epoch ${run.kept_epoch}` : "";
  return `#${run.id} ${run.name} — ${run.project.name} · ${run.dataset.name} · ${run.classes.length} classes${accuracy}${epoch}`;
}

function importedWords(model) {
  const name = model.name || model.filename || `model ${model.id}`;
  const network = model.architecture_title || model.architecture;
  return `#${model.id} ${name}${network ? ` (${network})` : ""}`;
}

/* A select of things to start from; "Choose …" until one is picked. */
function pickList(path, items, value, words, choose, waiting) {
  const options = items === undefined ? [el("option", { value: "", text: waiting })]
    : [el("option", { value: "", text: "Choose …" }), ...items.map((item) => el("option", { value: String(item.id), text: words(item) }))];
  if (items !== undefined && value && !items.some((item) => item.id === value)) {
    // Chosen before (a cloned run's) but not listed now: shown as it is, for the launch to accept or explain.
    options.splice(1, 0, el("option", { value: String(value), text: `#${value} (not among the ones listed)` }));
  }
  const select = el("select", { name: path, "aria-label": path === "model.start_run" ? "Earlier run" : "Imported model" }, options);
  select.value = value === null || value === undefined ? "" : String(value);
  select.disabled = items === undefined;
  select.addEventListener("change", () => choose(path, select.value ? Number(select.value) : null));
  return select;
}

/* The "Start from" group. runs: the earlier runs of this architecture (undefined while they load); imported: the
   imported models, or null where the server has none to offer (the choice is then not shown). */
export function startFromField({ spec, architecture, runs, imported, choose }) {
  const model = spec.model;
  // A network converted from ONNX exists only as its import: it starts from that and nothing else.
  const converted = architecture.name === "imported";
  // MedicalNet's weights are offered only where the network has them (or a cloned run chose them, for the API to explain).
  const offered = (source) => (source === "imported" ? imported !== null
    : source !== "medicalnet" || Boolean(architecture.weights_available?.medicalnet) || model.weights === source);
  const sources = converted ? ["imported"] : Object.keys(SOURCES).filter(offered);
  const rows = sources.map((source) => {
    const reason = unavailable(source, architecture, runs, imported);
    const radio = el("input", { type: "radio", name: "model.weights", value: source });
    radio.checked = model.weights === source;
    radio.disabled = Boolean(reason) && !radio.checked; // a cloned run keeps its choice, for the API to explain
    radio.addEventListener("change", () => choose("model.weights", source));
    const file = PUBLISHED[source] && architecture.weights_available?.[source];
    const label = file ? `${SOURCES[source]} (${PUBLISHED[source].publisher}, ${file.filename})` : SOURCES[source];
    const row = [el("label", { class: "radio" }, [radio, ` ${label}`])];
    if (source === "run" && model.weights === "run") {
      row.push(pickList("model.start_run", runs, model.start_run, runWords, choose, "Looking for runs …"), errorSlot("model.start_run"));
    }
    if (source === "imported" && model.weights === "imported") {
      row.push(pickList("model.imported_model", imported, model.imported_model, importedWords, choose, "Loading …"),
        errorSlot("model.imported_model"));
    }
    if (reason) row.push(el("small", { class: "muted param-help unavailable", "data-unavailable": source, text: reason }));
    return el("div", { class: `start-source start-${source}` }, row);
  });
  return el("fieldset", { class: "group wide", id: "start-from" }, [
    el("legend", { text: "Start from" }),
    ...rows,
    el("small", { class: "muted param-help", id: "start-help", text: converted
      ? "A model converted from ONNX starts from its own weights (choose another model for random or ImageNet weights). "
        + "A new head is made when the classes differ."
      : "A model trained before (ImageNet's, or a run's on other images) learns from few "
        + "images faster than random weights. A new head is made when the classes differ; the first layer is adapted to the channels." }),
    errorSlot("model.weights"),
  ]);
}

/* What goes wrong with images of this size ([words, the size that fits]), or null. */
export function sizeProblem(architecture, height, width) {
  if (!height || !width) return null;
  const smallest = architecture.min_size;
  const largest = architecture.max_size;
  if (Math.min(height, width) < smallest) return [`${architecture.title} takes images of at least ${smallest}×${smallest} pixels`, smallest];
  if (largest && Math.max(height, width) > largest) return [`${architecture.title} is built for images of ${largest}×${largest} pixels at most`, largest];
  return null;
}

/* The input size, what the network accepts, and an offer to resize inside it when the dataset's images do not fit. */
export function inputSizeField({ param, spec, architecture, shape, choose }) {
  const input = el("input", { type: "number", name: "model.input_size", min: param.minimum, max: param.maximum, step: "1" });
  input.value = spec.model.input_size ?? 0;
  const own = shape && shape.height ? ` (${shape.width}×${shape.height} here)` : "";
  const help = el("small", { class: "muted param-help",
    text: `${architecture.title} takes ${architecture.accepted_sizes}. Images are resized to this size inside the network `
      + `(so in the exported model too); 0: the images' own size${own}.` });
  const offer = el("p", { class: "size-offer", id: "size-offer", hidden: "" });
  const label = el("label", { class: "param param-int input-size wide", title: param.help }, [
    el("span", { class: "param-label", text: "Input size " }), input, help, offer, errorSlot("model.input_size")]);
  const showOffer = () => {
    const size = input.value === "" ? 0 : Number(input.value);
    const problem = size ? null : sizeProblem(architecture, shape?.height, shape?.width);
    offer.hidden = !problem;
    if (!problem) return;
    const [words, fitting] = problem;
    const button = el("button", { type: "button", id: "resize-inside", text: `Resize to ${fitting} inside the network` });
    button.addEventListener("click", () => { input.value = fitting; choose("model.input_size", fitting); showOffer(); });
    offer.replaceChildren(`${words}; this dataset's are ${shape.width}×${shape.height}. `, button,
      " (or add a Resize step to the dataset's preprocessing)");
  };
  input.addEventListener("input", () => { choose("model.input_size", input.value === "" ? null : Number(input.value)); showOffer(); });
  showOffer();
  return label;
}

/* fastai's fine_tune (its defaults: base_lr 2e-3, freeze_epochs 1, lr_mult 100, pct_start 0.3, div 5): the head alone
   for an epoch at 2e-3, then everything at half that with the first block 100 times slower, each along one cycle. */
export const FINE_TUNE = {
  headEpochs: 1,
  headRate: 2e-3,
  rate: 1e-3,
  layerRateRatio: 100,
  schedule: { name: "one_cycle", rise_fraction: 0.3, start_factor: 0.2, warmup_epochs: 0 },
};

/* The preset's phases for a run of `epochs` epochs in all (at least two: one for the head, one for everything). */
export function fineTunePhases(epochs) {
  return [
    { epochs: FINE_TUNE.headEpochs, learning_rate: FINE_TUNE.headRate, train: "head" },
    { epochs: Math.max(1, epochs - FINE_TUNE.headEpochs), learning_rate: FINE_TUNE.rate, train: "all", layer_rate_ratio: FINE_TUNE.layerRateRatio },
  ];
}
