// The PAL Autopilot dashboard: sign-in with Entra ID (OAuth 2.0 authorization code flow with PKCE,
// RFC 7636, against the authority's own endpoints; no library), then the fleet, one customer and
// the operator's actions (relink, audit now, offboard), read from /api/dashboard/data/. Charts are
// inline SVG built here from the JSON. No framework, no build step; every value from
// the API is put in the page as text (textContent), never as HTML.
"use strict";

(function () {
  const meta = (name) => document.querySelector(`meta[name="${name}"]`).getAttribute("content");
  const config = {
    authority: meta("pal-authority"),
    clientId: meta("pal-client-id"),
    scope: meta("pal-scope"),
  };
  const DATA = "dashboard/data";
  const OUTCOMES = [
    "linked", "already-linked", "updated", "kept-other-partner", "reclaimed", "foreign-partner",
    "needs-customer-action", "partner-credential-broken", "needs-partner-action", "invalid-partner-id",
    "transient", "failed", "verified", "healed", "rejected", "unlinked",
  ];
  const $ = (id) => document.getElementById(id);
  const session = window.sessionStorage;
  let me = null;
  let nextToken = null;
  let currentTenant = null;
  let pendingAction = null;
  let findingsSkip = 0;
  let searchTimer = null;
  let searchAbort = null;
  const SVG = "http://www.w3.org/2000/svg";
  const GUID = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;
  const GROUPS = [
    ["linked", ["linked", "already-linked", "verified", "healed", "updated", "reclaimed", "kept-other-partner"]],
    ["needs action", ["needs-customer-action", "needs-partner-action", "partner-credential-broken", "invalid-partner-id"]],
    ["failing", ["failed", "transient", "rejected", "foreign-partner"]],
    ["unlinked", ["unlinked", "retired"]],
  ];
  const ACTIONS = {
    relink: {
      title: "Relink this customer now?",
      ok: "Relink",
      text: (t) => `The recorded identity of ${t} is linked to our partner ID now, as you, and recorded in its history.`,
      path: "relink",
      done: (a) => `Relinked: ${a.outcome}${a.reason ? ` (${a.reason})` : ""}`,
    },
    audit: {
      title: "Audit this customer's attribution now?",
      ok: "Audit now",
      text: (t) => `An attribution audit of ${t} is queued now; your name is recorded in its history. The findings appear when it ends.`,
      path: "audit",
      done: (a) => `Audit queued: ${a.runId}`,
    },
    offboard: {
      title: "Offboard this customer?",
      ok: "Offboard",
      text: (t) => `The partner link of ${t} is removed now and no longer checked each night, as you, and recorded in its history. Relinking it later needs its identity again.`,
      path: "offboard",
      done: (a) => `Offboarded: ${a.outcome}${a.reason ? ` (${a.reason})` : ""}`,
    },
  };

  // ---- sign-in: authorization code with PKCE ---------------------------------------------------

  function base64url(bytes) {
    let text = "";
    bytes.forEach((b) => { text += String.fromCharCode(b); });
    return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function randomText() {
    return base64url(crypto.getRandomValues(new Uint8Array(32)));
  }

  function redirectUri() {
    return window.location.origin + window.location.pathname;
  }

  // silent: a top-level redirect with prompt=none (the strict CSP forbids a hidden frame), which the
  // authority answers with a code for the same session's user, or with login_required.
  async function signIn(silent = false) {
    const verifier = randomText();
    const challenge = base64url(new Uint8Array(
      await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier))));
    const state = randomText();
    const nonce = randomText();
    session.setItem("pal.pkce", JSON.stringify({ verifier, state, nonce }));
    const query = new URLSearchParams({
      client_id: config.clientId,
      response_type: "code",
      response_mode: "query",
      redirect_uri: redirectUri(),
      scope: config.scope,
      state,
      nonce,
      code_challenge: challenge,
      code_challenge_method: "S256",
    });
    const account = JSON.parse(session.getItem("pal.account") || "null");
    const hint = new URLSearchParams(window.location.search).get("login_hint") || (account && account.hint);
    if (hint) {
      query.set("login_hint", hint);
    }
    if (silent) {
      query.set("prompt", "none");
    }
    window.location.assign(`${config.authority}/oauth2/v2.0/authorize?${query}`);
  }

  class Renewing extends Error {}
  let renewing = false;

  // The access token expired (or the API refused it): sign the same account in again without a
  // page, once, keeping the view (the address's #customer=...) across the round trip.
  function renewSignIn() {
    if (renewing) {
      return true;  // already on its way (several calls found the token expired)
    }
    if (!session.getItem("pal.account") || session.getItem("pal.silent")) {
      return false;  // signed out, or the renewal just tried did not help: the person signs in
    }
    renewing = true;
    session.setItem("pal.silent", String(Date.now()));
    session.setItem("pal.view", window.location.hash || "");
    setStatus("Renewing your sign-in...");
    signIn(true).catch(fail);
    return true;
  }

  function claimsOf(jwt) {
    const part = jwt.split(".")[1] || "";
    const padded = part.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((part.length + 3) % 4);
    return JSON.parse(atob(padded));
  }

  async function redeem(params) {
    const pending = JSON.parse(session.getItem("pal.pkce") || "null");
    session.removeItem("pal.pkce");
    window.history.replaceState(null, "", redirectUri());
    if (!pending || params.get("state") !== pending.state) {
      throw new Error("the sign-in answer does not match the request (state); sign in again");
    }
    const form = new URLSearchParams({
      client_id: config.clientId,
      grant_type: "authorization_code",
      code: params.get("code"),
      redirect_uri: redirectUri(),
      code_verifier: pending.verifier,
      scope: config.scope,
    });
    const response = await fetch(`${config.authority}/oauth2/v2.0/token`, {
      method: "POST",
      body: form,
      credentials: "omit",
    });
    const answer = await response.json();
    if (!response.ok) {
      throw new Error(`sign-in failed: ${answer.error || response.status}`);
    }
    const identity = answer.id_token ? claimsOf(answer.id_token) : {};
    if (answer.id_token && identity.nonce !== pending.nonce) {
      throw new Error("the ID token does not carry this sign-in's nonce; sign in again");
    }
    // Renewed a little before it expires (a minute, or a fifth of a short lifetime).
    const lifetime = Number(answer.expires_in);
    const expiresAt = Date.now() + (lifetime - Math.min(60, Math.floor(lifetime / 5))) * 1000;
    session.setItem("pal.token", JSON.stringify({ accessToken: answer.access_token, expiresAt }));
    const hint = identity.login_hint || identity.preferred_username;
    session.setItem("pal.account", JSON.stringify({ hint: hint || null }));
    const view = session.getItem("pal.view");
    session.removeItem("pal.view");
    if (view && /^#customer=[0-9a-fA-F-]{36}$/.test(view)) {
      window.history.replaceState(null, "", redirectUri() + view);
    }
  }

  function accessToken() {
    const stored = JSON.parse(session.getItem("pal.token") || "null");
    if (!stored || stored.expiresAt <= Date.now()) {
      session.removeItem("pal.token");
      return null;
    }
    return stored.accessToken;
  }

  function signOut() {
    session.removeItem("pal.token");
    session.removeItem("pal.account");
    me = null;
    showSignedOut("Signed out.");
  }

  // ---- the data API ----------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, detail) {
      super(detail);
      this.status = status;
    }
  }

  async function api(path, options = {}) {
    const token = accessToken();
    if (!token) {
      if (renewSignIn()) {
        throw new Renewing("renewing the sign-in");
      }
      throw new ApiError(401, "sign in first");
    }
    const response = await fetch(`${DATA}/${path}`, {
      ...options,
      signal: options.signal,
      headers: { Authorization: `Bearer ${token}`, Accept: "application/json" },
      credentials: "omit",
    });
    const text = await response.text();
    const body = text ? JSON.parse(text) : null;
    if (!response.ok) {
      if (response.status === 401) {
        session.removeItem("pal.token");
        if (renewSignIn()) {
          throw new Renewing("renewing the sign-in");
        }
      }
      throw new ApiError(response.status, (body && body.detail) || `HTTP ${response.status}`);
    }
    session.removeItem("pal.silent");  // signed in and answered: a later expiry may renew again
    return body;
  }

  // ---- building the page (text only) -----------------------------------------------------------

  function el(tag, text, className) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) {
      node.textContent = String(text);
    }
    if (className) {
      node.className = className;
    }
    return node;
  }

  function row(cells) {
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

  function when(iso) {
    // "2026-05-01T09:00:00.123+00:00" -> "2026-05-01 09:00 UTC" (the API's times are UTC)
    const match = /^(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2})/.exec(iso || "");
    return match ? `${match[1]} ${match[2]} UTC` : iso || "";
  }

  function labelCells(table) {
    // On a phone each row is a card: every cell shows its column's name (CSS, attr(data-label)).
    const names = Array.from(table.tHead.rows[0].cells).map((cell) => cell.textContent);
    Array.from(table.tBodies[0].rows).forEach((tr) => {
      Array.from(tr.cells).forEach((td, index) => td.setAttribute("data-label", names[index] || ""));
    });
  }

  function outcomeBadge(outcome) {
    return el("span", outcome, `badge outcome-${outcome}`);
  }

  function customerButton(link) {
    const button = el("button", link.customerName || link.customerTenantId, "linkish");
    button.type = "button";
    button.dataset.tenant = link.customerTenantId;
    button.title = link.customerTenantId;
    button.addEventListener("click", () => openCustomer(link.customerTenantId));
    return button;
  }

  function copyButton(text) {
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

  function setStatus(text) {
    $("status").textContent = text || "";
  }

  function showSignedOut(text) {
    $("fleet").hidden = true;
    $("customer").hidden = true;
    $("who").textContent = "";
    $("sign-in").hidden = false;
    $("sign-out").hidden = true;
    setStatus(text || "Sign in with your work account to see the fleet.");
  }

  function fail(error) {
    if (error instanceof Renewing) {
      return;  // the page is on its way to the authority and back
    }
    if (error instanceof ApiError && error.status === 401) {
      showSignedOut(`Your sign-in is no longer valid (${error.message}). Sign in again.`);
      return;
    }
    setStatus(`Something went wrong: ${error.message}`);
  }

  // ---- the fleet -------------------------------------------------------------------------------

  async function loadFleet() {
    const [summary, needing, trends, attribution] = await Promise.all([
      api("summary"),
      api("links?outcome=needs-customer-action&top=50"),
      api("trends"),
      api("attribution"),
    ]);
    renderTrend(trends);
    renderChanges(trends);
    renderAttributionFleet(attribution);
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
    await loadLinks(false);
  }

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

  async function loadLinks(more) {
    const query = linkQuery();
    if (more && nextToken) {
      query.set("continuationToken", nextToken);
    }
    if (searchAbort) {
      searchAbort.abort(); // only the newest search's answer is shown
    }
    searchAbort = new AbortController();
    let page;
    try {
      page = await api(`links?${query}`, { signal: searchAbort.signal });
    } catch (error) {
      if (error.name === "AbortError") {
        return;
      }
      throw error;
    }
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
    nextToken = page.continuationToken || null;
    $("next-page").hidden = !nextToken;
  }

  // ---- one customer ----------------------------------------------------------------------------

  async function openCustomer(tenant) {
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

  function renderCustomer(customer) {
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
    const history = $("history").tBodies[0];
    history.replaceChildren();
    const events = customer.history.concat(customer.actions || []);
    events.sort((a, b) => (String(b.time) > String(a.time) ? 1 : String(b.time) < String(a.time) ? -1 : 0));
    events.forEach((event) => {
      history.appendChild(row([when(event.time), event.source, outcomeBadge(event.outcome), event.actor || "", event.reason]));
    });
    labelCells($("customer-links"));
    labelCells($("history"));
    const coverage = $("coverage");
    coverage.replaceChildren();
    ((customer.coverage && customer.coverage.identities) || []).forEach((identity) => {
      const item = el("li", null);
      const gaps = (identity.gaps || []).map((gap) => `${when(gap.from)} to ${when(gap.to)}: ${gap.reason}`);
      const throughout = identity.linkedThroughout ? "linked throughout" : `gaps: ${gaps.join("; ") || "none"}`;
      item.textContent = `${identity.clientId}: ${throughout}`;
      coverage.appendChild(item);
    });
    const canAct = Boolean(me && me.canAct);
    Object.keys(ACTIONS).forEach((name) => {
      $(name).hidden = !canAct;
      $(name).disabled = !canAct;
    });
    $("relink-note").hidden = canAct;
    $("live").hidden = true;
    $("live").tBodies[0].replaceChildren();
  }

  function confirmAction(name) {
    const action = ACTIONS[name];
    pendingAction = name;
    $("confirm-title").textContent = action.title;
    $("confirm-ok").textContent = action.ok;
    $("confirm-ok").className = name === "offboard" ? "danger" : "act";
    $("confirm-text").textContent = action.text(currentTenant);
    const dialog = $("confirm");
    dialog.returnValue = "";
    dialog.showModal();
  }

  async function actionConfirmed(name) {
    const action = ACTIONS[name];
    const tenant = currentTenant;
    $(name).disabled = true;
    $("action-result").textContent = `${action.ok}...`;
    let result;
    try {
      const answer = await api(`customers/${encodeURIComponent(tenant)}/${action.path}`, { method: "POST" });
      result = action.done(answer);
    } catch (error) {
      result = `${action.ok} refused: ${error.message}`;
    }
    await openCustomer(tenant); // the history now shows the action; then the result is announced
    $("action-result").textContent = result;
    $(name).focus();
  }

  // ---- one customer: live state and attribution ------------------------------------------------

  function identityText(link, long) {
    if (link.identityType === "user") {
      return link.userPrincipalName || link.objectId || link.clientId || "";
    }
    return long ? link.clientId : `${link.identityType || ""} ${link.clientId || ""}`.trim();
  }

  async function readLive() {
    const tenant = currentTenant;
    const button = $("read-live");
    button.disabled = true;
    $("action-result").textContent = "Reading Azure...";
    try {
      const live = await api(`customers/${encodeURIComponent(tenant)}/live`);
      const body = $("live").tBodies[0];
      body.replaceChildren();
      live.identities.forEach((identity) => {
        const azure = identity.azure.error
          ? `not read: ${identity.azure.error.reason}`
          : identity.azure.linked ? `linked to ${identity.azure.partnerId}` : "no link";
        const ledger = identity.ledger.linkedPartnerId
          ? `${identity.ledger.outcome}, ${identity.ledger.linkedPartnerId}` : identity.ledger.outcome;
        const step = identity.inStep ? el("span", "in step", "badge outcome-linked")
          : el("span", identity.difference || "differs", "badge outcome-failed");
        body.appendChild(row([identity.clientId, ledger, azure, step]));
      });
      labelCells($("live"));
      $("live").hidden = false;
      $("action-result").textContent = `Azure read at ${when(live.readAt)}.`;
    } catch (error) {
      $("action-result").textContent = `Azure could not be read: ${error.message}`;
    } finally {
      button.disabled = false;
    }
  }

  function percent(value) {
    return value === null || value === undefined ? "unknown" : `${Math.round(value * 1000) / 10}%`;
  }

  async function loadAttribution(tenant, more) {
    findingsSkip = more ? findingsSkip : 0;
    const answer = await api(`customers/${encodeURIComponent(tenant)}/attribution?top=50&skip=${findingsSkip}`);
    const body = $("findings").tBodies[0];
    const tiles = $("customer-coverage");
    if (!more) {
      body.replaceChildren();
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
      Object.entries(run.counts || {}).forEach(([product, statuses]) => {
        const tile = el("li", null, "tile");
        tile.dataset.product = product;
        const attributed = statuses.attributed || 0;
        const missing = statuses["not-attributed"] || 0;
        const unknown = Object.entries(statuses)
          .filter(([status]) => status !== "attributed" && status !== "not-attributed")
          .reduce((sum, [, n]) => sum + n, 0);
        tile.append(el("strong", `${attributed} / ${missing} / ${unknown}`), el("span", product));
        tiles.appendChild(tile);
      });
    }
    answer.findings.forEach((finding) => {
      body.appendChild(row([
        finding.product, finding.name || finding.resourceId, el("span", finding.status, `badge status-${finding.status}`),
        (finding.attributedTo || []).join(", "), finding.remedy || "",
      ]));
    });
    if (!more && !answer.findings.length) {
      body.appendChild(row(["No finding.", "", "", "", ""]));
    }
    labelCells($("findings"));
    findingsSkip += answer.findings.length;
    $("more-findings").hidden = findingsSkip >= answer.total;
  }

  // ---- the fleet's trend, changes and attribution ------------------------------------------------

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

  function renderTrend(trends) {
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
    const width = 600;
    const height = 180;
    const top = Math.max(1, ...runs.map((run) => groupCounts(run.counts).reduce((a, b) => a + b, 0)));
    const slot = width / runs.length;
    const barWidth = Math.max(2, Math.min(40, slot * 0.7));
    runs.forEach((run, index) => {
      let y = height;
      const parts = groupCounts(run.counts);
      const bar = svg("g", { class: "run", "data-run": run.runId });
      bar.appendChild(svg("title", {}, `${run.runId}: ${GROUPS.map(([name], i) => `${name} ${parts[i]}`).join(", ")}`));
      parts.forEach((count, group) => {
        if (!count) {
          return;
        }
        const h = (count / top) * (height - 10);
        y -= h;
        bar.appendChild(svg("rect", {
          x: index * slot + (slot - barWidth) / 2, y, width: barWidth, height: h, class: `group-${group}`,
        }));
      });
      chart.appendChild(bar);
    });
    const last = runs[runs.length - 1];
    const lastParts = groupCounts(last.counts);
    $("trend-text").textContent =
      `${runs.length} nightly run(s), ${runs[0].runId} to ${last.runId}; the latest: ` +
      GROUPS.map(([name], i) => `${name} ${lastParts[i]}`).join(", ") + ".";
    GROUPS.forEach(([name], group) => {
      const item = el("li", null);
      item.append(el("span", null, `swatch group-${group}`), document.createTextNode(name));
      legend.appendChild(item);
    });
  }

  function renderChanges(trends) {
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

  function renderAttributionFleet(fleet) {
    const body = $("attribution-fleet").tBodies[0];
    body.replaceChildren();
    fleet.customers.forEach((customer) => {
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
      body.appendChild(tr);
    });
    if (!fleet.customers.length) {
      body.appendChild(row(["No customer is audited yet.", "", "", ""]));
    }
    $("attribution-hint").dataset.dropped = String(fleet.dropped);
    labelCells($("attribution-fleet"));
  }

  function backToFleet() {
    currentTenant = null;
    if (window.location.hash) {
      window.history.pushState(null, "", redirectUri());
    }
    $("customer").hidden = true;
    $("fleet").hidden = false;
  }

  // ---- start -----------------------------------------------------------------------------------

  async function start() {
    OUTCOMES.forEach((outcome) => $("outcome").appendChild(el("option", outcome)));
    $("sign-in").addEventListener("click", () => { signIn().catch(fail); });
    $("sign-out").addEventListener("click", signOut);
    $("back").addEventListener("click", backToFleet);
    Object.keys(ACTIONS).forEach((name) => $(name).addEventListener("click", () => confirmAction(name)));
    $("confirm").addEventListener("close", () => {
      const name = pendingAction;
      pendingAction = null;
      if ($("confirm").returnValue === "confirm") {
        actionConfirmed(name);
      } else {
        $(name).focus();
      }
    });
    $("read-live").addEventListener("click", () => { readLive(); });
    $("more-findings").addEventListener("click", () => { loadAttribution(currentTenant, true).catch(fail); });
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
    window.addEventListener("popstate", () => {
      const match = /^#customer=([0-9a-fA-F-]{36})$/.exec(window.location.hash);
      if (match) {
        openCustomer(match[1]);
      } else {
        backToFleet();
      }
    });

    const params = new URLSearchParams(window.location.search);
    try {
      if (params.get("error")) {
        window.history.replaceState(null, "", redirectUri());
        const silent = session.getItem("pal.silent");
        session.removeItem("pal.silent");
        session.removeItem("pal.view");
        if (silent && ["login_required", "interaction_required"].includes(params.get("error"))) {
          session.removeItem("pal.account");
          throw new Error("Your sign-in has expired. Sign in again.");
        }
        throw new Error(`sign-in failed: ${params.get("error_description") || params.get("error")}`);
      }
      if (params.get("code")) {
        setStatus("Signing in...");
        await redeem(params);
      }
    } catch (error) {
      showSignedOut(error.message);
      return;
    }
    if (!accessToken()) {
      if (!renewSignIn()) {
        showSignedOut();
      }
      return;
    }
    try {
      me = await api("me");
    } catch (error) {
      if (error instanceof ApiError && error.status === 403) {
        showSignedOut(`Signed in, but not allowed: ${error.message}`);
        $("sign-out").hidden = false;
        return;
      }
      fail(error);
      return;
    }
    $("who").textContent = `${me.name} (${me.canAct ? "operator" : "reader"})`;
    $("who").dataset.role = me.canAct ? "operator" : "reader";
    $("sign-in").hidden = true;
    $("sign-out").hidden = false;
    $("fleet").hidden = false;
    setStatus("Loading the fleet...");
    try {
      await loadFleet();
      setStatus("");
      document.body.dataset.ready = "fleet";
      const match = /^#customer=([0-9a-fA-F-]{36})$/.exec(window.location.hash);
      if (match) {
        await openCustomer(match[1]);
      }
    } catch (error) {
      fail(error);
    }
  }

  document.addEventListener("DOMContentLoaded", () => { start(); });
}());
