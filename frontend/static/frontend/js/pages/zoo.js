/* The model zoo: every network of the registry as a card (filtered by task, kind of image and a search), and the
   chosen one's layers for one of the user's datasets or a typed image size (GET /api/architectures/<name>/summary/),
   each layer marked as learning or frozen for a training phase's settings. The server keeps its answers, so moving
   the "frozen blocks" control answers at once; a new network or image size asks the server's warm engine (well under
   a second; a few seconds only for the first table after a server start, the engine being started by the cards' list).
   ?model=<name> opens the page on a network (the run form links here), ?dataset=<id> on a dataset (the template).
   A 3D network takes volumes: the form asks their depth too, which a dataset does not give. */
import { api } from "../api.js";
import { clearErrors, el, showErrors } from "../dom.js";

const SUMMARY_DELAY_MS = 400;
const MANY_LAYERS = 60; // a network with more opens on its blocks only
/* What each kind of layer does, in words; the PyTorch name stays in the row's tooltip. */
const LAYER_WORDS = {
  Conv2d: "Convolution", Linear: "Dense layer", BatchNorm2d: "Normalisation", LocalResponseNorm: "Normalisation (local)",
  ReLU: "Activation (ReLU)", ReLU6: "Activation (ReLU6)", SiLU: "Activation (SiLU)", Hardswish: "Activation (hard swish)",
  Hardsigmoid: "Gate (hard sigmoid)", Sigmoid: "Gate (sigmoid)", MaxPool2d: "Max pooling", AvgPool2d: "Average pooling",
  AdaptiveAvgPool2d: "Average pooling to a fixed size", Dropout: "Dropout (while training only)", Flatten: "Flatten",
  StochasticDepth: "Stochastic depth (while training only)", Identity: "Passes the input on",
  Conv3d: "Convolution (3D)", BatchNorm3d: "Normalisation", MaxPool3d: "Max pooling (3D)", AvgPool3d: "Average pooling (3D)",
  AdaptiveAvgPool3d: "Average pooling to a fixed size",
};

const cards = document.getElementById("zoo-cards");
const search = document.getElementById("zoo-search");
const taskChoice = document.getElementById("zoo-task");
const dimsChoice = document.getElementById("zoo-dims");
const detail = document.getElementById("zoo-detail");
const form = document.getElementById("summary-form");
const datasetChoice = form.elements.dataset;
const typedInputs = ["channels", "height", "width", "classes"].map((name) => form.elements[name]);
const depthInput = form.elements.depth;
const depthField = document.getElementById("depth-field");
const frozenControl = form.elements.frozen_blocks;
const frozenOutput = document.getElementById("frozen-output");
const state = document.getElementById("summary-state");
const facts = document.getElementById("summary-facts");
const showLayers = document.getElementById("show-layers");
const rows = document.querySelector("#summary-table tbody");

const architectures = await api("GET", "/api/architectures/");
let chosen = null;        // the architecture entry whose layers are shown
let summary = null;       // its latest summary
let latestAsk = 0;        // answers to older questions, arriving late, are dropped
let askTimer = null;
let newNetwork = false;   // the next summary is a newly chosen network's: it decides whether every layer is shown
const openBlocks = new Set();

/* ---- numbers a person reads ---- */

/* 11,689,512 -> "11.7 M"; 15,466,176,512 -> "15.5 billion"; smaller ones whole, with separators. */
function compact(count) {
  if (count >= 1e9) return `${(count / 1e9).toFixed(1)} billion`;
  if (count >= 1e6) return `${(count / 1e6).toFixed(1)} M`;
  return count.toLocaleString("en");
}

const shapeText = (shape) => (shape ? shape.join(" × ") : "—");
const isVolume = (entry) => entry.dims === 3;
const plural = (count, word) => `${count} ${word}${count === 1 ? "" : "s"}`;

/* ---- the cards ---- */

function weightsLine(weights) {
  const where = weights.available
    ? el("span", { class: "weights-ok", title: weights.where, text: "on this server" })
    : el("details", { class: "weights-missing" }, [el("summary", { text: "not on this server yet" }),
      el("p", { class: "muted", text: weights.where })]);
  const name = weights.title.replace(/ \(.*\)$/, ""); // "ImageNet (torchvision)" -> "ImageNet"
  // ImageNet's weights say how well they classify ImageNet; MedicalNet's (segmentation, volumes) say what they are.
  const what = weights.imagenet_top1 === null || weights.imagenet_top1 === undefined
    ? weights.title : `${name} (${weights.imagenet_top1.toFixed(1)} % top-1 accuracy)`;
  return el("li", { title: weights.description || "" }, [`${what}: `, where]);
}

