// The fleet's trend over the nightly runs: a stacked bar per run, inline SVG built here from the
// JSON (nothing fetched; the namespace below only names the kind of element).

import { $, el } from "./dom.js";

const SVG = "http://www.w3.org/2000/svg";
const WIDTH = 600;
const HEIGHT = 180;
const GROUPS = [
  ["linked", ["linked", "already-linked", "verified", "healed", "updated", "reclaimed", "kept-other-partner"]],
  ["needs action", ["needs-customer-action", "needs-partner-action", "partner-credential-broken", "invalid-partner-id"]],
  ["failing", ["failed", "transient", "rejected", "foreign-partner"]],
  ["unlinked", ["unlinked", "retired"]],
];

function svg(tag, attributes, text) {
  const node = document.createElementNS(SVG, tag);
  Object.entries(attributes).forEach(([name, value]) => node.setAttribute(name, String(value)));
  if (text !== undefined) {
    node.textContent = text;
  }
  return node;
}

function groupCounts(counts) {
  return GROUPS.map(([, kinds]) => kinds.reduce((sum, kind) => sum + (counts[kind] || 0), 0));
}

function groupText(parts) {
  return GROUPS.map(([name], i) => `${name} ${parts[i]}`).join(", ");
}

// One run's bar: its groups stacked from the bottom, scaled to the tallest run (top).
function runBar(run, index, slot, barWidth, top) {
  let y = HEIGHT;
  const parts = groupCounts(run.counts);
  const bar = svg("g", { class: "run", "data-run": run.runId });
  bar.appendChild(svg("title", {}, `${run.runId}: ${groupText(parts)}`));
  parts.forEach((count, group) => {
    if (!count) {
      return;
    }
    const h = (count / top) * (HEIGHT - 10);
    y -= h;
    bar.appendChild(svg("rect", {
      x: index * slot + (slot - barWidth) / 2, y, width: barWidth, height: h, class: `group-${group}`,
    }));
  });
  return bar;
}

function renderLegend(legend) {
  GROUPS.forEach(([name], group) => {
    const item = el("li", null);
    item.append(el("span", null, `swatch group-${group}`), document.createTextNode(name));
    legend.appendChild(item);
  });
}

export function renderTrend(trends) {
  const chart = $("trend");
  chart.replaceChildren();
  const legend = $("trend-legend");
  legend.replaceChildren();
  const runs = trends.runs || [];
  if (!runs.length) {
    $("trend-text").textContent = "No nightly run is recorded yet.";
    chart.hidden = true;
    return;
  }
  chart.hidden = false;
  const top = Math.max(1, ...runs.map((run) => groupCounts(run.counts).reduce((a, b) => a + b, 0)));
  const slot = WIDTH / runs.length;
  const barWidth = Math.max(2, Math.min(40, slot * 0.7));
  runs.forEach((run, index) => chart.appendChild(runBar(run, index, slot, barWidth, top)));
  const last = runs[runs.length - 1];
  $("trend-text").textContent =
    `${runs.length} nightly run(s), ${runs[0].runId} to ${last.runId}; the latest: ` +
    groupText(groupCounts(last.counts)) + ".";
  renderLegend(legend);
}
