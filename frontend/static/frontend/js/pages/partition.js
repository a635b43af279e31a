/* A partition: samples per class in each subset (a table and a chart), how it was made,
   and whether any patient is in two subsets. */
import { api } from "../api.js";
import { drawChart } from "../charts.js";
import { el } from "../dom.js";

const SUBSETS = ["train", "validation", "test"];

function countsTable(labels, count) {
  const sum = (values) => String(values.reduce((total, value) => total + value, 0));
  const labelRow = (label) => el("tr", {}, [el("td", { text: label || "(unlabelled)" }),
    ...SUBSETS.map((subset) => el("td", { text: String(count(subset, label)) })),
    el("td", { text: sum(SUBSETS.map((subset) => count(subset, label))) })]);
  const totalRow = el("tr", { class: "total" }, [el("td", { text: "All" }),
    ...SUBSETS.map((subset) => el("td", { text: sum(labels.map((label) => count(subset, label))) })),
    el("td", { text: sum(labels.flatMap((label) => SUBSETS.map((subset) => count(subset, label)))) })]);
  document.querySelector("#partition-counts tbody").replaceChildren(...labels.map(labelRow), totalRow);
}

function patientCheck(leakingPatients) {
  const leaks = Object.entries(leakingPatients);
  const check = document.getElementById("leakage");
  if (!leaks.length) {
    check.className = "ok";
    check.textContent = "No patient in two subsets.";
    return;
  }
  check.className = "error";
  check.replaceChildren(el("span", { text: `${leaks.length} patients are in more than one subset: ` }),
    ...leaks.slice(0, 50).map(([patient, found]) => el("code", { text: `${patient} (${found.join(", ")}) ` })));
}

function howItWasMade(partition) {
  const how = {
    percentages: `${partition.train_percent}/${partition.validation_percent}/${partition.test_percent} %, stratified by label, patients kept whole`,
    kfold: `fold ${partition.fold} of ${partition.folds} (validation), the other folds train`,
    column: `from the table column '${partition.column}'`,
  };
  return `${how[partition.method]}${partition.method === "column" ? "" : ` · seed ${partition.seed}`}`;
}

const partition = await api("GET", `/api/partitions/${document.getElementById("partition-root").dataset.partition}/`);
const labels = [...new Set(SUBSETS.flatMap((subset) => Object.keys(partition.counts[subset] || {})))].sort();
const count = (subset, label) => (partition.counts[subset] || {})[label] || 0;
countsTable(labels, count);
drawChart("partition-chart", SUBSETS.map((subset) => ({ type: "bar", name: subset, x: labels, y: labels.map((label) => count(subset, label)) })),
  { barmode: "group", title: { text: "Samples per class in each subset" }, yaxis: { title: { text: "samples" } } });
patientCheck(partition.leaking_patients);
document.getElementById("partition-facts").textContent = howItWasMade(partition);
