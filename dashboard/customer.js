// One customer: its identities, history and coverage, its live state and attribution, and the
// way there (a customer's button, the address's #customer=...) and back to the fleet.

import { api } from "./api.js";
import { loadAttribution } from "./attribution.js";
import { $, el, labelCells, outcomeBadge, row } from "./dom.js";
import { identityText, when } from "./format.js";
import { readLive } from "./live.js";
import { redirectUri, signedIn } from "./signin.js";
import { fail, setStatus } from "./status.js";

let currentTenant = null;

/** The tenant of the customer shown (or being opened), else null. */
export function shownTenant() {
  return currentTenant;
}

export async function openCustomer(tenant) {
  currentTenant = tenant;
  if (window.location.hash !== `#customer=${tenant}`) {
    window.history.pushState(null, "", `#customer=${tenant}`);
  }
  setStatus("Loading the customer...");
  $("action-result").textContent = "";
  try {
    const customer = await api(`customers/${encodeURIComponent(tenant)}`);
    renderCustomer(customer);
    await loadAttribution(tenant, false);
    $("fleet").hidden = true;
    $("customer").hidden = false;
    setStatus("");
    $("customer-title").focus();
  } catch (error) {
    fail(error);
  }
}

export function customerButton(link) {
  const button = el("button", link.customerName || link.customerTenantId, "linkish");
  button.type = "button";
  button.dataset.tenant = link.customerTenantId;
  button.title = link.customerTenantId;
  button.addEventListener("click", () => openCustomer(link.customerTenantId));
  return button;
}

export function backToFleet() {
  currentTenant = null;
  if (window.location.hash) {
    window.history.pushState(null, "", redirectUri());
  }
  $("customer").hidden = true;
  $("fleet").hidden = false;
}

function renderIdentities(customer) {
  const name = (customer.links.find((link) => link.customerName) || {}).customerName;
  $("customer-title").textContent = name ? `${name} (${customer.customerTenantId})` : customer.customerTenantId;
  $("customer-title").tabIndex = -1;
  const links = $("customer-links").tBodies[0];
  links.replaceChildren();
  customer.links.forEach((link) => {
    links.appendChild(row([
      identityText(link, true), link.identityType, outcomeBadge(link.outcome), link.linkedPartnerId || link.partnerId,
      link.earning || "", link.remediation || link.earningRemediation || "",
    ]));
  });
  labelCells($("customer-links"));
}

// The link's history and the operators' actions, newest first.
function renderHistory(customer) {
  const history = $("history").tBodies[0];
  history.replaceChildren();
  const events = customer.history.concat(customer.actions || []);
  events.sort((a, b) => (String(b.time) > String(a.time) ? 1 : String(b.time) < String(a.time) ? -1 : 0));
  events.forEach((event) => {
    history.appendChild(row([when(event.time), event.source, outcomeBadge(event.outcome), event.actor || "", event.reason]));
  });
  labelCells($("history"));
}

function renderCoverage(customer) {
  const coverage = $("coverage");
  coverage.replaceChildren();
  ((customer.coverage && customer.coverage.identities) || []).forEach((identity) => {
    const item = el("li", null);
    const gaps = (identity.gaps || []).map((gap) => `${when(gap.from)} to ${when(gap.to)}: ${gap.reason}`);
    const throughout = identity.linkedThroughout ? "linked throughout" : `gaps: ${gaps.join("; ") || "none"}`;
    item.textContent = `${identity.clientId}: ${throughout}`;
    coverage.appendChild(item);
  });
}

// The action buttons (data-action: relink, audit, offboard) only for an operator.
function showActions() {
  const me = signedIn();
  const canAct = Boolean(me && me.canAct);
  document.querySelectorAll("#customer [data-action]").forEach((button) => {
    button.hidden = !canAct;
    button.disabled = !canAct;
  });
  $("relink-note").hidden = canAct;
}

function renderCustomer(customer) {
  renderIdentities(customer);
  renderHistory(customer);
  renderCoverage(customer);
  showActions();
  $("live").hidden = true;
  $("live").tBodies[0].replaceChildren();
}

export function wireCustomer() {
  $("back").addEventListener("click", backToFleet);
  $("read-live").addEventListener("click", () => { readLive(currentTenant); });
  $("more-findings").addEventListener("click", () => { loadAttribution(currentTenant, true).catch(fail); });
}
