/* The "New training run" form, built from the training spec's schema (GET /api/training/).

   What the user sets (or the cloned run had) is sent; every other setting is left to the server, which
   fills in the chosen architecture's defaults and then the toolkit's: the very values the fields show,
   taken from the same schema. So the defaults live in one place (the engine), and a default that must
   give way (the batch size on a small partition, a warm-up longer than a short run) still can.
   The learning rate along the run is drawn beside the form by the trainer's own code
   (POST /api/runs/schedule/) as the settings change. ?from=<run id> starts from that run's spec
   (Clone); ?partition=<id> picks the partition (the template does). What the model starts from (random,
   ImageNet, an earlier run, an imported model) and its input size are js/model_start.js's fields.
   A partition of volumes, or of 2D images with real intensities (CT slices in HU, 16-bit radiographs), brings its
   dataset's plan (GET /api/datasets/{id}/plan/; plan.dims says which, 3 where an older plan does not say): its values
   are fields under Data (sent as data.plan once changed; the server merges them over the plan), the batch size starts
   from it, and the networks of its dims come first. 8-bit images have no plan. */
import { api } from "../api.js";
import { drawChart } from "../charts.js";
import { clearErrors, el, showErrors } from "../dom.js";
import { FINE_TUNE, fineTunePhases, inputSizeField, startFromField } from "../model_start.js";
import { paramField } from "../params.js";
import { mountRateFinder } from "../rate_finder.js";
import { mountSweepForm } from "../sweep_form.js";

const CURVE_DELAY_MS = 500;
/* Settings that change which fields there are: the form is drawn again when they change. */
const STRUCTURAL = new Set(["model.architecture", "model.weights", "optimizer.name", "loss.name", "schedule.name", "data.balancing", "metrics",
  "data.plan.normalisation"]);
/* Words for choices that do not read well as they are; the others are shown capitalised. */
const CHOICE_WORDS = {
  cpu: "CPU", gpu: "GPU", none: "None", weighted: "Weighted sampling", oversample: "Oversampling", factors: "Per-class factors",
  auto: "Auto",
  float32: "32-bit", mixed: "Mixed (16-bit)", all: "Whole network", head: "Head only (the rest frozen)",
};

/* The plan's normalisations in words: backend/datasets/planning.py NORMALISATION_WORDS word for word (a choice shows
   them capitalised); tests/browser/test_run_form_images_plan.py holds the two together. */
const NORMALISATION_WORDS = { ct: "CT: clip, then one z-score", dataset: "clip, then one z-score for the dataset",
  zscore: "z-score per sample", none: "as they are" };
/* The plan's values the form shows, and so the only ones it may send; clip, mean and std only where the normalisation
   clips and takes the dataset's one mean and std (CT's in Hounsfield units). */
const PLAN_KEYS = ["target_spacing", "normalisation", "clip", "mean", "std", "patch_size"];
const CT_ONLY = ["clip", "mean", "std"];
const CLIPPED = ["ct", "dataset"];
const AXES = ["slice", "row", "column"]; // a volume's axes, in the plan's order; an image's are the last two
/* The first try on volumes, as small_cnn is on images: it trains in seconds on a CPU. */
const FIRST_3D = "small_cnn_3d";

const form = document.getElementById("run-form");
const summary = document.getElementById("error-summary");
const partitionSelect = form.querySelector('select[name="partition"]');
const augmentationSelect = form.querySelector('select[name="data.augmentation"]');
const nameInput = form.querySelector('input[name="name"]');
const chart = document.getElementById("schedule-chart");
const note = document.getElementById("schedule-note");
const classesOf = JSON.parse(document.getElementById("partition-classes").textContent);
const shapesOf = JSON.parse(document.getElementById("partition-shapes").textContent);
const tasksOf = JSON.parse(document.getElementById("partition-tasks").textContent);

const byName = (entries) => Object.fromEntries(entries.map((entry) => [entry.name, entry]));
const schema = await api("GET", "/api/training/");
const registries = { optimizer: byName(schema.optimizers), loss: byName(schema.losses), schedule: byName(schema.schedules) };
const architectures = byName(schema.architectures);
/* The architecture "imported": a network converted from an imported ONNX file, offered once one can be trained. */
const converted = schema.converted_architecture;
const metrics = byName(schema.metrics);
const tasks = byName(schema.tasks);
const topLevel = byName(schema.top_level);
const sections = Object.fromEntries(Object.entries(schema.sections).map(([name, section]) => [name, byName(section.params)]));
const phaseParams = byName(schema.phase);

/* path ("optimizer.momentum"; "phases", "metrics" and "data.class_factors" whole) -> what the user set. */
const chosen = new Map();
let resources = null; // GET /api/resources/, once it answers
const startingPoints = new Map(); // architecture -> the runs a run of it can start from (undefined while they load)
let importedModels = null; // the imported models, once the server (if it has them) answers; null: not offered
let weightsChosen = false; // whether the user (or the run cloned) chose where the weights start from
let curveTimer = null;
let latestCurve = 0;
/* Plans by dataset id ({} for a dataset of 8-bit 2D images), and the dataset the data.plan values chosen were typed for. */
const plans = { byDataset: new Map(), typedFor: null };

/* ---- the spec as the form holds it ---- */

function parentOf(object, path, create = false) {
  const keys = path.split(".");
  let node = object;
  for (const key of keys.slice(0, -1)) {
    if (create && !(key in node)) node[key] = {};
    node = node[key];
    if (node === null || typeof node !== "object") return [null, null];
  }
  return [node, keys[keys.length - 1]];
}

