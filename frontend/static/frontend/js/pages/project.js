/* A project: upload a dataset (with the transfer's progress), merge datasets, share the project. */
import { api, formError, upload } from "../api.js";
import { clearErrors, formatSeconds, formValues, setProgress, showErrors } from "../dom.js";
import { sortableTables } from "../sortable.js";
import { setUpCompare } from "../compare_select.js";

function setUpUpload() {
  const form = document.getElementById("upload-form");
  if (!form) return;
  const bar = form.querySelector(".progress");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(form);
    const chosen = [...form.querySelector('input[name="files"]').files, ...form.querySelector('input[name="folder"]').files];
    if (!chosen.length) {
      showErrors(form, formError("Choose files, a folder or a zip archive to upload."));
      return;
    }
    const data = new FormData();
    data.append("project", form.dataset.project);
    data.append("name", form.querySelector('input[name="name"]').value);
    data.append("labels_from", form.querySelector('select[name="labels_from"]').value);
    // Folder names can be labels: send each file's path inside the chosen folder.
    for (const file of chosen) {
      data.append("files", file);
      data.append("paths", file.webkitRelativePath || file.name);
    }
    const started = Date.now();
    const onProgress = (sent, total) => {
      const elapsed = (Date.now() - started) / 1000;
      const eta = sent ? elapsed * (total - sent) / sent : 0;
      setProgress(bar, sent / total,
        `Uploading ${chosen.length} file(s): ${(sent / 1e6).toFixed(1)} of ${(total / 1e6).toFixed(1)} MB · ${formatSeconds(eta)} left`);
    };
    setProgress(bar, 0, "Uploading…");
    try {
      const dataset = await upload("/api/datasets/", data, { onProgress, onSent: () => setProgress(bar, 1, "Checking the files…") });
      window.location = `/datasets/${dataset.id}/`;
    } catch (error) {
      bar.hidden = true;
      showErrors(form, error);
    }
  });
}

/* "PNEUMONIA -> pneumonia" per line, as {from: to}. */
function labelMapping(text) {
  const mapping = {};
  for (const line of text.split("\n")) {
    const [from, to] = line.split("->").map((part) => (part || "").trim());
    if (from) mapping[from] = to || "";
  }
  return mapping;
}

function setUpMerge() {
  const form = document.getElementById("merge-form");
  if (!form) return;
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(form);
    try {
      const merged = await api("POST", "/api/datasets/merge/", {
        name: form.querySelector('input[name="name"]').value,
        datasets: [...form.querySelectorAll('input[name="datasets"]:checked')].map((box) => Number(box.value)),
        label_mapping: labelMapping(form.querySelector("textarea").value),
      });
      window.location = `/datasets/${merged.id}/`;
    } catch (error) { showErrors(form, error); }
  });
}

function setUpSharing() {
  const form = document.getElementById("share-form");
  if (!form) return;
  const project = form.dataset.project;
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(form);
    try {
      await api("POST", `/api/projects/${project}/members/`, formValues(form));
      window.location.reload();
    } catch (error) { showErrors(form, error); }
  });
  document.querySelectorAll("[data-unshare]").forEach((button) => button.addEventListener("click", async () => {
    try {
      await api("DELETE", `/api/projects/${project}/members/${button.dataset.unshare}/`);
      window.location.reload();
    } catch (error) { showErrors(form, error); }
  }));
}

setUpUpload();
setUpMerge();
setUpSharing();
setUpCompare(); // tick runs and groups, then Compare
sortableTables(); // the runs, by any column
