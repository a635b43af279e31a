/* Building the page: elements, forms and their errors, progress bars, durations. */

/* el("td", { class: "number", text: "3" }, [children]): "text" sets the text, every other key an attribute. */
export function el(tag, attributes = {}, children = []) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (key === "text") node.textContent = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

/* The form's named fields as the API takes them: numbers as numbers, only the checked radio. */
export function formValues(form) {
  const values = {};
  for (const input of form.querySelectorAll("input, select, textarea")) {
    if (!input.name || input.type === "file" || (input.type === "radio" && !input.checked)) continue;
    values[input.name] = input.type === "number" && input.value !== "" ? Number(input.value) : input.value;
  }
  return values;
}

export function clearErrors(form, summary = null) {
  form.querySelectorAll("[data-error-for]").forEach((node) => { node.textContent = ""; node.classList.remove("quiet"); });
  if (summary) {
    summary.hidden = true;
    summaryList(summary).replaceChildren();
  }
}

/* Each API error names its field: show it beside that field, or at the form's foot
   ([data-error-for="__all__"]) when the field has no slot of its own.
   summary: an element at the top of a long form that lists every error too, each a link to its field;
   the closed <details> around a field with an error open, and errors whose field is hidden or
   missing are listed there only.
   quiet: for checks made while the user edits: beside the fields, softer, and nothing opens. */
export function showErrors(form, error, { summary = null, quiet = false } = {}) {
  clearErrors(form, summary);
  const errors = error.errors || [{ message: error.message, field: null }];
  for (const item of errors) {
    const slot = form.querySelector(`[data-error-for="${item.field}"]`);
    if (slot && !quiet) openAround(slot);
    if (summary) summaryList(summary).append(summaryItem(form, item, slot));
    const shown = slot && !slot.closest("[hidden]") ? slot : (summary ? null : footSlot(form));
    if (!shown) continue;
    shown.textContent = shown.textContent ? `${shown.textContent} ${item.message}` : item.message;
    shown.classList.toggle("quiet", quiet);
  }
  if (summary) summary.hidden = false;
}

function openAround(node) {
  for (let details = node.closest("details"); details; details = details.parentElement.closest("details")) details.open = true;
}

function summaryList(summary) {
  return summary.querySelector("ul") || summary.appendChild(el("ul"));
}

/* "Optimizer: Momentum must be between 0 and 0.999; it is 2.", a link that opens and focuses the field. */
function summaryItem(form, item, slot) {
  const group = slot?.closest("fieldset")?.querySelector("legend")?.textContent;
  const input = slot?.closest("label")?.querySelector("input, select, textarea") || form.querySelector(`[name="${item.field}"]`);
  const text = group ? `${group}: ${item.message}` : item.message;
  if (!input) return el("li", { text });
  const link = el("a", { href: "#", text });
  link.addEventListener("click", (event) => {
    event.preventDefault();
    openAround(input);
    input.focus();
  });
  return el("li", {}, [link]);
}

function footSlot(form) {
  return form.querySelector('[data-error-for="__all__"]')
    || form.appendChild(el("p", { class: "error", "data-error-for": "__all__", role: "alert" }));
}

/* container: <div class="progress"><div class="bar"></div><span class="label"></span></div> */
export function setProgress(container, fraction, label) {
  container.hidden = false;
  const percent = Math.max(0, Math.min(1, fraction || 0)) * 100;
  container.querySelector(".bar").style.width = `${percent.toFixed(1)}%`;
  container.querySelector(".label").textContent = label || `${percent.toFixed(0)}%`;
  container.setAttribute("role", "progressbar");
  container.setAttribute("aria-valuenow", percent.toFixed(0));
}

export function formatSeconds(seconds) {
  if (seconds === null || seconds === undefined) return "";
  if (seconds < 60) return `${Math.round(seconds)} s`;
  const minutes = Math.floor(seconds / 60);
  return minutes < 60 ? `${minutes} min ${Math.round(seconds % 60)} s` : `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}