function hasPath(object, path) {
  const [node, key] = parentOf(object, path);
  return node !== null && key in node;
}

function getPath(object, path) {
  const [node, key] = parentOf(object, path);
  return node === null ? undefined : node[key];
}

function setPath(object, path, value) {
  const [node, key] = parentOf(object, path, true);
  node[key] = value;
}

/* A spec's settings, one path each; lists and the class factors are one setting each. */
function settingsOf(spec, prefix = "") {
  return Object.entries(spec).flatMap(([key, value]) => {
    const path = prefix + key;
    const group = value !== null && typeof value === "object" && !Array.isArray(value) && path !== "data.class_factors";
    return group ? settingsOf(value, `${path}.`) : [[path, value]];
  });
}

const defaultsOf = (params) => Object.fromEntries(params.map((param) => [param.name, param.default]));

/* The architecture's resolved defaults; an optimizer (loss, schedule) other than its own brings its own
   parameters' defaults, as the server does. */
function defaults() {
  const name = chosen.get("model.architecture");
  const architecture = architectures[name] || (name === converted.name ? converted : architectures[sections.model.architecture.default]);
  const spec = structuredClone(architecture.defaults);
  for (const [key, registry] of Object.entries(registries)) {
    const name = chosen.get(`${key}.name`);
    if (registry[name] && name !== spec[key].name) spec[key] = { name, ...defaultsOf(registry[name].params) };
  }
  return spec;
}

function partitionClasses() {
  return classesOf[partitionSelect.value] || [];
}

function datasetId() {
  return partitionSelect.selectedOptions[0]?.dataset.dataset ?? null;
}

/* The chosen partition's plan when its dataset has one (volumes, 2D images with real intensities); null for 8-bit
   images (or while the plan loads). */
function planOf() {
  const plan = plans.byDataset.get(datasetId());
  return plan && Object.keys(plan).length ? plan : null;
}

/* A plan's dims: 2 for images with real intensities, 3 for volumes (a plan stored before plans said so). */
const planDims = (plan) => plan.dims ?? 3;
/* Whether the chosen partition holds volumes (3) or 2D images (2), as the network must. */
const dataDims = () => { const plan = planOf(); return plan ? planDims(plan) : 2; };
const dimsOf = (name) => architectures[name]?.dims ?? 2; // a converted import takes 2D images
/* What the chosen partition's dataset is for: segmentation when it holds masks (its dataset says), else classification. */
const dataTask = () => tasksOf[partitionSelect.value] ?? "classification";
const taskOf = (name) => architectures[name]?.task ?? "classification"; // a converted import classifies
/* The network a first run of a task starts from on 2D images or volumes: the task's own, else the toolkit's first tries. */
function firstNetwork(task, dims) {
  const own = tasks[task]?.architectures?.[String(dims)];
  if (own && architectures[own]) return own;
  if (dims === 2) return sections.model.architecture.default;
  return architectures[FIRST_3D] ? FIRST_3D : Object.values(architectures).find((entry) => entry.dims === 3 && entry.task === task)?.name;
}

/* Asked once per dataset; a plan that cannot be read leaves the form as for 8-bit 2D images (the launch would say why). */
async function loadPlan() {
  const id = datasetId();
  if (!id || plans.byDataset.has(id)) return;
  try {
    plans.byDataset.set(id, (await api("GET", `/api/datasets/${id}/plan/`)).plan ?? {});
  } catch {
    // left unknown, to be asked again when the partition is chosen again
  }
}

/* Another partition: its dataset's plan (asked first), the plan values typed for another dataset forgotten (a patch
   that fitted those volumes may not fit these), and a network of the other kind replaced by the first try of the
   right kind. A network the user then chooses stays, and the server says beside it why it does not fit. */
async function followPartition() {
  await loadPlan();
  if (datasetId() !== plans.typedFor) {
    if (plans.typedFor !== null) for (const path of [...chosen.keys()]) if (path.startsWith("data.plan.")) chosen.delete(path);
    plans.typedFor = datasetId();
  }
  const was = current().model;
  const dims = dataDims();
  const task = dataTask();
  if (dimsOf(was.architecture) !== dims || taskOf(was.architecture) !== task) {
    const name = firstNetwork(task, dims);
    if (name) {
      chosen.set("model.architecture", name);
      chosen.delete("model.start_run");
      followArchitecture(was, name);
    }
  }
}

/* The spec the fields show: the defaults with what the user chose where it still applies (a momentum
   set for SGD is left out once the optimizer is Adam); the epochs of a run in phases are their sum. */
function current() {
  const spec = defaults();
  const plan = planOf();
  if (plan) {
    // The plan's values where the fields show them; CT's values are there (empty) for a plan that did not choose CT.
    spec.data.plan = Object.fromEntries(PLAN_KEYS.map((key) => [key, plan[key] ?? (key === "clip" ? [null, null] : null)]));
    if (plan.batch_size) spec.batch_size = plan.batch_size; // as the server does when the user sets none
  }
  for (const [path, value] of chosen) if (hasPath(spec, path)) setPath(spec, path, value);
  if (plan && !CLIPPED.includes(spec.data.plan.normalisation)) for (const key of CT_ONLY) delete spec.data.plan[key];
  if (spec.phases.length) spec.epochs = spec.phases.reduce((sum, phase) => sum + (Number(phase.epochs) || 0), 0);
  // The model to start from is named only when the source is an earlier run or an imported model (as the server has it).
  delete spec.model.start_run;
  delete spec.model.imported_model;
  if (spec.model.weights === "run") spec.model.start_run = chosen.get("model.start_run") ?? null;
  if (spec.model.weights === "imported") spec.model.imported_model = chosen.get("model.imported_model") ?? null;
  const factors = spec.data.class_factors;
  spec.data.class_factors = spec.data.balancing === "factors"
    ? Object.fromEntries(partitionClasses().map((label) => [label, factors[label] ?? 1])) : {};
  return spec;
}

