// The fleet: links by outcome now, the trend over the nightly runs, what changed since last night,
// the customers needing action, attribution coverage per customer, then the links' search.

import { api } from "./api.js";
import { renderTrend } from "./charts.js";
import { customerButton } from "./customer.js";
import { $, copyButton, el, labelCells, outcomeBadge, row } from "./dom.js";
import { percent } from "./format.js";
import { loadLinks } from "./links.js";

function renderOutcomes(summary) {
  const tiles = $("outcomes");
  tiles.replaceChildren();
  const total = el("li", null, "tile");
  total.append(el("strong", summary.total), el("span", "links"));
  tiles.appendChild(total);
  Object.entries(summary.byOutcome).forEach(([outcome, count]) => {
    const tile = el("li", null, `tile outcome-${outcome}`);
    tile.dataset.outcome = outcome;
    tile.append(el("strong", count), el("span", outcome));
    tiles.appendChild(tile);
  });
}

function renderNeedsAction(needing) {
  const body = $("needs-action").tBodies[0];
  body.replaceChildren();
  needing.items.forEach((link) => {
    const sentence = link.remediation || link.reason || "";
    body.appendChild(row([customerButton(link), outcomeBadge(link.outcome), sentence, copyButton(sentence)]));
  });
  if (!needing.items.length) {
    body.appendChild(row(["No customer needs action.", "", "", ""]));
  }
  labelCells($("needs-action"));
}

// How each outcome's count moved in the latest nightly run.
function renderDeltas(trends) {
  const deltas = $("differences");
  deltas.replaceChildren();
  const entries = Object.entries(trends.differences || {});
  if (!trends.latestRunId) {
    deltas.appendChild(el("li", "No finished nightly run yet.", "tile"));
  } else if (!entries.length) {
    deltas.appendChild(el("li", `No count moved in ${trends.latestRunId}.`, "tile"));
  }
  entries.forEach(([outcome, delta]) => {
    const tile = el("li", null, `tile outcome-${outcome}`);
    tile.dataset.outcome = outcome;
    tile.append(el("strong", delta > 0 ? `+${delta}` : String(delta)), el("span", outcome));
    deltas.appendChild(tile);
  });
}

// The customers whose outcome changed in the latest nightly run.
function renderChanged(trends) {
  const body = $("changed").tBodies[0];
  body.replaceChildren();
  (trends.changed || []).forEach((change) => {
    body.appendChild(row([
      customerButton(change), change.previousOutcome ? outcomeBadge(change.previousOutcome) : "",
      outcomeBadge(change.outcome), change.reason || "",
    ]));
  });
  if (trends.moreChanged) {
    body.appendChild(row(["More customers changed than shown here: search by outcome below.", "", "", ""]));
  }
  if (trends.latestRunId && !(trends.changed || []).length) {
    body.appendChild(row(["No customer changed in the latest run.", "", "", ""]));
  }
  labelCells($("changed"));
}

function attributionRow(customer) {
  const products = Object.entries(customer.byProduct).map(([product, n]) =>
    `${product} ${n.attributed}/${n.notAttributed}/${n.unknown}`).join("; ");
  const tr = row([
    customerButton(customer), percent(customer.coverage),
    customer.dropped ? `dropped from ${percent(customer.previousCoverage)}` : percent(customer.previousCoverage),
    products,
  ]);
  if (customer.dropped) {
    tr.className = "dropped";
  }
  return tr;
}

function renderAttributionFleet(fleet) {
  const body = $("attribution-fleet").tBodies[0];
  body.replaceChildren();
  fleet.customers.forEach((customer) => body.appendChild(attributionRow(customer)));
  if (!fleet.customers.length) {
    body.appendChild(row(["No customer is audited yet.", "", "", ""]));
  }
  $("attribution-hint").dataset.dropped = String(fleet.dropped);
  labelCells($("attribution-fleet"));
}

export async function loadFleet() {
  const [summary, needing, trends, attribution] = await Promise.all([
    api("summary"),
    api("links?outcome=needs-customer-action&top=50"),
    api("trends"),
    api("attribution"),
  ]);
  renderTrend(trends);
  renderDeltas(trends);
  renderChanged(trends);
  renderAttributionFleet(attribution);
  renderOutcomes(summary);
  renderNeedsAction(needing);
  await loadLinks(false);
}
