/**
 * `TransferOptions` (and notification messages), checked once per post: every option of its
 * documented type, or a typed `ERR_KVWIRE_INVALID_ARGUMENT` naming it before anything is posted.
 *
 * @packageDocumentation
 */
import { ErrorCode, KvwireError } from '../errors.js';
import { checkTimeout } from './agent-options.js';
import { booleanOption, invalid, optionsObject, signalOption } from './arguments.js';
import type { TransferOptions } from './types.js';

/** Largest notification, in bytes (with a transfer or on its own). */
export const MAX_NOTIFY = 1 << 20;

/** Transfer options after checking: notify as bytes, a real AbortSignal, coalesce as a boolean. */
export interface CheckedTransferOptions {
  /** Undefined: the agent's `defaultTimeoutMs`. */
  readonly timeoutMs: number | undefined;
  readonly notify: Uint8Array | null;
  readonly signal: AbortSignal | undefined;
  readonly coalesce: boolean;
}

/** Checks the options of one READ or WRITE. */
export function checkTransferOptions(options: TransferOptions | undefined): CheckedTransferOptions {
  const o = optionsObject(options, 'transfer options');
  const timeoutMs = o.timeoutMs === undefined ? undefined : checkTimeout(o.timeoutMs, 'timeoutMs');
  let notify: Uint8Array | null = null;
  if (o.notify !== undefined) {
    notify = typeof o.notify === 'string' ? Buffer.from(o.notify, 'utf8') : o.notify;
    if (!(notify instanceof Uint8Array)) invalid('notify', 'a string or a Uint8Array', o.notify);
    checkNotifySize(notify);
  }
  const signal = signalOption(o.signal);
  const coalesce = booleanOption(o.coalesce, 'coalesce') ?? true;
  return { timeoutMs, notify, signal, coalesce };
}

/** Checks a notification sent on its own (`peer.notify`). */
export function checkNotification(message: unknown): Uint8Array {
  if (!(message instanceof Uint8Array)) {
    throw new KvwireError(ErrorCode.INVALID_ARGUMENT, 'message must be a string or a Uint8Array');
  }
  checkNotifySize(message);
  return message;
}

function checkNotifySize(message: Uint8Array): void {
  if (message.byteLength > MAX_NOTIFY) {
    throw new KvwireError(ErrorCode.INVALID_ARGUMENT, `a notification holds at most ${MAX_NOTIFY} bytes`);
  }
}
