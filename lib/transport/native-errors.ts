/**
 * Errors thrown by the native addon (an Error with a `code`) as KvwireErrors.
 *
 * @packageDocumentation
 */
import { KvwireError } from '../errors.js';

/** Turns an error thrown by the addon (an Error with a `code`) into a KvwireError. */
export function fromNativeError(e: unknown): unknown {
  const code = (e as { code?: unknown }).code;
  if (e instanceof Error && typeof code === 'string' && code.startsWith('ERR_KVWIRE_')) {
    return KvwireError.fromCode(code, e.message);
  }
  return e;
}
