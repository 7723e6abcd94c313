/**
 * An error with the HTTP status it should be answered with. Everything the viewer refuses on
 * purpose (a bad image, an unknown task, a malformed edit) is one of these, so the error handler
 * can tell the client's mistakes (4xx, with the message) from the server's own bugs (500).
 */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = 'HttpError';
  }
}