/* What launching sends (and the curve and the rate finder): the partition, the name and the settings
   chosen; the server fills in the rest. */
function requestBody() {
  const spec = current();
  const body = { partition: partitionSelect.value ? Number(partitionSelect.value) : null, name: nameInput.value.trim() };
  for (const path of chosen.keys()) if (hasPath(spec, path)) setPath(body, path, getPath(spec, path));
  if (spec.phases.length) delete body.epochs; // the phases' sum
  if (spec.data.balancing === "factors") setPath(body, "data.class_factors", spec.data.class_factors);
  return body;
}

function choose(path, value) {
  const was = current().model;
  chosen.set(path, value);
  if (path === "model.weights") weightsChosen = true;
  if (path === "model.architecture") {
    chosen.delete("model.start_run"); // another architecture's runs
    followArchitecture(was, value);
  }
  if (path === "model.weights" && value === "run" && !chosen.get("model.start_run")) {
    const runs = startingPoints.get(current().model.architecture);
    if (runs?.length) chosen.set("model.start_run", runs[0].id); // the newest; the select shows which
  }
  // An imported model trains as the network it is (a zoo network's weights, or converted): the model follows it.
  const imported = path === "model.imported_model" ? importedModels?.find((model) => model.id === value) : null;
  const network = imported?.mode === "converted" ? converted.name : imported?.architecture;
  if (network && (architectures[network] || network === converted.name)) chosen.set("model.architecture", network);
  if (STRUCTURAL.has(path) || network) render(); else showEpochs();
  scheduleCurve();
}

/* The imported models a run can start from as converted networks (not zoo networks). */
function convertedImports() {
  return (importedModels ?? []).filter((model) => model.trainable && model.mode === "converted");
}

/* What the weights start from when the network changes. A converted network starts from its import and only from
   it; leaving it for a zoo network leaves its import too. Until the user picks a source, a network whose ImageNet
   weights are on this server starts from them: on few images they were worth 24 to 47 points of accuracy over
   random weights (docs/models.md, the evidence), so a first run with the defaults should have them. */
function followArchitecture(was, name) {
  // Another task's loss and metrics do not serve this one: back to the task's defaults.
  if (taskOf(was.architecture) !== taskOf(name)) for (const path of ["loss.name", "metrics", "monitor"]) chosen.delete(path);
  const chosenImport = importedModels?.find((model) => model.id === chosen.get("model.imported_model"));
  if (name === converted.name) {
    chosen.set("model.weights", "imported");
    if (chosenImport?.mode !== "converted" && convertedImports().length) chosen.set("model.imported_model", convertedImports()[0].id);
  } else if (was.architecture === converted.name && was.weights === "imported") {
    chosen.set("model.weights", "random");
    chosen.delete("model.imported_model");
  } else if (!weightsChosen) {
    if (architectures[name]?.weights_available?.imagenet?.available) chosen.set("model.weights", "imagenet");
    else chosen.delete("model.weights");
  }
}

/* The architecture the fields describe: a zoo network's entry, or one for the chosen converted import (the size it
   was exported at is the size it takes; images of another size are resized inside the network). */
function architectureOf(spec) {
  if (spec.model.architecture !== converted.name) return architectures[spec.model.architecture];
  const model = importedModels?.find((candidate) => candidate.id === spec.model.imported_model);
  const side = model?.input_size || 0;
  return { ...converted, title: model ? `${model.name} (imported)` : converted.title, weights_available: {},
    min_size: side || 1, max_size: side || null,
    accepted_sizes: side ? `${side}×${side} images (the size it was exported at)` : "images of any size" };
}

/* ---- fields ---- */

const capitalised = (text) => { const words = String(text).replaceAll("_", " "); return words.charAt(0).toUpperCase() + words.slice(1); };
const choiceWords = (choice) => CHOICE_WORDS[choice] ?? capitalised(choice);
/* A choice of one is no choice (the task): not shown, and sent only by a clone. */
const shown = (params) => Object.values(params).filter((param) => !(param.kind === "choice" && param.choices.length < 2));

/* The field of one setting, named by its path in the spec (the API names its errors so). */
function field(path, param, spec, options = {}) {
  return paramField(path, param, getPath(spec, path), (value) => choose(path, value), { describe: choiceWords, ...options });
}

function group(title, children, wide = false) {
  return el("fieldset", { class: wide ? "group wide" : "group" }, [el("legend", { text: title }), ...children]);
}

function errorSlot(path) {
  return el("span", { class: "error", "data-error-for": path, role: "alert" });
}

/* An optimizer (loss, schedule) chosen by name, what it is, then its own parameters. */
function chooserFields(key, label, spec, except = []) {
  const registry = registries[key];
  const entry = registry[spec[key].name] || { help: "", params: [] };
  // Of the losses, those serving the run's task (a loss says which it serves); optimizers and schedules serve any.
  const serves = (name) => !registry[name].tasks || registry[name].tasks.includes(spec.task) || name === spec[key].name;
  const chooser = { name: "name", label, kind: "choice", choices: Object.keys(registry).filter(serves), help: entry.help };
  return [
    field(`${key}.name`, chooser, spec, { describe: (name) => registry[name].title }),
    ...entry.params.filter((param) => !except.includes(param.name)).map((param) => field(`${key}.${param.name}`, param, spec)),
  ];
}

