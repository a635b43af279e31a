/* The sample page's case of a segmentation evaluation (?evaluation=<id>, opened from the run's table of cases): the
   case's scores per label, and its predicted label map laid over the viewer's plane (an outline, or a filled area,
   in the colour the viewer gives the label's reference mask), following the plane shown.

   casePanel({ sampleId }) returns { draw(axis, index) }, which the viewer calls each time it draws a plane; without
   the card (no ?evaluation=) it draws nothing. */
import { api } from "./api.js";
import { el } from "./dom.js";

const NONE = "—";
const EMPTY_WORDS = { both: "in neither: perfect", missed: "missed: the worst case", false_alarm: "false alarm: the worst case" };

export function casePanel({ sampleId }) {
  const card = document.getElementById("case-card");
  const image = document.getElementById("predicted");
  if (!card) return { draw() {} };
  const controls = document.getElementById("case-controls");
  const shown = controls.querySelector('[name="show-predicted"]');
  const style = controls.querySelector('[name="style"]');
  const state = { case: null, unit: "ml", plane: { axis: "axial", index: null } };
  const say = (text) => { document.getElementById("case-status").textContent = text; };

  async function load(evaluationId) {
    try {
      const [evaluation, answer] = await Promise.all([api("GET", `/api/evaluations/${evaluationId}/`),
        api("GET", `/api/evaluations/${evaluationId}/cases/?sample=${sampleId}`)]);
      const found = (answer.results || answer)[0];
      if (!found) return say(`Evaluation ${evaluationId} has no case of this sample.`);
      state.case = found;
      state.unit = (evaluation.results || {}).volume_unit || "ml";
      showScores(found, (evaluation.results.classes || []).slice(1));
      document.getElementById("case-download").href = `${found.mask_url}?file=npy`;
      draw(state.plane.axis, state.plane.index);
    } catch (error) { say(error.message); }
  }

  function showScores(found, labels) {
    say(`Mean foreground Dice ${found.mean_dice.toFixed(3)}; NSD within ${found.tolerance_mm} mm.`);
    const table = document.getElementById("case-scores");
    table.hidden = false;
    table.querySelector("tbody").replaceChildren(...labels.map((label) => {
      const empty = found.empty[label];
      return el("tr", { "data-label": label, title: empty ? EMPTY_WORDS[empty] : "" }, [
        el("th", { scope: "row", text: empty ? `${label} (${EMPTY_WORDS[empty]})` : label }),
        el("td", { class: "number", text: score(found.dice[label]) }),
        el("td", { class: "number", text: score(found.iou[label]) }),
        el("td", { class: "number", text: found.hd95[label] === undefined ? NONE : found.hd95[label].toFixed(2) }),
        el("td", { class: "number", text: score(found.nsd[label]) }),
        el("td", { class: "number", text: `${amount(found.predicted_volume[label])} / ${amount(found.reference_volume[label])} ${state.unit}` }),
      ]);
    }));
  }

  /* The predicted map's plane under the viewer's (same axis and index, same grid). */
  function draw(axis, index) {
    state.plane = { axis, index };
    // Before the viewer has drawn its first plane (the case came first) there is nothing to lie over yet.
    if (!state.case || index === null || index === undefined) return;
    image.src = `${state.case.mask_url}?${new URLSearchParams({ axis, index, style: style.value })}`;
    image.hidden = !shown.checked;
  }

  shown.addEventListener("change", () => { image.hidden = !shown.checked || !state.case; });
  style.addEventListener("change", () => draw(state.plane.axis, state.plane.index));
  load(card.dataset.evaluation);
  return { draw };
}

function score(value) {
  return value === undefined || value === null ? NONE : value.toFixed(3);
}

function amount(value) {
  if (value === undefined || value === null) return NONE;
  return value === 0 ? "0" : Number(value.toPrecision(3)).toString();
}
