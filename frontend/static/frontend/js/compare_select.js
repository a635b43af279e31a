/* The project page's way to a comparison (docs/results.md, "Compare"): tick runs and groups in their tables, then
   "Compare" saves a comparison of them (POST /api/comparisons/) and opens it; its address can be shared with the
   project's members. A refusal (runs with nothing in common) is shown beside the button. */
import { api } from "./api.js";

export function setUpCompare() {
  const button = document.getElementById("compare-button");
  if (!button) return; // a viewer: comparisons are made by the project's owners
  const count = document.getElementById("compare-count");
  const error = document.getElementById("compare-error");
  const picked = () => [...document.querySelectorAll("input.compare-pick:checked")];
  const update = () => {
    const n = picked().length;
    button.disabled = n < 2;
    count.textContent = n < 2 ? "Tick two or more runs or groups to compare them." : `${n} chosen.`;
  };
  document.addEventListener("change", (event) => {
    if (event.target.matches("input.compare-pick")) { error.textContent = ""; update(); }
  });
  button.addEventListener("click", async () => {
    const ids = (kind) => picked().filter((box) => box.dataset.kind === kind).map((box) => Number(box.value));
    button.disabled = true;
    error.textContent = "";
    try {
      const saved = await api("POST", "/api/comparisons/", { project: Number(button.dataset.project), runs: ids("run"), groups: ids("group") });
      window.location.assign(`/comparisons/${saved.id}/`);
    } catch (problem) {
      error.textContent = problem.message;
      update();
    }
  });
  update();
}