function sectionFields(name, spec, except = []) {
  return shown(sections[name]).filter((param) => !except.includes(param.name)).map((param) => field(`${name}.${param.name}`, param, spec));
}

function dataFields(spec) {
  const fields = sectionFields("data", spec);
  if (spec.data.balancing === "factors") fields.push(classFactors(spec));
  if (spec.data.plan) fields.push(planGroup(spec, planOf()));
  return fields;
}

/* The plan's values as fields, each with the reason it was chosen under it: a volume's three axes, an image's two. */
function planGroup(spec, plan) {
  const values = spec.data.plan;
  const reasons = plan.reasons ?? {};
  const volumes = planDims(plan) === 3;
  const axes = AXES.slice(-planDims(plan));
  const [thing, units] = volumes ? ["volume", "voxels"] : ["image", "pixels"];
  const shape = (sides) => (sides ?? []).join("×");
  const holds = volumes
    ? "This dataset holds volumes: they are resampled, normalised and cut into patches"
    : "This dataset holds 2D images with real intensities (more than 8 bits, such as CT slices in Hounsfield units): "
      + "they are resampled, normalised and read whole or in patches";
  const intro = `${holds} as planned from its fingerprint (nnU-Net's rules). At the target spacing the median ${thing} is `
    + `${shape(plan.median_shape)} ${units} and the smallest ${shape(plan.smallest_shape)}; a patch must fit the smallest. `
    + "Change any value; the others stay as planned.";
  const normalisation = { name: "normalisation", label: "Normalisation", kind: "choice", choices: Object.keys(NORMALISATION_WORDS),
    help: reasons.normalisation ?? "" };
  const fields = [
    axesField("target_spacing", "Target spacing (mm)", "float", values.target_spacing, reasons.target_spacing, axes),
    field("data.plan.normalisation", normalisation, spec, { describe: (choice) => capitalised(NORMALISATION_WORDS[choice] ?? choice) }),
  ];
  if (CLIPPED.includes(values.normalisation)) {
    const [hu, what] = values.normalisation === "ct" ? [" (HU)", "Hounsfield units"] : ["", "Values"];
    fields.push(
      field("data.plan.clip", { name: "clip", label: `Clip${hu}`, kind: "range",
        help: `${what} below the low value become it, and above the high one, the high one.` }, spec),
      field("data.plan.mean", { name: "mean", label: `Mean${hu}`, kind: "float", help: `The dataset's mean after clipping: one z-score for every ${thing}.` }, spec),
      field("data.plan.std", { name: "std", label: `Standard deviation${hu}`, kind: "float", above: 0, help: "The dataset's, after clipping." }, spec),
    );
  }
  fields.push(axesField("patch_size", `Patch size (${units})`, "int", values.patch_size, reasons.patch_size, axes));
  const legend = volumes ? "Plan for volumes" : "Plan for images with real intensities";
  return el("fieldset", { class: "group wide plan", id: "plan", "data-dims": String(planDims(plan)) }, [el("legend", { text: legend }),
    el("p", { class: "hint", text: intro }), el("div", { class: "plan-fields" }, fields), errorSlot("data.plan")]);
}

/* One number per axis (a volume's slice, row, column; an image's row, column), set as one value: data.plan.<key>,
   where its refusal shows. */
function axesField(key, label, kind, values, help, axes) {
  const path = `data.plan.${key}`;
  const inputs = axes.map((axis, index) => {
    const input = el("input", { type: "number", name: `${path}.${index}`, step: kind === "int" ? "1" : "any",
      min: kind === "int" ? "1" : "0", "aria-label": `${label}: ${axis}`, title: axis });
    input.value = values?.[index] ?? "";
    input.addEventListener("input", () => {
      const sides = [...current().data.plan[key]];
      sides[index] = input.value === "" ? null : Number(input.value);
      choose(path, sides);
    });
    return input;
  });
  return el("label", { class: "param plan-axes" }, [el("span", { class: "param-label", text: `${label} ` }),
    el("span", { class: "axes" }, inputs), el("small", { class: "muted axes-names", text: axes.join(" · ") }),
    el("small", { class: "muted param-help", text: help ?? "" }), errorSlot(path)]);
}

function classFactors(spec) {
  const factors = spec.data.class_factors;
  const update = (label) => (value) => choose("data.class_factors", { ...current().data.class_factors, [label]: value });
  const inputs = Object.entries(factors).map(([label, times]) =>
    paramField(`data.class_factors.${label}`, { name: label, label, kind: "int", minimum: 1, maximum: 20, help: "" }, times, update(label)));
  return group("Times each image of a class is used per epoch", [
    inputs.length ? el("div", { class: "class-factors" }, inputs) : el("p", { class: "muted", text: "Choose a partition first." }),
    errorSlot("data.class_factors")], true);
}

function modelFields(spec) {
  const architecture = architectureOf(spec);
  const rate = registries.optimizer[spec.optimizer.name]?.params.find((param) => param.name === "learning_rate");
  return [modelChoice(spec), epochsField(spec), ...(rate ? [field("optimizer.learning_rate", rate, spec)] : []),
    startFrom(spec),
    // A 3D network takes the plan's patches as they are: the input size (resizing 2D images inside it) is not for it. A 2D
    // network keeps it on a plan of images too (one of a fixed size, LeNet-5, needs it to take the plan's patches).
    ...(architecture?.dims === 3 || architecture?.task === "segmentation" ? []
      : [inputSizeField({ param: sections.model.input_size, spec, architecture, shape: shapesOf[partitionSelect.value], choose })]),
    fineTuneButton(spec),
    deviceField(spec)];
}