function card(entry) {
  const pick = el("button", { type: "button", class: "pick", text: "Show its layers" });
  pick.addEventListener("click", () => choose(entry));
  return el("article", { class: "zoo-card", "data-name": entry.name }, [
    el("header", {}, [el("h3", { text: entry.title }), el("span", { class: "badge", text: `${entry.dims}D` }),
      el("span", { class: "badge badge-task", text: entry.task })]),
    el("p", { class: "zoo-description", text: entry.description }),
    el("ul", { class: "zoo-facts" }, [
      el("li", {}, [el("strong", { text: compact(entry.parameters) }), " parameters"]),
      el("li", {}, [isVolume(entry) ? "Volumes of " : "Images of ", el("strong", { text: entry.accepted_sizes }),
        isVolume(entry) ? " voxels, any channels" : " pixels, any channels"]),
    ]),
    el("p", { class: "zoo-starts", text: entry.weights.length ? "Starts from random weights, or:" : "Starts from random weights." }),
    el("ul", { class: "zoo-weights" }, entry.weights.map(weightsLine)),
    pick,
  ]);
}

function matches(entry) {
  const words = search.value.trim().toLowerCase();
  return (!taskChoice.value || entry.task === taskChoice.value) && (!dimsChoice.value || String(entry.dims) === dimsChoice.value) &&
    (!words || `${entry.title} ${entry.name} ${entry.description} ${entry.task}`.toLowerCase().includes(words));
}

function renderCards() {
  const shown = architectures.filter(matches);
  cards.replaceChildren(...shown.map(card));
  cards.querySelector(`[data-name="${chosen?.name}"]`)?.classList.add("selected");
  document.getElementById("zoo-count").textContent = `${shown.length} of ${architectures.length} networks`;
  document.getElementById("zoo-empty").hidden = shown.length > 0;
}

/* ---- the chosen network's layers ---- */

function choose(entry) {
  chosen = entry;
  summary = null;
  newNetwork = true;
  openBlocks.clear();
  cards.querySelectorAll(".zoo-card").forEach((node) => node.classList.toggle("selected", node.dataset.name === entry.name));
  document.getElementById("detail-title").textContent = `${entry.title}: its layers`;
  document.getElementById("detail-description").textContent = entry.description;
  frozenControl.max = String(entry.blocks - 1);
  depthField.hidden = !isVolume(entry);
  detail.hidden = false;
  const address = new URL(location.href);
  address.searchParams.set("model", entry.name);
  history.replaceState(null, "", address);
  describeFreezing();
  ask();
  detail.scrollIntoView({ block: "start" });
}

function query() {
  const values = new URLSearchParams();
  if (datasetChoice.value) values.set("dataset", datasetChoice.value);
  else typedInputs.forEach((input) => values.set(input.name, input.value));
  if (isVolume(chosen)) values.set("depth", depthInput.value);
  values.set("input_size", form.elements.input_size.value || "0");
  values.set("train", form.elements.train.value);
  values.set("frozen_blocks", frozenControl.value);
  return values;
}

async function ask() {
  clearTimeout(askTimer);
  const asked = ++latestAsk;
  state.textContent = summary ? "Updating…" : "Working out the layers (a few seconds the first time)…";
  try {
    const answer = await api("GET", `/api/architectures/${encodeURIComponent(chosen.name)}/summary/?${query()}`);
    if (asked !== latestAsk) return;
    clearErrors(form);
    summary = answer;
    if (newNetwork) showLayers.checked = answer.layers.length <= MANY_LAYERS;
    newNetwork = false;
    renderSummary();
    state.textContent = "";
  } catch (error) {
    if (asked !== latestAsk) return;
    showErrors(form, error);
    summary = null;
    facts.replaceChildren();
    rows.replaceChildren();
    state.textContent = "No layers to show for these images: see the message above.";
  }
}

function askSoon() {
  clearTimeout(askTimer);
  askTimer = setTimeout(ask, SUMMARY_DELAY_MS);
}

function describeFreezing() {
  const blocks = chosen ? chosen.blocks : 0;
  const headOnly = form.elements.train.value === "head";
  const count = Math.min(Number(frozenControl.value), blocks - 1);
  frozenControl.disabled = headOnly;
  frozenOutput.textContent = headOnly ? `Every block but the head: ${blocks - 1} of ${blocks} frozen.`
    : count === 0 ? "None: every layer learns."
      : `${count === 1 ? "Block 1" : `Blocks 1 to ${count}`} of ${blocks} frozen; the rest learn.`;
}

