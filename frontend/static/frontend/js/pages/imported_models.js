/* Importing a model: the upload (with the transfer's progress; the server checks the file before keeping it and
   answers why when it will not), then the model's page. Imports still being worked on update their row here. */
import { formError, upload } from "../api.js";
import { clearErrors, setProgress, showErrors } from "../dom.js";
import { watchJob } from "../jobs.js";

function setUpImport() {
  const form = document.getElementById("import-form");
  if (!form) return;
  const bar = form.querySelector(".progress");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(form);
    const file = form.querySelector('input[name="file"]').files[0];
    if (!file) {
      showErrors(form, formError("Choose an .onnx file, or a .safetensors file of weights.", "file"));
      return;
    }
    const data = new FormData();
    data.append("project", form.dataset.project);
    data.append("file", file);
    for (const name of ["name", "architecture", "mean", "std", "input_size"]) {
      data.append(name, form.querySelector(`[name="${name}"]`).value);
    }
    setProgress(bar, 0, "Uploading…");
    try {
      const model = await upload("/api/imported-models/", data, {
        onProgress: (sent, total) => setProgress(bar, sent / total, `Uploading: ${(sent / 1e6).toFixed(1)} of ${(total / 1e6).toFixed(1)} MB`),
        onSent: () => setProgress(bar, 1, "Checking the file…"),
      });
      window.location = `/imported-models/${model.id}/`;
    } catch (error) {
      bar.hidden = true;
      showErrors(form, error);
    }
  });
}

/* A row whose import is still running: its status, mode and reason follow the job. */
function followUnfinished() {
  for (const row of document.querySelectorAll('tr[data-imported][data-finished="no"]')) {
    const field = (name) => row.querySelector(`[data-field="${name}"]`);
    watchJob(`/api/imported-models/${row.dataset.imported}/`, {
      view: { status: field("status") },
      onFinish: (model) => {
        const mode = field("mode");
        mode.className = `mode mode-${model.mode}`;
        mode.textContent = model.mode_display;
        field("reason").textContent = model.reason || model.message;
        row.dataset.finished = "yes";
      },
    });
  }
}

setUpImport();
followUnfinished();
