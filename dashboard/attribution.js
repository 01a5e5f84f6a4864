// One customer's attribution: its latest audit's coverage per product and its findings, paged.

import { api } from "./api.js";
import { $, el, labelCells, row } from "./dom.js";
import { percent, when } from "./format.js";

let findingsSkip = 0;

// A tile per product: attributed / not attributed / unknown (any other status).
function productTile(product, statuses) {
  const tile = el("li", null, "tile");
  tile.dataset.product = product;
  const attributed = statuses.attributed || 0;
  const missing = statuses["not-attributed"] || 0;
  const unknown = Object.entries(statuses)
    .filter(([status]) => status !== "attributed" && status !== "not-attributed")
    .reduce((sum, [, n]) => sum + n, 0);
  tile.append(el("strong", `${attributed} / ${missing} / ${unknown}`), el("span", product));
  return tile;
}

function findingRow(finding) {
  return row([
    finding.product, finding.name || finding.resourceId, el("span", finding.status, `badge status-${finding.status}`),
    (finding.attributedTo || []).join(", "), finding.remedy || "",
  ]);
}

function renderFindings(answer, more) {
  const body = $("findings").tBodies[0];
  answer.findings.forEach((finding) => body.appendChild(findingRow(finding)));
  if (!more && !answer.findings.length) {
    body.appendChild(row(["No finding.", "", "", "", ""]));
  }
  labelCells($("findings"));
  findingsSkip += answer.findings.length;
  $("more-findings").hidden = findingsSkip >= answer.total;
}

// more: the next page of findings, after those shown; else the first page, replacing all.
export async function loadAttribution(tenant, more) {
  findingsSkip = more ? findingsSkip : 0;
  const answer = await api(`customers/${encodeURIComponent(tenant)}/attribution?top=50&skip=${findingsSkip}`);
  const tiles = $("customer-coverage");
  if (!more) {
    $("findings").tBodies[0].replaceChildren();
    tiles.replaceChildren();
  }
  if (!answer.audited) {
    $("attribution-run").textContent = "No attribution audit is recorded for this customer yet.";
    $("more-findings").hidden = true;
    return;
  }
  const run = answer.run;
  $("attribution-run").textContent =
    `Audit ${run.runId}${run.endedAt ? `, ended ${when(run.endedAt)}` : ", still running"}: coverage ${percent(run.coverage)}.`;
  if (!more) {
    Object.entries(run.counts || {}).forEach(([product, statuses]) => tiles.appendChild(productTile(product, statuses)));
  }
  renderFindings(answer, more);
}
