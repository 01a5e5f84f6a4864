// One customer's live link state: each identity's link read from Azure now (nothing is written).

import { api } from "./api.js";
import { $, el, labelCells, row } from "./dom.js";
import { when } from "./format.js";

function liveRow(identity) {
  const azure = identity.azure.error
    ? `not read: ${identity.azure.error.reason}`
    : identity.azure.linked ? `linked to ${identity.azure.partnerId}` : "no link";
  const ledger = identity.ledger.linkedPartnerId
    ? `${identity.ledger.outcome}, ${identity.ledger.linkedPartnerId}` : identity.ledger.outcome;
  const step = identity.inStep ? el("span", "in step", "badge outcome-linked")
    : el("span", identity.difference || "differs", "badge outcome-failed");
  return row([identity.clientId, ledger, azure, step]);
}

export async function readLive(tenant) {
  const button = $("read-live");
  button.disabled = true;
  $("action-result").textContent = "Reading Azure...";
  try {
    const live = await api(`customers/${encodeURIComponent(tenant)}/live`);
    const body = $("live").tBodies[0];
    body.replaceChildren();
    live.identities.forEach((identity) => body.appendChild(liveRow(identity)));
    labelCells($("live"));
    $("live").hidden = false;
    $("action-result").textContent = `Azure read at ${when(live.readAt)}.`;
  } catch (error) {
    $("action-result").textContent = `Azure could not be read: ${error.message}`;
  } finally {
    button.disabled = false;
  }
}
