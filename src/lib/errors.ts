/** A failure the client caused or may know about. The edge renders it as problem+json. */
export class AppError extends Error {
  override name = 'AppError';
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly extra: { errors?: FieldError[]; retryAfterSeconds?: number } = {},
  ) {
    super(message);
  }
}

export interface FieldError {
  /** JSON pointer-ish location, e.g. `body/title` or `query/limit`. */
  field: string;
  message: string;
}

export const invalid = (code: string, message: string, errors?: FieldError[]) =>
  new AppError(400, code, message, errors ? { errors } : {});
export const unauthorized = (code = 'unauthorized', message = 'Sign in to continue.') =>
  new AppError(401, code, message);
export const forbidden = (code: string, message: string) => new AppError(403, code, message);
export const notFound = (what = 'resource') => new AppError(404, 'not_found', `No such ${what}.`);
export const conflict = (code: string, message: string) => new AppError(409, code, message);
export const tooManyRequests = (retryAfterSeconds: number) =>
  new AppError(429, 'rate_limited', 'Too many requests; slow down.', { retryAfterSeconds });
export const unavailable = (code = 'unavailable', message = 'Temporarily unavailable; try again shortly.') =>
  new AppError(503, code, message, { retryAfterSeconds: 5 });
