/* A partition: samples per class in each subset (a table and a chart), how it was made,
   and whether any patient is in two subsets (or that it could not be checked: no patient IDs). */
import { api } from "../api.js";
import { drawChart } from "../charts.js";
import { el } from "../dom.js";
import "../delete.js"; // sets up the page's Delete control (templates/frontend/_delete.html), if it has one

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

function sampleCount(partition) {
  return SUBSETS.reduce((sum, subset) => sum + Object.values(partition.counts[subset] || {}).reduce((a, n) => a + n, 0), 0);
}

/* A tick only where patients were known and none is in two subsets: without patient IDs nothing could be
   checked, and the test figures may be optimistic. */
function patientCheck(partition) {
  const leaks = Object.entries(partition.leaking_patients);
  const check = document.getElementById("leakage");
  const without = partition.samples_without_patient;
  if (leaks.length) {
    check.className = "error";
    check.replaceChildren(el("span", { text: `${leaks.length} patients are in more than one subset: ` }),
      ...leaks.slice(0, 50).map(([patient, found]) => el("code", { text: `${patient} (${found.join(", ")}) ` })));
  } else if (without && without === sampleCount(partition)) {
    check.className = "warning";
    check.textContent = "Split by image: no sample has a patient ID, so no patient could be kept whole or checked. " +
      "Images of one patient may be in both training and test, so the test figures may be optimistic.";
  } else if (without) {
    check.className = "warning";
    check.textContent = `No patient with an ID is in two subsets, but ${without} of ${sampleCount(partition)} samples have no patient ID ` +
      "and were split image by image: images of one of their patients may be in both training and test, so the test figures may be optimistic.";
  } else {
    check.className = "ok";
    check.textContent = "No patient in two subsets.";
  }
}

/* "6 patients: 4/1/1 (train/validation/test)", or "" when none is known. */
function patientSpread(partition) {
  const counts = SUBSETS.map((subset) => (partition.patients || {})[subset] || 0);
  const known = counts.reduce((a, n) => a + n, 0);
  return known ? ` · patients per subset ${counts.join("/")}` : "";
}

function howItWasMade(partition) {
  const byImage = partition.samples_without_patient && partition.samples_without_patient === sampleCount(partition);
  const how = {
    percentages: `${partition.train_percent}/${partition.validation_percent}/${partition.test_percent} %, stratified by label, ` +
      (byImage ? "split by image (no patient IDs)" : "patients kept whole"),
    kfold: `fold ${partition.fold} of ${partition.folds} (validation), the other folds train`,
    column: `from the table column '${partition.column}'`,
  };
  return `${how[partition.method]}${partition.method === "column" ? "" : ` · seed ${partition.seed}`}${patientSpread(partition)}`;
}

const partition = await api("GET", `/api/partitions/${document.getElementById("partition-root").dataset.partition}/`);
const labels = [...new Set(SUBSETS.flatMap((subset) => Object.keys(partition.counts[subset] || {})))].sort();
const count = (subset, label) => (partition.counts[subset] || {})[label] || 0;
countsTable(labels, count);
drawChart("partition-chart", SUBSETS.map((subset) => ({ type: "bar", name: subset, x: labels, y: labels.map((label) => count(subset, label)) })),
  { barmode: "group", title: { text: "Samples per class in each subset" }, yaxis: { title: { text: "samples" } } });
patientCheck(partition);
document.getElementById("partition-facts").textContent = howItWasMade(partition);
