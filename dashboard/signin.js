// Sign-in with Entra ID: the OAuth 2.0 authorization code flow with PKCE (RFC 7636) against the
// authority's own endpoints, no library; its silent renewal (prompt=none); the token kept in
// sessionStorage; and who the data API says is signed in.

import { fail, setStatus, showSignedOut } from "./status.js";

const meta = (name) => document.querySelector(`meta[name="${name}"]`).getAttribute("content");
const config = {
  authority: meta("pal-authority"),
  clientId: meta("pal-client-id"),
  scope: meta("pal-scope"),
};
const session = window.sessionStorage;
const VIEW = /^#customer=[0-9a-fA-F-]{36}$/;
let renewing = false;
let me = null;  // the data API's answer to "me" once signed in, else null

function base64url(bytes) {
  let text = "";
  bytes.forEach((b) => { text += String.fromCharCode(b); });
  return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function randomText() {
  return base64url(crypto.getRandomValues(new Uint8Array(32)));
}

export function redirectUri() {
  return window.location.origin + window.location.pathname;
}

function authorizeQuery(challenge, state, nonce, silent) {
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
  return query;
}

// silent: a top-level redirect with prompt=none (the strict CSP forbids a hidden frame), which the
// authority answers with a code for the same session's user, or with login_required.
export async function signIn(silent = false) {
  const verifier = randomText();
  const challenge = base64url(new Uint8Array(
    await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier))));
  const state = randomText();
  const nonce = randomText();
  session.setItem("pal.pkce", JSON.stringify({ verifier, state, nonce }));
  const query = authorizeQuery(challenge, state, nonce, silent);
  window.location.assign(`${config.authority}/oauth2/v2.0/authorize?${query}`);
}

// The access token expired (or the API refused it): sign the same account in again without a
// page, once, keeping the view (the address's #customer=...) across the round trip.
export function renewSignIn() {
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

async function requestToken(params, pending) {
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
  return answer;
}

function storeToken(answer, identity) {
  // Renewed a little before it expires (a minute, or a fifth of a short lifetime).
  const lifetime = Number(answer.expires_in);
  const expiresAt = Date.now() + (lifetime - Math.min(60, Math.floor(lifetime / 5))) * 1000;
  session.setItem("pal.token", JSON.stringify({ accessToken: answer.access_token, expiresAt }));
  const hint = identity.login_hint || identity.preferred_username;
  session.setItem("pal.account", JSON.stringify({ hint: hint || null }));
}

function restoreView() {
  const view = session.getItem("pal.view");
  session.removeItem("pal.view");
  if (view && VIEW.test(view)) {
    window.history.replaceState(null, "", redirectUri() + view);
  }
}

async function redeem(params) {
  const pending = JSON.parse(session.getItem("pal.pkce") || "null");
  session.removeItem("pal.pkce");
  window.history.replaceState(null, "", redirectUri());
  if (!pending || params.get("state") !== pending.state) {
    throw new Error("the sign-in answer does not match the request (state); sign in again");
  }
  const answer = await requestToken(params, pending);
  const identity = answer.id_token ? claimsOf(answer.id_token) : {};
  if (answer.id_token && identity.nonce !== pending.nonce) {
    throw new Error("the ID token does not carry this sign-in's nonce; sign in again");
  }
  storeToken(answer, identity);
  restoreView();
}

function refused(params) {
  window.history.replaceState(null, "", redirectUri());
  const silent = session.getItem("pal.silent");
  session.removeItem("pal.silent");
  session.removeItem("pal.view");
  if (silent && ["login_required", "interaction_required"].includes(params.get("error"))) {
    session.removeItem("pal.account");
    return new Error("Your sign-in has expired. Sign in again.");
  }
  return new Error(`sign-in failed: ${params.get("error_description") || params.get("error")}`);
}

// The authority's answer in the address, if any: ?code=... is redeemed for a token; ?error=...
// throws the Error to show the person, who then signs in again.
export async function finishSignIn() {
  const params = new URLSearchParams(window.location.search);
  if (params.get("error")) {
    throw refused(params);
  }
  if (params.get("code")) {
    setStatus("Signing in...");
    await redeem(params);
  }
}

export function accessToken() {
  const stored = JSON.parse(session.getItem("pal.token") || "null");
  if (!stored || stored.expiresAt <= Date.now()) {
    session.removeItem("pal.token");
    return null;
  }
  return stored.accessToken;
}

// The API refused the token: it is dropped, so that the next call renews or signs in.
export function forgetAccessToken() {
  session.removeItem("pal.token");
}

// Signed in and answered: a later expiry may renew silently again.
export function signInWorked() {
  session.removeItem("pal.silent");
}

export function signedIn() {
  return me;
}

export function setSignedIn(answer) {
  me = answer;
}

export function signOut() {
  session.removeItem("pal.token");
  session.removeItem("pal.account");
  me = null;
  showSignedOut("Signed out.");
}
