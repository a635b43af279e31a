/* The Delete control of every page (templates/frontend/_delete.html). Before anything is deleted, the dialog shows
   what the server says goes with it (GET <url>deletion/, backend/core/deletion.py): what is always deleted with it,
   the training runs that used it (kept unless the person ticks them too), what forbids the deletion, and the jobs
   still working, which are stopped first (POST <their url>stop/, then waited for). The deletion itself is the API's
   DELETE, so the page and scripts meet the same refusals. */
import { api } from "./api.js";
import { el } from "./dom.js";

const POLL_MS = 500;

function formatBytes(bytes) {
  const units = ["bytes", "kB", "MB", "GB", "TB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) { value /= 1000; unit += 1; }
  return unit ? `${value.toFixed(1)} ${units[unit]}` : `${value} bytes`;
}

function described(thing) {
  const words = `${thing.type.replace("_", " ")} ‘${thing.name}’`;
  return thing.page ? el("a", { href: thing.page, text: words }) : document.createTextNode(words);
}

function listOf(things) {
  return el("ul", { class: "delete-list" }, things.map((thing) => el("li", {}, [
    described(thing), ...(thing.finished ? [] : [el("span", { class: `status status-${thing.status}`, text: ` ${thing.status}` })]),
  ])));
}

function planView(plan) {
  const parts = [el("p", { text: `Its files (${formatBytes(plan.bytes)}) are removed from storage; this cannot be undone.` })];
  if (plan.also.length) parts.push(el("p", { text: "Deleted with it:" }), listOf(plan.also));
  if (plan.runs.length) parts.push(el("p", { text: `${plan.runs.length} training run(s) used it; their results are why it is kept:` }), listOf(plan.runs));
  if (plan.running.length) {
    parts.push(el("p", { class: "warning", text: "Still working, so stopped first (a training run stops after its current batch):" }), listOf(plan.running));
  }
  for (const reason of plan.blocked_by) parts.push(el("p", { class: "error", text: reason }));
  return parts;
}

async function stopAndWait(things, progress, isCancelled) {
  for (const thing of things) {
    progress.textContent = `Stopping the ${thing.type.replace("_", " ")} ‘${thing.name}’…`;
    try { await api("POST", `${thing.url}stop/`); } catch (error) { if (error.status !== 409) throw error; } // 409: it ended meanwhile
    for (;;) {
      if (isCancelled()) return false;
      const job = await api("GET", thing.url);
      if (job.finished) break;
      progress.textContent = `Stopping the ${thing.type.replace("_", " ")} ‘${thing.name}’: waiting for its worker to finish what it is doing…`;
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    }
  }
  return true;
}

function setUp(control) {
  const button = control.querySelector("[data-delete]");
  const dialog = control.querySelector("dialog");
  const planBox = dialog.querySelector(".delete-plan");
  const withRuns = dialog.querySelector(".delete-with-runs");
  const tick = withRuns.querySelector("input");
  const progress = dialog.querySelector(".delete-progress");
  const error = dialog.querySelector(".error");
  const confirm = dialog.querySelector(".delete-confirm");
  const url = button.dataset.delete;
  let plan = null;
  let cancelled = false;

  const query = () => (tick.checked ? "?with_runs=true" : "");
  const refresh = async () => {
    confirm.disabled = true;
    error.textContent = "";
    try {
      plan = await api("GET", `${url}deletion/${query()}`);
    } catch (failure) {
      error.textContent = failure.message;
      return;
    }
    planBox.replaceChildren(...planView(plan));
    withRuns.hidden = !plan.runs.length;
    withRuns.querySelector("span").textContent = `Also delete these ${plan.runs.length} training run(s)`;
    const stoppable = !plan.blocked_by.length && (!plan.runs.length || tick.checked);
    confirm.disabled = !stoppable;
    confirm.textContent = plan.running.length && stoppable ? "Stop and delete" : "Delete";
    if (!stoppable && plan.runs.length && !plan.blocked_by.length) error.textContent = "Tick the box to delete the runs too, or delete them first.";
  };

  button.addEventListener("click", () => {
    cancelled = false;
    tick.checked = false;
    progress.hidden = true;
    dialog.showModal();
    refresh();
  });
  tick.addEventListener("change", refresh);
  dialog.querySelector(".delete-cancel").addEventListener("click", () => { cancelled = true; dialog.close(); });
  dialog.addEventListener("close", () => { cancelled = true; });
  confirm.addEventListener("click", async () => {
    confirm.disabled = true;
    tick.disabled = true;
    error.textContent = "";
    progress.hidden = false;
    try {
      if (plan.running.length && !(await stopAndWait(plan.running, progress, () => cancelled))) return;
      progress.textContent = "Deleting…";
      await api("DELETE", `${url}${query()}`);
      progress.textContent = "Deleted.";
      window.location = button.dataset.after;
    } catch (failure) {
      progress.hidden = true;
      error.textContent = failure.message;
      await refresh();
    } finally {
      tick.disabled = false;
    }
  });
}

// Imported by the page modules whose templates include _delete.html: every control on the page is set up once.
document.querySelectorAll(".delete-control").forEach(setUp);