function modelChoice(spec) {
  const isConverted = spec.model.architecture === converted.name;
  // The networks of the data's task (a clone of another task's run keeps its own, which the server then refuses with why).
  const ofTask = sections.model.architecture.choices.filter((name) => taskOf(name) === dataTask() || name === spec.model.architecture);
  const converts = dataTask() === "classification" && (isConverted || convertedImports().length);
  const choices = [...ofTask, ...(converts ? [converted.name] : [])];
  const model = field("model.architecture", { ...sections.model.architecture, choices, label: "Model", help: architectureOf(spec).description },
    spec, { describe: (name) => (architectures[name] ?? converted).title });
  groupByDims(model.querySelector("select"), spec.model.architecture);
  model.classList.add("wide");
  model.id = "model-choice";
  return model;
}

/* The networks that take the chosen partition's data first, the others after under their own heading: still there to
   choose (a run cloned from the other kind keeps what it had), and the server says beside the field why they do not fit. */
function groupByDims(select, value) {
  const volumes = dataDims() === 3;
  const fitting = el("optgroup", { label: volumes ? "For volumes (3D)" : "For 2D images" });
  const others = el("optgroup", { label: volumes ? "For 2D images (this dataset holds volumes)" : "For volumes (3D; this dataset holds 2D images)" });
  const fits = (name) => dimsOf(name) === dataDims() && taskOf(name) === dataTask();
  for (const option of [...select.options]) (fits(option.value) ? fitting : others).append(option);
  select.replaceChildren(...[fitting, others].filter((group) => group.children.length));
  select.value = value;
}

function startFrom(spec) {
  const runs = spec.model.architecture === converted.name ? [] : runsOf(spec.model.architecture);
  return startFromField({ spec, architecture: architectureOf(spec), runs, imported: importedModels, choose });
}

/* What an answer arriving later changes (the earlier runs, the imported models): only the fields that show it, so
   a field being typed in meanwhile is not drawn again under the user's fingers (its selection would be lost). */
function redrawStartFrom() {
  const spec = current();
  if (spec.model.architecture === converted.name) {
    render(); // its title and sizes come with the import
    return;
  }
  document.getElementById("model-choice")?.replaceWith(modelChoice(spec));
  document.getElementById("start-from")?.replaceWith(startFrom(spec));
}

/* The runs a run of this architecture can start from: asked once per architecture, "Start from" drawn again when they come. */
function runsOf(name) {
  if (!startingPoints.has(name)) {
    startingPoints.set(name, undefined);
    api("GET", `/api/runs/starting-points/?architecture=${encodeURIComponent(name)}`)
      .catch(() => []) // the choice says none were found; the launch would say more
      .then((runs) => {
        startingPoints.set(name, runs);
        if (current().model.architecture === name) redrawStartFrom();
      });
  }
  return startingPoints.get(name);
}

/* The imported models, where the server offers them (GET /api/training/ names the address); the choice is hidden otherwise. */
function loadImportedModels() {
  if (!schema.imported_models) return;
  api("GET", schema.imported_models).then((answer) => {
    importedModels = Array.isArray(answer) ? answer : (answer?.results ?? []);
    redrawStartFrom();
  }).catch(() => {});
}

/* fastai's fine_tune in one click: ImageNet weights where this server has them, the head alone first, then everything
   with discriminative rates, along one cycle each (js/model_start.js FINE_TUNE). */
function fineTuneButton(spec) {
  const button = el("button", { type: "button", id: "fine-tune", text: "Fine-tune (fastai)" });
  button.addEventListener("click", fineTune);
  const imagenet = architectureOf(spec).weights_available?.imagenet;
  const start = imagenet?.available ? "ImageNet weights, " : "";
  return el("div", { class: "preset wide" }, [button, el("small", { class: "muted param-help", id: "fine-tune-help",
    text: `Sets ${start}the head alone for ${FINE_TUNE.headEpochs} epoch at ${FINE_TUNE.headRate}, then the whole network at `
      + `${FINE_TUNE.rate} with its first block ${FINE_TUNE.layerRateRatio}× slower, one cycle each (Advanced settings, Phases).` })]);
}

function fineTune() {
  const spec = current();
  if (architectureOf(spec).weights_available?.imagenet?.available) {
    chosen.set("model.weights", "imagenet");
    weightsChosen = true;
  }
  chosen.set("phases", fineTunePhases(spec.epochs));
  for (const [key, value] of Object.entries(FINE_TUNE.schedule)) chosen.set(`schedule.${key}`, value);
  render();
  scheduleCurve();
}

function epochsField(spec) {
  const epochs = field("epochs", topLevel.epochs, spec);
  if (spec.phases.length) {
    epochs.querySelector("input").disabled = true;
    epochs.querySelector(".param-help").textContent = "The phases' epochs added up (Advanced settings, Phases).";
  }
  return epochs;
}

/* The epochs of a run in phases follow them as they are typed. */
function showEpochs() {
  const spec = current();
  if (spec.phases.length) form.querySelector('input[name="epochs"]').value = spec.epochs;
}

