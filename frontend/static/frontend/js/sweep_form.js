/* The run form's sweep card (docs/results.md, "Sweeps"): up to four settings to vary, each by its values or by a
   range, the sampler, the number of trials, how many run at once and the pruner. `searchRequest()` is the search the
   API takes (POST /api/groups/ with `search`), or null while the card's box is not ticked. The card's inputs carry no
   name: the run's own settings are read elsewhere, and these never mix with them. Each refusal's field
   (`search.dimensions.1.values` ...) has its slot beside its input. */
import { el } from "./dom.js";

const MOST_SETTINGS = 4;
/* The settings most worth sweeping, with what a first sweep of each usually tries. Any other setting of
   docs/training.md can be typed in ("Another setting"). */
const SETTINGS = [
  { setting: "optimizer.learning_rate", label: "Learning rate", range: [1e-4, 1e-1], log: true },
  { setting: "optimizer.weight_decay", label: "Weight decay", range: [1e-5, 1e-1], log: true },
  { setting: "batch_size", label: "Batch size", values: [16, 32, 64] },
  { setting: "epochs", label: "Epochs", values: [10, 20, 40] },
  { setting: "model.architecture", label: "Architecture", values: ["small_cnn", "resnet18"] },
  { setting: "optimizer.name", label: "Optimizer", values: ["adamw", "sgd"] },
  { setting: "schedule.name", label: "Learning-rate schedule", values: ["cosine", "one_cycle"] },
  { setting: "data.balancing", label: "Class balancing", values: ["none", "weighted", "oversample"] },
  { setting: "gradient_clipping", label: "Gradient clipping", values: [0, 1, 5] },
];

export function mountSweepForm(card) {
  const box = card.querySelector("#sweep-on");
  const body = card.querySelector("#sweep-body");
  const rows = card.querySelector("#sweep-settings");
  const add = card.querySelector("#sweep-add");
  const sampler = card.querySelector("#sweep-sampler");
  const trials = card.querySelector("#sweep-trials");

  function toggle() {
    body.hidden = !box.checked;
    if (box.checked && !rows.children.length) addRow();
  }
  function renumber() {
    [...rows.children].forEach((row, k) => {
      for (const slot of row.querySelectorAll("[data-part]")) slot.dataset.errorFor = `search.dimensions.${k}.${slot.dataset.part}`;
      row.querySelector("legend").textContent = `Setting ${k + 1}`;
    });
    add.hidden = rows.children.length >= MOST_SETTINGS;
  }
  function addRow() {
    rows.append(settingRow(renumber));
    renumber();
  }
  function showTrials() {
    // A grid tries every combination of the listed values: its size is the number of runs.
    const grid = sampler.value === "grid";
    trials.closest("label").hidden = grid;
    for (const row of rows.children) row.setGrid(grid);
  }
  box.addEventListener("change", toggle);
  add.addEventListener("click", addRow);
  sampler.addEventListener("change", showTrials);
  toggle();

  return function searchRequest() {
    if (!box.checked) return null;
    return {
      sampler: sampler.value,
      trials: trials.value === "" ? trials.value : Number(trials.value),
      parallel: Number(card.querySelector("#sweep-parallel").value),
      pruner: card.querySelector("#sweep-pruner").value,
      dimensions: [...rows.children].map((row) => row.dimension()),
    };
  };
}

/* One setting to vary: which, and its values or its range. */
function settingRow(renumber) {
  const choice = el("select", { "aria-label": "Setting to vary" }, [
    ...SETTINGS.map(({ setting, label }) => el("option", { value: setting, text: `${label} (${setting})` })),
    el("option", { value: "", text: "Another setting…" }),
  ]);
  const typed = el("input", { placeholder: "e.g. optimizer.momentum", "aria-label": "Setting (dotted name)", hidden: "" });
  const how = el("select", { "aria-label": "How to vary it" }, [
    el("option", { value: "values", text: "these values" }), el("option", { value: "range", text: "a range" })]);
  const values = el("input", { "aria-label": "Values, separated by commas", placeholder: "0.01, 0.001" });
  const low = el("input", { type: "number", step: "any", "aria-label": "From" });
  const high = el("input", { type: "number", step: "any", "aria-label": "To" });
  const log = el("input", { type: "checkbox" });
  const rangeFields = el("span", { class: "sweep-range" }, [
    el("label", {}, ["From ", low]), el("label", {}, ["to ", high]), el("label", { class: "check" }, [log, " log scale"])]);
  const remove = el("button", { type: "button", class: "link", text: "Remove" });
  const slot = (part) => el("span", { class: "error", "data-part": part, role: "alert" });
  const row = el("fieldset", { class: "wide sweep-setting" }, [
    el("legend", {}),
    el("div", { class: "sweep-line" }, [choice, typed, how, remove]),
    slot("setting"),
    values, rangeFields, slot("values"), slot("low"), slot("high"),
  ]);
  let grid = false;

  function fill() {
    const known = SETTINGS.find((entry) => entry.setting === choice.value);
    typed.hidden = Boolean(known);
    if (!known) return;
    if (known.values) values.value = known.values.join(", ");
    if (known.range) [low.value, high.value, log.checked] = [known.range[0], known.range[1], known.log];
    how.value = known.range && !grid ? "range" : "values";
    if (known.range && !known.values) values.value = known.log ? "0.1, 0.01, 0.001" : `${known.range[0]}, ${known.range[1]}`;
    showHow();
  }
  function showHow() {
    const ranged = how.value === "range" && !grid;
    values.hidden = ranged;
    rangeFields.hidden = !ranged;
  }
  choice.addEventListener("change", fill);
  how.addEventListener("change", showHow);
  remove.addEventListener("click", () => { row.remove(); renumber(); });
  row.setGrid = (isGrid) => {
    grid = isGrid;
    how.querySelector('option[value="range"]').disabled = isGrid; // a grid lists its values
    showHow();
  };
  row.dimension = () => {
    const setting = choice.value || typed.value.trim();
    if (how.value === "range" && !grid) {
      return { setting, low: low.value === "" ? null : Number(low.value), high: high.value === "" ? null : Number(high.value), log: log.checked };
    }
    return { setting, values: parsedValues(values.value) };
  };
  fill();
  return row;
}

/* "0.1, 0.01" -> [0.1, 0.01]; words stay words ("adamw"); true/false are booleans. */
function parsedValues(text) {
  return text.split(",").map((part) => part.trim()).filter(Boolean).map((part) => {
    if (part === "true" || part === "false") return part === "true";
    const number = Number(part);
    return Number.isFinite(number) ? number : part;
  });
}
