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

/**
 * The last plain options checked (no notify, no signal) and what they were then: a loop that posts
 * with one options object is checked once, not per post (a small transfer's whole post is a few
 * µs, mostly unoptimized code in a process's first thousands of transfers). The fields are compared
 * at every post, so an object changed since is checked again.
 */
let lastOptions: TransferOptions | undefined;
let lastTimeoutMs: unknown;
let lastCoalesce: unknown;
let lastChecked: CheckedTransferOptions | undefined;

/** The options when none are given. */
const NO_OPTIONS: CheckedTransferOptions = Object.freeze({
  timeoutMs: undefined,
  notify: null,
  signal: undefined,
  coalesce: true,
});

/** Checks the options of one READ or WRITE. */
export function checkTransferOptions(options: TransferOptions | undefined): CheckedTransferOptions {
  if (options === undefined) return NO_OPTIONS;
  const o = optionsObject(options, 'transfer options');
  // Each field read once per post, cached or not (a getter runs as often either way).
  const timeoutMs = o.timeoutMs;
  const coalesce = o.coalesce;
  const notify = o.notify;
  const signal = o.signal;
  const plain = notify === undefined && signal === undefined;
  if (plain && options === lastOptions && timeoutMs === lastTimeoutMs && coalesce === lastCoalesce) return lastChecked!;
  const checked = checkFields(timeoutMs, notify, signal, coalesce);
  if (plain) {
    lastOptions = options;
    lastTimeoutMs = timeoutMs;
    lastCoalesce = coalesce;
    lastChecked = checked;
  }
  return checked;
}

function checkFields(
  rawTimeoutMs: unknown,
  rawNotify: unknown,
  rawSignal: unknown,
  rawCoalesce: unknown,
): CheckedTransferOptions {
  const timeoutMs = rawTimeoutMs === undefined ? undefined : checkTimeout(rawTimeoutMs, 'timeoutMs');
  let notify: Uint8Array | null = null;
  if (rawNotify !== undefined) {
    notify = typeof rawNotify === 'string' ? Buffer.from(rawNotify, 'utf8') : (rawNotify as Uint8Array);
    if (!(notify instanceof Uint8Array)) invalid('notify', 'a string or a Uint8Array', rawNotify);
    checkNotifySize(notify);
  }
  const signal = signalOption(rawSignal);
  const coalesce = booleanOption(rawCoalesce, 'coalesce') ?? true;
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