function renderFacts() {
  const { totals, input } = summary;
  const own = input.depth ? [input.depth, input.height, input.width] : [input.height, input.width];
  const resized = input.input_size ? ` (resized from ${own.join(" × ")} inside the network)` : "";
  const from = input.dataset ? ` — ${input.dataset.name}` : "";
  const learning = totals.frozen_parameters
    ? `${compact(totals.trainable_parameters)} learn, ${compact(totals.frozen_parameters)} frozen` : "all learn";
  facts.replaceChildren(
    el("li", {}, [el("strong", { text: `${compact(totals.parameters)} parameters` }), `: ${learning}`]),
    el("li", {}, [el("strong", { text: compact(totals.multiply_accumulates) }), ` multiply-adds per ${input.depth ? "volume" : "image"}`]),
    el("li", {}, [`Input ${shapeText(input.network_input)}${resized}${from}; output: ${input.classes} class scores`]),
    el("li", {}, [`${plural(totals.layers, "layer")} in ${plural(summary.blocks.length, "block")}, the last one the head`]),
  );
}

function phaseCell(frozen, learns) {
  if (frozen) return el("td", {}, [el("span", { class: "phase-badge phase-frozen", text: "Frozen" })]);
  return el("td", {}, [learns ? el("span", { class: "phase-badge phase-learns", text: "Learns" }) : el("span", { class: "muted", text: "—" })]);
}

function blockRow(block, layers) {
  const open = showLayers.checked || openBlocks.has(block.index);
  const toggle = el("button", { type: "button", class: "link block-toggle", "aria-expanded": String(open),
    text: `${open ? "▾" : "▸"} ${block.title}` });
  toggle.addEventListener("click", () => {
    if (openBlocks.has(block.index)) openBlocks.delete(block.index); else openBlocks.add(block.index);
    renderRows();
  });
  return el("tr", { class: `block-row${block.frozen ? " frozen" : ""}`, "data-block": String(block.index) }, [
    el("td", {}, [toggle, el("span", { class: "muted", text: ` ${block.modules.join(", ")}` })]),
    el("td", { text: plural(layers.length, "layer") }),
    el("td", { class: "nowrap", text: shapeText(block.output_shape) }),
    el("td", { class: "number", text: block.parameters.toLocaleString("en") }),
    phaseCell(block.frozen, block.parameters > 0),
  ]);
}

function layerRow(layer) {
  const words = LAYER_WORDS[layer.type] || layer.type;
  return el("tr", { class: `layer-row${layer.frozen ? " frozen" : ""}`, "data-block": String(layer.block) }, [
    el("td", { class: "layer-name", text: layer.name }),
    el("td", { title: layer.type, text: layer.detail ? `${words}: ${layer.detail}` : words }),
    el("td", { class: "nowrap", text: shapeText(layer.output_shape) }),
    el("td", { class: "number", text: layer.parameters ? layer.parameters.toLocaleString("en") : "" }),
    phaseCell(layer.frozen && layer.parameters > 0, layer.trainable),
  ]);
}

function renderRows() {
  rows.replaceChildren(...summary.blocks.flatMap((block) => {
    const layers = summary.layers.filter((layer) => layer.block === block.index);
    const open = showLayers.checked || openBlocks.has(block.index);
    return [blockRow(block, layers), ...(open ? layers.map(layerRow) : [])];
  }));
}

function renderSummary() {
  frozenControl.max = String(summary.blocks.length - 1);
  describeFreezing();
  renderFacts();
  renderRows();
}

/* ---- wiring ---- */

function useDataset() {
  const option = datasetChoice.selectedOptions[0];
  for (const input of typedInputs) {
    if (option.value) input.value = option.dataset[input.name];
    input.disabled = Boolean(option.value);
  }
}

[search, taskChoice, dimsChoice].forEach((input) => input.addEventListener("input", renderCards));
datasetChoice.addEventListener("change", () => { useDataset(); if (chosen) ask(); });
[...typedInputs, depthInput, form.elements.input_size].forEach((input) => input.addEventListener("input", () => { if (chosen) askSoon(); }));
form.querySelectorAll('input[name="train"]').forEach((radio) => radio.addEventListener("change", () => { describeFreezing(); if (chosen) ask(); }));
frozenControl.addEventListener("input", () => { describeFreezing(); if (chosen) askSoon(); });
showLayers.addEventListener("change", () => { if (summary) renderRows(); });

const tasks = [...new Set(architectures.map((entry) => entry.task))].sort();
taskChoice.append(...tasks.map((task) => el("option", { value: task, text: task[0].toUpperCase() + task.slice(1) })));
useDataset();
renderCards();
const named = architectures.find((entry) => entry.name === new URLSearchParams(location.search).get("model"));
if (named) choose(named);
