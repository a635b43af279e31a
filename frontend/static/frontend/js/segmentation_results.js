/* A segmentation run's results on the run page (docs/results.md, "Segmentation"): per label its mean Dice, IoU, HD95
   (mm), NSD and volumes over the cases with their 95% intervals, how many cases had the label in neither mask, missed
   it or raised a false alarm; then each case, worst first (or by one label's measure), each opening the sample with
   its predicted mask over the reference (the sample page with ?evaluation=<id>).

   segmentationResults(root, { get, withInterval, formatValue }) returns { show(evaluation) }. get: the evaluation
   view's GET (it is cancelled when the page is left); withInterval and formatValue: its number formats. Everything
   it keeps is in one `state`. */
import { el } from "./dom.js";

const NONE = "—";
const MEASURES = [["dice", "Dice", "score"], ["iou", "IoU", "score"], ["hd95", "HD95 (mm)", "mm"], ["nsd", "NSD", "score"]];
const EMPTY_WORDS = { both: "in neither: scored perfect", missed: "missed: scored the worst", false_alarm: "false alarm: scored the worst" };

export function segmentationResults(root, { get, withInterval, formatValue }) {
  const state = { evaluation: null, order: "worst", label: "", asked: 0 };
  const find = (selector) => root.querySelector(selector);
  const format = (value, kind) => (kind === "mm" ? millimetres(value) : formatValue(value, kind));

  function show(evaluation) {
    state.evaluation = evaluation;
    const results = evaluation.results || {};
    const labels = (results.classes || []).slice(1);
    if (!labels.includes(state.label)) state.label = labels[0] || "";
    linkDownloads(evaluation);
    showLabels(results, labels);
    const choice = find("#case-class");
    choice.replaceChildren(...labels.map((label) => el("option", { value: label, text: label })));
    choice.value = state.label;
    showCases();
  }

  function showLabels(results, labels) {
    const level = results.level || 0.95;
    const perClass = results.per_class || {};
    const unit = results.volume_unit || "ml";
    find("#segmentation-per-class tbody").replaceChildren(...labels.map((label, k) => {
      const of = (measure) => (perClass[measure] || [])[k];
      const counts = (results.empty || {})[label] || {};
      return el("tr", { "data-label": label }, [
        el("th", { scope: "row", text: label }),
        ...MEASURES.map(([measure, , kind]) => el("td", { "data-measure": measure },
          kind === "mm" ? withMillimetres(of(measure)) : withInterval(of(measure), kind, level, { prefix: false }))),
        el("td", { class: "number", text: `${volume(of("predicted_volume")?.value)} / ${volume(of("reference_volume")?.value)} ${unit}` }),
        el("td", { text: emptyWords(counts) }),
      ]);
    }));
    const tolerance = (results.nsd_tolerance_mm || {}).used || [];
    find("[data-part='segmentation-empty']").textContent = `NSD tolerance: ${tolerance.map((t) => `${t} mm`).join(", ") || NONE}. `
      + "A label absent from both the reference and the prediction counts as perfect (Dice 1, HD95 0 mm), one present in only "
      + "one of them as the worst case (Dice 0, NSD 0, HD95 the diagonal of the case's field of view), as Metrics Reloaded advises: "
      + "no case is left out.";
  }

  /* The interval in mm, as withInterval writes scores: "2.40 mm (1.10–3.90)". */
  function withMillimetres(entry = {}) {
    if (entry.low === null || entry.low === undefined) return [millimetres(entry.value)];
    return [millimetres(entry.value), " ", el("span", { class: "interval", text: `(${millimetres(entry.low, "")}–${millimetres(entry.high, "")})` })];
  }

  async function showCases() {
    const asked = ++state.asked;
    const evaluation = state.evaluation;
    const query = new URLSearchParams({ order: state.order });
    if (!["worst", "sample"].includes(state.order)) query.set("class", state.label);
    find("#case-class").closest("label").hidden = ["worst", "sample"].includes(state.order);
    let answer;
    try { answer = await get(`/api/evaluations/${evaluation.id}/cases/?${query}`); } catch (error) {
      find("#case-note").textContent = error.message;
      return;
    }
    if (!answer || asked !== state.asked) return; // the page is being left, or a newer choice was made
    const rows = answer.results || answer;
    const total = answer.count ?? rows.length;
    find("#case-note").textContent = !rows.length ? "No case was stored."
      : `${total > rows.length ? `The first ${rows.length} of ${total}` : total} case${total === 1 ? "" : "s"}; open one to see its predicted `
        + "outline over the reference mask.";
    const labels = (evaluation.results.classes || []).slice(1);
    const unit = evaluation.results.volume_unit || "ml";
    find("#segmentation-cases thead").replaceChildren(el("tr", {}, [
      el("th", { text: "Sample" }), el("th", { text: "Patient" }), el("th", { class: "number", text: "Mean Dice" }),
      ...labels.flatMap((label) => [...MEASURES.map(([, name]) => el("th", { class: "number", text: labels.length > 1 ? `${name} · ${label}` : name })),
        el("th", { class: "number", text: `Volume (${unit}) · ${labels.length > 1 ? label : "predicted / reference"}` })]),
    ]));
    find("#segmentation-cases tbody").replaceChildren(...rows.map((row) => el("tr", { "data-case": row.sample ?? "" }, [
      el("td", {}, [row.sample ? el("a", { href: `/samples/${row.sample}/?evaluation=${evaluation.id}`, text: `#${row.sample}`,
        title: "Open the sample with its predicted mask over the reference" }) : NONE]),
      el("td", { text: row.patient || NONE }),
      el("td", { class: "number", "data-value": row.mean_dice, text: formatValue(row.mean_dice, "score") }),
      ...labels.flatMap((label) => [
        ...MEASURES.map(([measure, , kind]) => caseCell(format(row[measure][label], kind), row.empty[label])),
        el("td", { class: "number", text: `${volume(row.predicted_volume[label])} / ${volume(row.reference_volume[label])}` }),
      ]),
    ])));
    find("#segmentation-cases").hidden = !rows.length;
  }

  function linkDownloads(evaluation) {
    for (const box of root.querySelectorAll("[data-table]")) {
      for (const link of box.querySelectorAll("a[data-format]")) {
        link.href = `/api/evaluations/${evaluation.id}/export/?table=${box.dataset.table}&file=${link.dataset.format}`;
      }
    }
  }

  find("#case-order").addEventListener("change", (event) => { state.order = event.target.value; showCases(); });
  find("#case-class").addEventListener("change", (event) => { state.label = event.target.value; showCases(); });
  return { show };
}

/* A case's measure, marked where its label was empty in a mask (how it was scored, in the cell's title). */
function caseCell(text, empty) {
  const cell = el("td", { class: `number${empty && empty !== "both" ? " wrong" : ""}`, text: empty ? `${text} ·` : text });
  if (empty) {
    cell.title = EMPTY_WORDS[empty];
    cell.append(el("span", { class: "muted", text: ` ${empty === "false_alarm" ? "false alarm" : empty === "both" ? "empty" : "missed"}` }));
  }
  return cell;
}

function millimetres(value, unit = " mm") {
  if (value === null || value === undefined || Number.isNaN(value)) return NONE;
  return `${value.toFixed(value >= 100 ? 0 : 2)}${unit}`;
}

function volume(value) {
  if (value === null || value === undefined || Number.isNaN(value)) return NONE;
  return value === 0 ? "0" : Number(value.toPrecision(3)).toString();
}

function emptyWords(counts) {
  const parts = [["missed", "missed"], ["false_alarm", "false alarm"], ["both", "in neither (correctly empty)"]]
    .filter(([key]) => counts[key]).map(([key, words]) => `${counts[key]} ${words}`);
  return parts.length ? parts.join(", ") : "none";
}
