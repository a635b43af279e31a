/* Fields for typed parameters, built from a registry's schema (GET /api/operations/, GET /api/training/):
   each parameter is {name, label, kind, default, help, minimum, maximum, above, choices}; its kind picks
   the input, its bounds become the input's, its help is shown under it, and an error slot named like
   the input waits for the API's message (dom.js showErrors). */
import { el } from "./dom.js";

/* What a choice reads as in a select: given by the caller (titles of registry entries, say), else the value itself. */
const asIs = (choice) => choice;

function withBounds(input, param) {
  const minimum = param.minimum ?? param.above;
  if (minimum !== undefined) input.min = minimum;
  if (param.maximum !== undefined) input.max = param.maximum;
  return input;
}

/* A number field's value as the API takes it: empty is null (the API says what is missing), never 0. */
function numberOf(input) {
  return input.value === "" ? null : Number(input.value);
}

/* The input for one parameter, by its kind; update(value) stores a change (on each keystroke for text and numbers). */
export function paramInput(name, param, value, update, describe = asIs) {
  if (param.kind === "bool") {
    const box = el("input", { type: "checkbox", name });
    box.checked = Boolean(value);
    box.addEventListener("change", () => update(box.checked));
    return box;
  }
  if (param.kind === "choice") {
    const select = el("select", { name }, param.choices.map((c) => el("option", { value: c, text: describe(c) })));
    select.value = value;
    select.addEventListener("change", () => update(select.value));
    return select;
  }
  if (param.kind === "range") {
    const pair = [...value];
    const bound = (part) => {
      const box = withBounds(el("input", { type: "number", step: "any", name: `${name}.${part}`, "aria-label": `${param.label} ${part ? "high" : "low"}` }), param);
      box.value = value[part];
      box.addEventListener("input", () => { pair[part] = numberOf(box); update([...pair]); });
      return box;
    };
    return el("span", { class: "range" }, [bound(0), el("span", { text: " to " }), bound(1)]);
  }
  const input = withBounds(el("input", { type: param.kind === "text" ? "text" : "number", name, step: param.kind === "int" ? "1" : "any" }), param);
  input.value = value ?? "";
  input.addEventListener("input", () => update(param.kind === "text" ? input.value : numberOf(input)));
  return input;
}

/* The parameter's label, input, help and error slot. A box comes before its label; options.help: false
   keeps the help to the tooltip (fields repeated in a list, say). */
export function paramField(name, param, value, update, { describe = asIs, help = true } = {}) {
  const input = paramInput(name, param, value, update, describe);
  const label = el("span", { class: "param-label", text: `${param.label} ` });
  return el("label", { class: `param param-${param.kind}`, title: param.help }, [
    ...(param.kind === "bool" ? [input, label] : [label, input]),
    help && param.help ? el("small", { class: "muted param-help", text: param.help }) : "",
    el("span", { class: "error", "data-error-for": name, role: "alert" }),
  ]);
}
