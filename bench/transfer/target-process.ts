/**
 * Entry point of the bench's target child process (forked from dist/ by `link.ts`): serves
 * {@link BenchTarget} requests arriving over the IPC channel, one at a time, in order.
 *
 * Hazard guarded: an orphaned target. It exits when the IPC channel closes (the initiator died or
 * was killed), when a `close` request was answered, and, as a last resort, when it hears nothing
 * for `KVWIRE_BENCH_TARGET_IDLE_S` seconds (default 900).
 *
 * @packageDocumentation
 */
import { BenchTarget } from './target.js';
import type { TargetReply, TargetRequest } from './target.js';

const target = new BenchTarget();
const idleLimitMs = Math.max(1, Number(process.env['KVWIRE_BENCH_TARGET_IDLE_S'] ?? 900)) * 1000;
let queue: Promise<void> = Promise.resolve();
let watchdog: NodeJS.Timeout | undefined;

function armWatchdog(): void {
  if (watchdog !== undefined) clearTimeout(watchdog);
  watchdog = setTimeout(() => {
    process.stderr.write(`kvwire bench target ${process.pid}: no request for ${idleLimitMs / 1000} s; exiting\n`);
    process.exit(3);
  }, idleLimitMs);
  watchdog.unref();
}

function send(reply: TargetReply): Promise<void> {
  return new Promise((resolve) => {
    if (process.send === undefined || !process.connected) {
      resolve();
      return;
    }
    process.send(reply, undefined, undefined, () => resolve());
  });
}

process.on('message', (req: TargetRequest) => {
  armWatchdog();
  queue = queue.then(async () => {
    const reply = await target.handle(req);
    await send(reply);
    if (req.t === 'close') {
      process.disconnect?.();
      process.exit(0);
    }
  });
});

process.on('disconnect', () => {
  void target.close().finally(() => process.exit(0));
});

if (process.send === undefined) {
  process.stderr.write(
    'kvwire bench target: this module runs as a child of `kvwire bench` (it needs the IPC channel)\n',
  );
  process.exit(2);
}
armWatchdog();
