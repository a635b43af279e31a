/* Launching a training run: the form says which workers are online, and the API checks the rest. */
import { api } from "../api.js";
import { clearErrors, formValues, showErrors } from "../dom.js";

const form = document.getElementById("run-form");

async function showResources() {
  const resources = await api("GET", "/api/resources/");
  const gpus = resources.workers.reduce((sum, worker) => sum + worker.gpu_count, 0);
  form.querySelector('input[value="gpu"]').disabled = !resources.gpu_available;
  document.getElementById("resources-hint").textContent = resources.gpu_available
    ? `${gpus} GPU(s) online.`
    : (resources.cpu_available ? "No GPU worker is online; the run will use a CPU worker."
      : "No worker is online right now; the run will wait in the queue until one starts.");
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  clearErrors(form);
  const values = formValues(form);
  if (!values.augmentation) delete values.augmentation; // "None"
  try {
    const run = await api("POST", "/api/runs/", values);
    window.location = `/runs/${run.id}/`;
  } catch (error) { showErrors(form, error); }
});
// The hint is help, not a requirement: the form works without it.
showResources().catch(() => {});
