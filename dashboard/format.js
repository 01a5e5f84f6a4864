// The API's values as the text the page shows.

export function when(iso) {
  // "2026-05-01T09:00:00.123+00:00" -> "2026-05-01 09:00 UTC" (the API's times are UTC)
  const match = /^(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2})/.exec(iso || "");
  return match ? `${match[1]} ${match[2]} UTC` : iso || "";
}

export function percent(value) {
  return value === null || value === undefined ? "unknown" : `${Math.round(value * 1000) / 10}%`;
}

// A link's identity: a user's name, else its kind and client ID (long: the client ID alone).
export function identityText(link, long) {
  if (link.identityType === "user") {
    return link.userPrincipalName || link.objectId || link.clientId || "";
  }
  return long ? link.clientId : `${link.identityType || ""} ${link.clientId || ""}`.trim();
}