function deviceField(spec) {
  const radios = sections.resources.device.choices.map((choice) => {
    const radio = el("input", { type: "radio", name: "resources.device", value: choice });
    radio.checked = spec.resources.device === choice;
    radio.addEventListener("change", () => choose("resources.device", choice));
    return el("label", { class: "radio" }, [radio, ` ${choiceWords(choice)}`]);
  });
  return group("Train on", [...radios, el("small", { class: "muted param-help", id: "resources-hint", text: "Checking which workers are online…" }),
    errorSlot("resources.device")], true);
}

function showResources() {
  if (!resources) return;
  const gpus = resources.workers.reduce((sum, worker) => sum + worker.gpu_count, 0);
  const gpu = form.querySelector('input[name="resources.device"][value="gpu"]');
  gpu.disabled = !resources.gpu_available && !gpu.checked; // a cloned GPU run keeps its choice, for the API to explain
  document.getElementById("resources-hint").textContent = resources.gpu_available
    ? `${gpus} GPU(s) online.`
    : (resources.cpu_available ? "No GPU worker is online; the run will use a CPU worker."
      : "No worker is online right now; the run will wait in the queue until one starts.");
}

function phaseEditor(spec) {
  const phases = spec.phases;
  const add = el("button", { type: "button", id: "add-phase", text: phases.length ? "Add a phase" : "Train in phases" });
  add.addEventListener("click", () => {
    chosen.set("phases", phases.length ? [...phases, newPhase("all")] : firstPhases(spec.epochs));
    render();
    scheduleCurve();
  });
  return [
    el("small", { class: "muted param-help", text: phases.length
      ? "Each phase starts the schedule again, warm-up included; the run's epochs are their sum."
      : "One phase: the whole network trains for all the epochs. Phases can train only the model's head first, then all of it." }),
    el("ol", { class: "phases" }, phases.map(phaseItem)),
    errorSlot("phases"),
    add,
    field("model.train_frozen_batchnorm", { ...sections.model.train_frozen_batchnorm, label: "Keep BatchNorm learning in frozen blocks" }, spec),
  ];
}

function newPhase(train, epochs = phaseParams.epochs.default) {
  return { epochs, learning_rate: null, train };
}

/* The usual first split: the head alone for a few epochs, then the whole network, the same epochs in all. */
function firstPhases(epochs) {
  const head = Math.max(1, Math.min(phaseParams.epochs.default, Math.floor(epochs / 4)));
  return epochs > head ? [newPhase("head", head), newPhase("all", epochs - head)] : [newPhase("all", epochs)];
}

function phaseItem(phase, index) {
  const path = (key) => `phases.${index}.${key}`;
  const update = (key) => (value) => {
    const phases = structuredClone(current().phases);
    phases[index][key] = value;
    choose("phases", phases);
  };
  const rate = paramField(path("learning_rate"), phaseParams.learning_rate, phase.learning_rate, update("learning_rate"), { help: false });
  rate.querySelector("input").placeholder = "the optimizer's";
  const remove = el("button", { type: "button", class: "remove-phase", "aria-label": `Remove phase ${index + 1}`, title: "Remove", text: "✕" });
  remove.addEventListener("click", () => {
    chosen.set("phases", current().phases.filter((_, other) => other !== index));
    render();
    scheduleCurve();
  });
  const frozen = paramField(path("frozen_blocks"), phaseParams.frozen_blocks, phase.frozen_blocks ?? phaseParams.frozen_blocks.default,
    update("frozen_blocks"), { help: false });
  frozen.querySelector("input").disabled = phase.train === "head"; // all but the head is frozen anyway
  return el("li", { class: "phase" }, [
    paramField(path("epochs"), phaseParams.epochs, phase.epochs, update("epochs"), { help: false }),
    rate,
    paramField(path("train"), phaseParams.train, phase.train, (value) => { update("train")(value); render(); },
      { describe: choiceWords, help: false }),
    frozen,
    paramField(path("layer_rate_ratio"), phaseParams.layer_rate_ratio, phase.layer_rate_ratio ?? phaseParams.layer_rate_ratio.default,
      update("layer_rate_ratio"), { help: false }),
    remove,
  ]);
}

function monitorChoices(names) {
  const single = names.filter((name) => !metrics[name].per_class); // a value per class is charted, never monitored
  return ["validation.loss", "train.loss", ...single.map((name) => `validation.${name}`),
    ...single.filter((name) => !metrics[name].needs_scores).map((name) => `train.${name}`)];
}

function monitorWords(choice) {
  const [subset, name] = choice.split(".");
  return `${name === "loss" ? "Loss" : metrics[name].title} (${subset})`;
}

function metricFields(spec) {
  const boxes = Object.values(metrics).filter((metric) => metric.tasks.includes(spec.task)).map((metric) => {
    const box = el("input", { type: "checkbox", name: "metrics", value: metric.name });
    box.checked = spec.metrics.includes(metric.name);
    box.addEventListener("change", () => {
      const names = Object.keys(metrics).filter((name) => (name === metric.name ? box.checked : spec.metrics.includes(name)));
      if (!monitorChoices(names).includes(spec.monitor)) chosen.delete("monitor"); // back to the default
      choose("metrics", names);
    });
    return el("label", { class: "param param-bool", title: metric.help }, [box, el("span", { class: "param-label", text: metric.title }),
      el("small", { class: "muted param-help", text: metric.help })]);
  });
  const monitor = { name: "monitor", label: "Monitored metric", kind: "choice", choices: monitorChoices(spec.metrics),
    help: "Picks the epoch whose model is kept; early stopping and reduce-on-plateau watch it too." };
  return [...boxes, errorSlot("metrics"), field("monitor", monitor, spec, { describe: monitorWords })];
}

