/**
 * Errors as the OpenAI API (and vLLM) answers them: an HTTP status and
 * `{"error": {"message", "type", "param", "code"}}`, `type` and `code` as vLLM fills them
 * (`BadRequestError` / 400 ...).
 *
 * @packageDocumentation
 */
import { ErrorCode, KvwireError } from '../../errors.js';

/** An error the HTTP layer answers with `status` and OpenAI's error JSON. */
export class ApiError extends Error {
  /** HTTP status. */
  readonly status: number;
  /** The offending request field, if one is to blame. */
  readonly param: string | null;
  /** Extra headers (Retry-After). */
  readonly headers: Record<string, string>;

  constructor(status: number, message: string, param: string | null = null, headers: Record<string, string> = {}) {
    super(message);
    this.status = status;
    this.param = param;
    this.headers = headers;
  }
}

const TYPES: Record<number, string> = {
  400: 'BadRequestError',
  404: 'NotFoundError',
  405: 'MethodNotAllowedError',
  408: 'RequestTimeoutError',
  413: 'RequestEntityTooLargeError',
  415: 'UnsupportedMediaTypeError',
  429: 'TooManyRequestsError',
  500: 'InternalServerError',
  503: 'ServiceUnavailableError',
};

/** The JSON body of an error answer. */
export function errorBody(status: number, message: string, param: string | null): string {
  return JSON.stringify({ error: { message, type: TYPES[status] ?? 'Error', param, code: status } });
}

/** Maps anything thrown while serving a request to an ApiError. */
export function toApiError(e: unknown): ApiError {
  if (e instanceof ApiError) return e;
  if (e instanceof KvwireError) {
    const field = typeof e.details.field === 'string' ? e.details.field : null;
    if (e.details['kvLoadFailed'] === true) return new ApiError(500, e.message, field);
    switch (e.code) {
      case ErrorCode.INVALID_ARGUMENT:
        return new ApiError(400, e.message, field);
      case ErrorCode.CAPACITY:
        return new ApiError(429, e.message, null, { 'retry-after': '1' });
      case ErrorCode.CLOSED:
        return new ApiError(503, e.message, null, { 'retry-after': '5' });
      default:
        return new ApiError(500, e.message, field);
    }
  }
  return new ApiError(500, `internal error: ${(e as Error)?.message ?? String(e)}`);
}
