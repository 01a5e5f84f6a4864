// The PAL Autopilot dashboard: sign-in with Entra ID (signin.js), then the fleet (fleet.js,
// charts.js, links.js), one customer (customer.js, live.js, attribution.js) and the operator's
// actions (actions.js), read from /api/dashboard/data/ (api.js). Native ES modules, no framework,
// no build step; every value from the API is put in the page as text (textContent), never as HTML.
// This module starts the page and follows the address (#customer=<tenant ID>).

import { wireActions } from "./actions.js";
import { api } from "./api.js";
import { backToFleet, openCustomer, wireCustomer } from "./customer.js";
import { $ } from "./dom.js";
import { ApiError } from "./errors.js";
import { loadFleet } from "./fleet.js";
import { wireLinks } from "./links.js";
import { accessToken, finishSignIn, renewSignIn, setSignedIn, signIn, signOut } from "./signin.js";
import { fail, setStatus, showSignedOut } from "./status.js";

const CUSTOMER_VIEW = /^#customer=([0-9a-fA-F-]{36})$/;

function wire() {
  wireLinks();
  $("sign-in").addEventListener("click", () => { signIn().catch(fail); });
  $("sign-out").addEventListener("click", signOut);
  wireCustomer();
  wireActions();
  window.addEventListener("popstate", () => {
    const match = CUSTOMER_VIEW.exec(window.location.hash);
    if (match) {
      openCustomer(match[1]);
    } else {
      backToFleet();
    }
  });
}

// Who is signed in, per the data API; null when the page shows why not instead.
async function whoAmI() {
  try {
    return await api("me");
  } catch (error) {
    if (error instanceof ApiError && error.status === 403) {
      showSignedOut(`Signed in, but not allowed: ${error.message}`);
      $("sign-out").hidden = false;
      return null;
    }
    fail(error);
    return null;
  }
}

function showSignedIn(me) {
  $("who").textContent = `${me.name} (${me.canAct ? "operator" : "reader"})`;
  $("who").dataset.role = me.canAct ? "operator" : "reader";
  $("sign-in").hidden = true;
  $("sign-out").hidden = false;
  $("fleet").hidden = false;
}

async function showFleet() {
  setStatus("Loading the fleet...");
  try {
    await loadFleet();
    setStatus("");
    document.body.dataset.ready = "fleet";
    const match = CUSTOMER_VIEW.exec(window.location.hash);
    if (match) {
      await openCustomer(match[1]);
    }
  } catch (error) {
    fail(error);
  }
}

async function start() {
  wire();
  try {
    await finishSignIn();
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
  const me = await whoAmI();
  if (!me) {
    return;
  }
  setSignedIn(me);
  showSignedIn(me);
  await showFleet();
}

document.addEventListener("DOMContentLoaded", () => { start(); });
