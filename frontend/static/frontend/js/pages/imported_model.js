/* An imported model: the import's progress (and Stop) until it has finished (then the page shows what it became), a
   form that predicts one image through onnxruntime, and Delete. */
import { api } from "../api.js";
import { clearErrors, el, showErrors } from "../dom.js";
import { explainUploadCard } from "../explain_upload.js";
import { watchJob } from "../jobs.js";
import "../delete.js"; // sets up the page's Delete control (templates/frontend/_delete.html), if it has one

const root = document.getElementById("imported-root");
const id = root.dataset.imported;
const SHOWN_CLASSES = 10;

if (root.dataset.finished === "no") {
  watchJob(`/api/imported-models/${id}/`, {
    view: {
      status: document.getElementById("import-status"),
      message: document.getElementById("import-message"),
      progress: document.getElementById("import-progress"),
      stop: document.getElementById("import-stop"),
    },
    onFinish: () => window.location.reload(),
  });
}

function setUpPredict() {
  const form = document.getElementById("predict-form");
  const table = document.getElementById("prediction");
  const note = document.getElementById("prediction-note");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(form);
    const image = form.querySelector('input[name="image"]').files[0];
    const data = new FormData();
    if (image) data.append("image", image);
    const button = form.querySelector('button[type="submit"]');
    button.disabled = true;
    note.textContent = "Predicting… (the first image takes a few seconds while the model loads)";
    try {
      const answer = await api("POST", `/api/imported-models/${id}/predict/`, data);
      const order = answer.probabilities.map((p, i) => i).sort((a, b) => answer.probabilities[b] - answer.probabilities[a]);
      table.querySelector("tbody").replaceChildren(...order.slice(0, SHOWN_CLASSES).map((i) => el("tr", { class: i === answer.top.index ? "top" : "" }, [
        el("td", { text: answer.classes[i] }),
        el("td", { class: "number", text: `${(answer.probabilities[i] * 100).toFixed(1)}%` }),
        el("td", { class: "number", text: answer.outputs[i].toPrecision(4) }),
      ])));
      table.hidden = false;
      note.textContent = `The image went in as ${answer.input_shape.join(" × ")} (channels × height × width); the outputs are ${answer.outputs_are}.`;
    } catch (error) {
      table.hidden = true;
      note.textContent = "";
      showErrors(form, error);
    } finally {
      button.disabled = false;
    }
  });
}

function setUpDelete() {
  const button = document.getElementById("import-delete");
  if (!button) return;
  button.addEventListener("click", async () => {
    if (!window.confirm("Delete this imported model and its files?")) return;
    try {
      await api("DELETE", `/api/imported-models/${id}/`);
      window.location = `/projects/${root.dataset.project}/models/`;
    } catch (error) {
      document.getElementById("import-error").textContent = error.message;
    }
  });
}

setUpPredict();
setUpDelete();
explainUploadCard();
