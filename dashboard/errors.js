// The two errors the page tells apart when a data API call fails. Their own module, because the
// sign-in (which renews), the data API (which throws them) and the status line (which shows them)
// all need them, and none of those may import another in a circle.

/** The page is on its way to the authority and back (a silent renewal): nothing to show. */
export class Renewing extends Error {}

/** The data API answered with an error status; the message is its detail. */
export class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
  }
}