function advancedFields(spec) {
  const plan = planOf();
  // A plan's batch size is where the field starts (current()); its reason is the help.
  const planned = (param) => (param.name === "batch_size" && plan?.reasons?.batch_size
    ? { ...param, help: `${planDims(plan) === 3 ? "Volumes" : "Images"} per training step (per process); the plan's: ${plan.reasons.batch_size}.` }
    : param);
  // The task follows the data (a dataset of masks is segmented) and the network: not a setting of its own here.
  const training = shown(topLevel).filter((param) => !["epochs", "task"].includes(param.name)).map((param) => field(param.name, planned(param), spec));
  return [
    group("Optimizer", chooserFields("optimizer", "Optimizer", spec, ["learning_rate"])),
    group("Learning-rate schedule", chooserFields("schedule", "Schedule", spec)),
    group("Phases", phaseEditor(spec), true),
    group("Loss", chooserFields("loss", "Loss", spec)),
    group("Metrics", metricFields(spec)),
    ...(spec.task === "segmentation" ? [group("Prediction", sectionFields("inference", spec))] : []),
    group("Early stopping", sectionFields("early_stopping", spec)),
    group("Training steps", training),
    group("Checkpoints", sectionFields("checkpoints", spec)),
    group("Resources", sectionFields("resources", spec, ["device"])),
  ];
}

/* Draws every field from the current spec, keeping the focus where it was. */
function render() {
  const focused = document.activeElement?.name;
  const spec = current();
  document.getElementById("data-fields").replaceChildren(...dataFields(spec));
  document.getElementById("model-fields").replaceChildren(...modelFields(spec));
  document.getElementById("advanced-fields").replaceChildren(...advancedFields(spec));
  augmentationSelect.value = spec.data.augmentation ?? "";
  showResources();
  if (focused) form.querySelector(`[name="${focused}"]`)?.focus();
}

/* ---- the learning-rate curve ---- */

/* Editing redraws once the typing pauses, not at every key. */
function scheduleCurve() {
  clearTimeout(curveTimer);
  curveTimer = setTimeout(drawCurve, CURVE_DELAY_MS);
}

async function drawCurve() {
  if (!partitionSelect.value) return;
  const request = ++latestCurve;
  const spec = current();
  try {
    const curve = await api("POST", "/api/runs/schedule/", requestBody());
    if (request !== latestCurve) return; // the settings changed while this one was drawn
    clearErrors(form, summary);
    plotCurve(curve, spec);
  } catch (error) {
    if (request !== latestCurve) return;
    // Quietly: the user may be half-way through typing. Once a launch was refused, its list follows the fixes.
    showRefusal(error, { quiet: true, summary: summary.hidden ? null : summary });
  }
}

/* The settings were refused: each refusal beside its field, and the curve drawn for older settings dimmed. */
function showRefusal(error, options) {
  showErrors(form, error, options);
  chart.classList.add("stale");
  note.textContent = "The curve follows once the settings marked in the form are fixed.";
}

function phaseMarks(spec) {
  const shapes = [];
  const annotations = [];
  let start = 0;
  spec.phases.forEach((phase, index) => {
    if (index) shapes.push({ type: "line", x0: start, x1: start, yref: "paper", y0: 0, y1: 1, line: { dash: "dot", color: "#64748b", width: 1 } });
    annotations.push({ x: start + phase.epochs / 2, y: 1, yref: "paper", yanchor: "bottom", showarrow: false,
      text: `Phase ${index + 1}: ${phase.train === "head" ? "head only" : "all"}`, font: { size: 11, color: "#475569" } });
    start += phase.epochs;
  });
  return { shapes, annotations };
}

function plotCurve(curve, spec) {
  chart.classList.remove("stale");
  drawChart(chart, [{
    x: curve.epochs, y: curve.learning_rates, mode: "lines", line: { color: "#2563eb", width: 2 },
    hovertemplate: "epoch %{x:.2f}<br>rate %{y:.3g}<extra></extra>",
  }], {
    height: 260, margin: { t: 24, r: 12, b: 42, l: 62 }, showlegend: false, ...phaseMarks(spec),
    xaxis: { title: { text: "epoch" }, range: [0, spec.epochs], zeroline: false },
    yaxis: { title: { text: "learning rate" }, rangemode: "tozero", exponentformat: "e" },
  });
  note.textContent = describeCurve(curve, spec);
}

function describeCurve(curve, spec) {
  const schedule = spec.schedule;
  const warmup = schedule.warmup_epochs ? `, ${schedule.warmup_epochs} warm-up epoch${schedule.warmup_epochs > 1 ? "s" : ""}` : "";
  const parts = [`${registries.schedule[schedule.name].title}${warmup}: ${spec.epochs} epochs of ${curve.steps_per_epoch} step${curve.steps_per_epoch > 1 ? "s" : ""}.`];
  if (spec.phases.length) parts.push("Each phase starts the schedule again.");
  if (curve.depends_on_metric) {
    parts.push(`The rate is multiplied by ${schedule.reduction} whenever the ${monitorWords(spec.monitor).toLowerCase()} has not improved for `
      + `${schedule.patience} epochs; when that happens depends on the run, so the curve shows the rate before any cut.`);
  }
  return parts.join(" ");
}

/* ---- starting points, launch, and the learning-rate finder ---- */

