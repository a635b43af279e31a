/* Tables sorted by their column headers: `<table data-sortable>`, drawn by the server (so the table reads the same
   without scripts), gets a button in each header cell; a click (or Enter or Space, the button being focusable)
   sorts the rows by that column, a second click reverses the order, and the header says which way (aria-sort).
   A cell sorts by its data-sort attribute where it has one (0.981 for "98.1%"), else by its text; numbers sort as
   numbers, words by their letters (numbers inside them in order: "run 2" before "run 10"); empty cells go last
   either way, and equal ones keep their order. A header with data-sort="none" (or no text) is left as it is. */

const DIRECTIONS = { ascending: 1, descending: -1 };

/* Makes every `table[data-sortable]` under root sortable (once each). */
export function sortableTables(root = document) {
  for (const table of root.querySelectorAll("table[data-sortable]")) makeSortable(table);
}

export function makeSortable(table) {
  if (table.dataset.sortableReady) return;
  table.dataset.sortableReady = "yes";
  const headers = [...table.querySelectorAll("thead tr:last-child th")];
  headers.forEach((header, column) => {
    if (header.dataset.sort === "none" || !header.textContent.trim()) return;
    const button = document.createElement("button");
    button.type = "button";
    button.className = "sort-button";
    button.append(...header.childNodes);
    header.append(button);
    button.addEventListener("click", () => {
      const direction = header.getAttribute("aria-sort") === "ascending" ? "descending" : "ascending";
      sortRows(table, column, direction);
      for (const other of headers) other.removeAttribute("aria-sort");
      header.setAttribute("aria-sort", direction);
    });
  });
}

/* The rows of the table's body in the order of `column`, ascending or descending. */
export function sortRows(table, column, direction = "ascending") {
  const body = table.tBodies[0];
  if (!body) return;
  const sign = DIRECTIONS[direction];
  const rows = [...body.rows];
  if (rows.some((row) => row.cells.length === 1 && row.cells[0].colSpan > 1)) return; // "Nothing yet." rows
  const keyed = rows.map((row) => ({ row, key: sortKey(row.cells[column]) }));
  keyed.sort((a, b) => {
    if (a.key === null || b.key === null) return (a.key === null) - (b.key === null); // empty: last either way
    return sign * compareKeys(a.key, b.key);
  });
  body.append(...keyed.map(({ row }) => row));
}

/* A number where the cell holds one, the text otherwise; null where it holds nothing ("–" too). */
function sortKey(cell) {
  if (!cell) return null;
  const raw = (cell.dataset.sort ?? cell.textContent).trim();
  if (raw === "" || raw === "–" || raw === "-") return null;
  const number = Number(raw);
  return Number.isFinite(number) ? number : raw;
}

function compareKeys(a, b) {
  const numbers = typeof a === "number", otherNumber = typeof b === "number";
  if (numbers && otherNumber) return a - b;
  if (numbers !== otherNumber) return numbers ? -1 : 1; // numbers before words
  return a.localeCompare(b, undefined, { numeric: true, sensitivity: "base" });
}
