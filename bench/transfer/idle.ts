/**
 * The idle-CPU check: a connected pair (two processes for UCX) moves a few small transfers so that
 * the engines have been active, then does nothing for N seconds; both processes' CPU time over
 * that window (`process.cpuUsage()`, the target reports its own) is the cost of an idle pair.
 * The design rule it guards: completions never busy-poll at rest.
 *
 * @packageDocumentation
 */
import type { BenchPair } from './pair.js';
import { failedTransport, openPair } from './pair.js';
import { BytePattern, regionSalt } from './pattern.js';
import type { Progress } from './progress.js';
import type { IdleJson, IdleRowJson } from './schema.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Runs the idle check over each transport, one after the other. */
export async function runIdle(
  seconds: number,
  engine: 'ucx' | 'loopback',
  transports: readonly string[],
  notice: (m: string) => void,
  progress: Progress,
): Promise<IdleJson> {
  const rows: IdleRowJson[] = [];
  const pattern = new BytePattern();
  progress.addTotal(transports.length);
  for (const transport of transports) {
    progress.begin(`idle ${transport}: connecting`);
    let pair: BenchPair;
    try {
      pair = await openPair(
        engine,
        transport,
        [{ label: 'idle-target', bytes: 1 << 20, salt: regionSalt('target', 0) }],
        [{ label: 'idle-initiator', bytes: 1 << 20, salt: regionSalt('initiator', 0) }],
        pattern,
      );
    } catch (e) {
      const info = failedTransport(engine, transport, 1 << 20, (e as Error).message);
      notice(`idle check over ${transport} failed: ${(e as Error).message}`);
      rows.push({
        transport,
        category: info.category,
        status: 'failed',
        error: info.error,
        wallS: 0,
        initiatorPct: 0,
        targetPct: 0,
        totalPct: 0,
      });
      progress.end();
      continue;
    }
    try {
      // Some traffic first: an engine that keeps polling after activity shows it now.
      const p = pair.agent.prepare(
        pair.peer,
        [{ region: pair.local[0]!, offset: 0, length: 4096 }],
        [{ region: pair.remote[0]!, offset: 0, length: 4096 }],
      );
      for (let i = 0; i < 20; i++) await p.post(i % 2 === 0 ? 'write' : 'read').done;
      await sleep(200);
      const t0 = await pair.target.cpu();
      const mine0 = process.cpuUsage();
      const w0 = process.hrtime.bigint();
      const end = Date.now() + seconds * 1000;
      progress.begin(`idle ${transport}: ${seconds} s of nothing`);
      while (Date.now() < end) {
        await sleep(Math.min(250, Math.max(1, end - Date.now())));
        progress.partial(1 - (end - Date.now()) / (seconds * 1000));
      }
      const mine = process.cpuUsage(mine0);
      const wallUs = Number(process.hrtime.bigint() - w0) / 1e3;
      const t1 = await pair.target.cpu();
      const targetWallUs = (t1.wallNs - t0.wallNs) / 1e3;
      const initiatorPct = ((mine.user + mine.system) / wallUs) * 100;
      const targetPct = ((t1.userUs - t0.userUs + t1.systemUs - t0.systemUs) / targetWallUs) * 100;
      rows.push({
        transport,
        category: pair.info.category,
        status: 'ok',
        error: null,
        wallS: wallUs / 1e6,
        initiatorPct,
        targetPct: pair.target.inProcess ? 0 : targetPct,
        totalPct: initiatorPct + (pair.target.inProcess ? 0 : targetPct),
      });
      if (pair.target.inProcess)
        notice("the loopback target runs in the initiator process: its CPU is part of the initiator's");
    } catch (e) {
      rows.push({
        transport,
        category: pair.info.category,
        status: 'failed',
        error: (e as Error).message,
        wallS: 0,
        initiatorPct: 0,
        targetPct: 0,
        totalPct: 0,
      });
    } finally {
      await pair.close();
    }
    progress.end();
  }
  return { seconds, rows };
}