/* Clone: the form starts from a run's resolved spec and partition, every setting as that run had it. */
async function startFromRun(id) {
  const intro = document.getElementById("run-intro");
  try {
    const run = await api("GET", `/api/runs/${id}/`);
    for (const [path, value] of settingsOf(run.spec)) chosen.set(path, value);
    weightsChosen = true; // as the run had them
    nameInput.value = `Copy of ${run.name}`;
    const here = String(run.partition) in classesOf;
    if (here) partitionSelect.value = run.partition;
    intro.replaceChildren(`The settings of `, el("a", { href: `/runs/${run.id}/`, text: run.name }),
      here ? ": change any of them before launching." : "; its partition is not in this project, so choose one.");
  } catch (error) {
    intro.textContent = `The run to copy could not be read (${error.message}); the form starts from the defaults.`;
  }
}

/* The sweep trained what the first phase trains: a run in phases takes the rate for its first phase, and the later
   phases keep their ratio to it (fastai's fine_tune: the unfrozen phase at half the frozen one's rate). */
function acceptRate(rate) {
  const phases = current().phases;
  if (!phases.length) {
    chosen.set("optimizer.learning_rate", rate);
    return;
  }
  const factor = rate / phases[0].learning_rate;
  chosen.set("phases", phases.map((phase) => ({ ...phase, learning_rate: Number((phase.learning_rate * factor).toPrecision(2)) })));
  return phases.length > 1 ? `The first phase's learning rate is now ${rate}; the later phases keep their ratio to it (Advanced settings, Phases).`
    : `The phase's learning rate is now ${rate}.`;
}

/* The learning-rate finder (its own module, js/rate_finder.js) searches with the form's settings. */
function mountFinder() {
  mountRateFinder(document.getElementById("rate-finder"), {
    settings: requestBody,
    accept: (rate) => {
      const words = acceptRate(rate);
      render();
      drawCurve();
      return words;
    },
  });
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  clearTimeout(curveTimer);
  latestCurve += 1; // a curve still on its way must not replace what the launch answers
  const launch = document.getElementById("launch");
  launch.disabled = true;
  try {
    const repeat = sweepLaunch() ?? repeatRequest();
    if (repeat) {
      const group = await api("POST", "/api/groups/", repeat);
      window.location = `/groups/${group.id}/`;
    } else {
      const run = await api("POST", "/api/runs/", requestBody());
      window.location = `/runs/${run.id}/`;
    }
  } catch (error) {
    // A group's refusals name the spec's fields "spec.<path>": the form's inputs are named by the path alone.
    for (const item of error.errors ?? []) if (item.field?.startsWith("spec.")) item.field = item.field.slice(5);
    showRefusal(error, { summary });
    summary.focus();
    launch.disabled = false;
  }
});
/* ---- a sweep: the spec with other values of up to four settings (POST /api/groups/ with a search) ---- */

const searchRequest = mountSweepForm(document.getElementById("sweep-card"));

function sweepLaunch() {
  const search = searchRequest();
  if (!search) return null;
  const { partition, name, ...spec } = requestBody();
  return { partition, name, spec, search };
}
document.getElementById("sweep-on").addEventListener("change", () => {
  document.getElementById("repeat-card").hidden = document.getElementById("sweep-on").checked; // a sweep has one seed per trial
  showFoldsChoice();
});

/* ---- repeats: one spec as a group of runs (POST /api/groups/), over seeds and the partition's folds ---- */

const seedsInput = form.querySelector('input[name="seeds"]');
const foldsBox = form.querySelector('input[name="folds"]');

/* The group to launch instead of a single run, or null: more than one seed, or the folds ticked. */
function repeatRequest() {
  const seeds = seedsInput.value === "" ? 1 : Number(seedsInput.value);
  const folds = !document.getElementById("folds-choice").hidden && foldsBox.checked;
  if (seeds === 1 && !folds) return null;
  const { partition, name, ...spec } = requestBody();
  return { partition, name, spec, seeds: Number.isInteger(seeds) ? seeds : seedsInput.value, folds };
}

/* "Cross-validate over the folds" is offered only for a partition that is one fold of a k-fold cross-validation. */
function showFoldsChoice() {
  const folds = Number(partitionSelect.selectedOptions[0]?.dataset.folds ?? 0);
  document.getElementById("folds-choice").hidden = folds < 2;
  if (folds >= 2) document.getElementById("folds-help").textContent = `${folds} runs, one per fold of this ${folds}-fold partition `
    + "(each trains on the other folds and is measured on the one it held out), times the seeds; their out-of-fold predictions "
    + "pooled into one evaluation.";
  const many = document.getElementById("sweep-on").checked ? "Launch the sweep" : repeatRequest() ? "Launch the runs" : null;
  document.getElementById("launch").textContent = many ?? "Launch training";
}
seedsInput.addEventListener("input", showFoldsChoice);
foldsBox.addEventListener("change", showFoldsChoice);
showFoldsChoice();

partitionSelect.addEventListener("change", async () => {
  showFoldsChoice();
  await followPartition();
  render();
  scheduleCurve();
});
augmentationSelect.addEventListener("change", () => choose("data.augmentation", augmentationSelect.value ? Number(augmentationSelect.value) : null));

const from = new URLSearchParams(window.location.search).get("from");
if (from) await startFromRun(from);
await followPartition();
render();
drawCurve();
mountFinder();
loadImportedModels();
// The workers online are a hint, not a requirement: the form works without it.
api("GET", "/api/resources/").then((answer) => { resources = answer; showResources(); }).catch(() => {});
