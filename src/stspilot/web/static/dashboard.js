// Progressive enhancement for the dashboard's server-rendered pygal charts: each bar gets a
// native hover title from the values pygal wrote next to it (no library, no network). The
// pages are complete without this script.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  for (const trigger of document.querySelectorAll("figure.chart .tooltip-trigger")) {
    const group = trigger.parentNode;
    const value = group.querySelector("desc.value");
    const label = group.querySelector("desc.x_label");
    const serie = group.closest(".series");
    const legend = serie ? serie.getAttribute("class").match(/serie-(\d+)/) : null;
    let name = "";
    if (legend) {
      const texts = trigger.ownerSVGElement.querySelectorAll(".legends .legend text");
      const t = texts[Number(legend[1])];
      name = t ? t.textContent : "";
    }
    const parts = [label ? label.textContent : "", name, value ? value.textContent : ""];
    const title = document.createElementNS("http://www.w3.org/2000/svg", "title");
    title.textContent = parts.filter(Boolean).join(" · ");
    trigger.appendChild(title);
  }
});

// Sortable tables (class "sortable"): a click on a column header sorts the rows shown, by the
// cells' data-sort values (numbers when the header says data-type="number"); a second click
// reverses. The header carries aria-sort, so the order is announced and testable.
document.addEventListener("DOMContentLoaded", () => {
  for (const table of document.querySelectorAll("table.sortable")) {
    const headers = Array.from(table.tHead.rows[0].cells);
    headers.forEach((th, index) => {
      if (th.hasAttribute("data-nosort")) return;
      const button = document.createElement("button");
      button.type = "button";
      button.className = "sort";
      while (th.firstChild) button.appendChild(th.firstChild);
      th.appendChild(button);
      button.addEventListener("click", () => {
        const ascending = th.getAttribute("aria-sort") !== "ascending";
        for (const other of headers) other.removeAttribute("aria-sort");
        th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
        const numeric = th.dataset.type === "number";
        const key = (row) => {
          const cell = row.cells[index];
          const raw = cell.dataset.sort !== undefined ? cell.dataset.sort : cell.textContent.trim();
          return numeric ? Number(raw) : raw.toLowerCase();
        };
        const body = table.tBodies[0];
        const rows = Array.from(body.rows);
        rows.sort((a, b) => {
          const x = key(a);
          const y = key(b);
          const order = x < y ? -1 : x > y ? 1 : 0;
          return ascending ? order : -order;
        });
        for (const row of rows) body.appendChild(row);
      });
    });
  }
});

// CSV export of what is shown: the table's rows in their current order, each cell's data-csv
// value (the plain figure) or its text. Cells that a spreadsheet would run as a formula
// (starting with = + - @) are prefixed with a quote (OWASP "CSV injection").
function csvField(value) {
  let text = String(value).replace(/\s+/g, " ").trim();
  if (/^[=+\-@\t\r]/.test(text) && !/^-?\d+(\.\d+)?$/.test(text)) text = "'" + text;
  return /[",\n]/.test(text) ? '"' + text.replace(/"/g, '""') + '"' : text;
}

document.addEventListener("DOMContentLoaded", () => {
  for (const button of document.querySelectorAll("button[data-table]")) {
    button.addEventListener("click", () => {
      const table = document.getElementById(button.dataset.table);
      if (!table) return;
      const headers = Array.from(table.tHead.rows[0].cells);
      const keep = headers.map((th) => !th.hasAttribute("data-nosort"));
      const lines = [headers.filter((_, i) => keep[i]).map((th) => csvField(th.textContent)).join(",")];
      for (const row of table.tBodies[0].rows) {
        const cells = Array.from(row.cells).filter((_, i) => keep[i]);
        lines.push(cells.map((c) => csvField(c.dataset.csv !== undefined ? c.dataset.csv : c.textContent)).join(","));
      }
      const blob = new Blob([lines.join("\r\n") + "\r\n"], { type: "text/csv;charset=utf-8" });
      const link = document.createElement("a");
      link.href = URL.createObjectURL(blob);
      link.download = button.dataset.filename || "export.csv";
      document.body.appendChild(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(link.href), 1000);
    });
  }
});
