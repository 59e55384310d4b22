/**
 * Emitting to user listeners without letting them break the emitter.
 *
 * @packageDocumentation
 */
import type { EventEmitter } from 'node:events';

/**
 * Emits `event` on `emitter`; a listener that throws has its error rethrown on a later tick (an
 * uncaught exception, as for any listener error) instead of unwinding the caller, whose own
 * bookkeeping (transfers, leases, engine events) must run to the end.
 */
export function safeEmit(emitter: EventEmitter, event: string, ...args: unknown[]): void {
  try {
    emitter.emit(event, ...args);
  } catch (e) {
    process.nextTick(() => {
      throw e;
    });
  }
}
