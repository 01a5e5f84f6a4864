// Building the page, text only: every value from the API goes in as textContent, never as HTML.

export const $ = (id) => document.getElementById(id);

export function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) {
    node.textContent = String(text);
  }
  if (className) {
    node.className = className;
  }
  return node;
}

// A table row: a Node is put in its cell as it is, anything else as text.
export function row(cells) {
  const tr = document.createElement("tr");
  cells.forEach((cell) => {
    const td = document.createElement("td");
    if (cell instanceof Node) {
      td.appendChild(cell);
    } else {
      td.textContent = cell === undefined || cell === null ? "" : String(cell);
    }
    tr.appendChild(td);
  });
  return tr;
}

export function labelCells(table) {
  // On a phone each row is a card: every cell shows its column's name (CSS, attr(data-label)).
  const names = Array.from(table.tHead.rows[0].cells).map((cell) => cell.textContent);
  Array.from(table.tBodies[0].rows).forEach((tr) => {
    Array.from(tr.cells).forEach((td, index) => td.setAttribute("data-label", names[index] || ""));
  });
}

export function outcomeBadge(outcome) {
  return el("span", outcome, `badge outcome-${outcome}`);
}

export function copyButton(text) {
  const button = el("button", "Copy", "copy");
  button.type = "button";
  button.setAttribute("aria-label", "Copy the sentence to send");
  button.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(text);
      button.textContent = "Copied";
    } catch (error) {
      button.textContent = "Copy failed";
    }
  });
  return button;
}
