// The status line, the signed-out state, and what a failure shows.

import { $ } from "./dom.js";
import { ApiError, Renewing } from "./errors.js";

export function setStatus(text) {
  $("status").textContent = text || "";
}

export function showSignedOut(text) {
  $("fleet").hidden = true;
  $("customer").hidden = true;
  $("who").textContent = "";
  $("sign-in").hidden = false;
  $("sign-out").hidden = true;
  setStatus(text || "Sign in with your work account to see the fleet.");
}

export function fail(error) {
  if (error instanceof Renewing) {
    return;  // the page is on its way to the authority and back
  }
  if (error instanceof ApiError && error.status === 401) {
    showSignedOut(`Your sign-in is no longer valid (${error.message}). Sign in again.`);
    return;
  }
  setStatus(`Something went wrong: ${error.message}`);
}
