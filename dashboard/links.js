// The fleet's links: searched by customer name (a prefix) or tenant ID and by outcome, as one types
// (debounced, the older request aborted), paged by the API's continuation token.

import { api } from "./api.js";
import { customerButton } from "./customer.js";
import { $, el, labelCells, outcomeBadge, row } from "./dom.js";
import { identityText, when } from "./format.js";
import { fail } from "./status.js";

const OUTCOMES = [
  "linked", "already-linked", "updated", "kept-other-partner", "reclaimed", "foreign-partner",
  "needs-customer-action", "partner-credential-broken", "needs-partner-action", "invalid-partner-id",
  "transient", "failed", "verified", "healed", "rejected", "unlinked",
];
const GUID = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;
let nextToken = null;
let searchTimer = null;
let searchAbort = null;

function linkQuery() {
  const query = new URLSearchParams({ top: "25" });
  const text = $("tenant").value.trim();
  const outcome = $("outcome").value;
  if (GUID.test(text)) {
    query.set("tenant", text);
  } else if (text) {
    query.set("name", text);
  }
  if (outcome) {
    query.set("outcome", outcome);
  }
  return query;
}

// The page of links asked for, or null when a newer search aborted this one.
async function fetchPage(query) {
  if (searchAbort) {
    searchAbort.abort(); // only the newest search's answer is shown
  }
  searchAbort = new AbortController();
  try {
    return await api(`links?${query}`, { signal: searchAbort.signal });
  } catch (error) {
    if (error.name === "AbortError") {
      return null;
    }
    throw error;
  }
}

function renderLinks(page, more) {
  const body = $("links").tBodies[0];
  if (!more) {
    body.replaceChildren();
  }
  page.items.forEach((link) => {
    body.appendChild(row([
      customerButton(link),
      identityText(link),
      outcomeBadge(link.outcome),
      when(link.lastCheckedAt),
    ]));
  });
  if (!more && !page.items.length) {
    body.appendChild(row(["No link matches.", "", "", ""]));
  }
  labelCells($("links"));
}

// more: the next page after those shown; else the first page, replacing them.
export async function loadLinks(more) {
  const query = linkQuery();
  if (more && nextToken) {
    query.set("continuationToken", nextToken);
  }
  const page = await fetchPage(query);
  if (!page) {
    return;
  }
  renderLinks(page, more);
  nextToken = page.continuationToken || null;
  $("next-page").hidden = !nextToken;
}

export function wireLinks() {
  OUTCOMES.forEach((outcome) => $("outcome").appendChild(el("option", outcome)));
  $("tenant").addEventListener("input", () => {
    // Search as one types, but at most one request per pause (debounced), the older one aborted.
    window.clearTimeout(searchTimer);
    searchTimer = window.setTimeout(() => { loadLinks(false).catch(fail); }, 350);
  });
  $("next-page").addEventListener("click", () => { loadLinks(true).catch(fail); });
  $("search").addEventListener("submit", (event) => {
    event.preventDefault();
    window.clearTimeout(searchTimer);
    loadLinks(false).catch(fail);
  });
}
