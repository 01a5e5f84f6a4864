// The data API (/api/dashboard/data/...), called with the signed-in person's access token. A 401
// drops the token and renews the sign-in silently once, if it can.

import { ApiError, Renewing } from "./errors.js";
import { accessToken, forgetAccessToken, renewSignIn, signInWorked } from "./signin.js";

const DATA = "dashboard/data";  // relative to the page (/api/dashboard), not to this module

export async function api(path, options = {}) {
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
      forgetAccessToken();
      if (renewSignIn()) {
        throw new Renewing("renewing the sign-in");
      }
    }
    throw new ApiError(response.status, (body && body.detail) || `HTTP ${response.status}`);
  }
  signInWorked();
  return body;
}
