// Forged metadata against every transport path the target serves: tcp active messages (the
// default over tcp), tcp with the initiator's own `protocol: 'rma'` (refused: the target offers no
// one-sided path over tcp), shared memory with registered regions (cross-memory attach), shared
// memory with allocated regions (mapped segments), and shared memory between agents that share a
// secret (the attacker re-signs with its own key). An attacker holding the victim's genuine
// metadata edits it (the data plane's forgeries, test/transport/forgery.ts, and the suite's aimed
// ones; checksum recomputed) and aims at memory it was never granted. Every attack must be refused
// with a typed error; none may leak a byte of memory it may not read (searched for anywhere in the
// attacker's buffer), change memory no peer may write, or crash the victim.
import { describe, expect, it } from 'vitest';
import { fillPattern } from '../fixtures/pattern.js';
import type { AttackOutcome, AttackPath } from './fixtures/attack.js';
import { ForbiddenBlocks } from './fixtures/leak-search.js';
import { record, runScenario, why } from './harness.js';

interface AttackReport {
  path: string;
  transport: string;
  protocol: string;
  /** 'connected', or the code the genuine metadata was refused with. */
  genuine: string;
  baselineOk: boolean;
  attacks: AttackOutcome[];
  victimRestarts: number;
}

const PIECE = 64 << 10;
const PATHS: AttackPath[] = ['tcp-am', 'tcp-rma', 'sm', 'sm-allocate', 'sm-auth'];

describe('the leak search', () => {
  const secret = fillPattern(Buffer.alloc(PIECE), 0x5ec2e7);
  const f = new ForbiddenBlocks().add('secret', secret);

  it('finds forbidden bytes wherever they sit in the destination, at any alignment', () => {
    const dst = Buffer.alloc(3 * PIECE, 0xee);
    secret.copy(dst, 12_345, 1_001, 1_001 + 4_000); // unaligned both in the secret and in dst
    const found = f.search(dst);
    expect(found.from).toEqual(['secret']);
    expect(found.bytes).toBeGreaterThan(4_000 - 128);
    expect(found.bytes).toBeLessThanOrEqual(4_000);
  });

  it("finds nothing in granted bytes or the attacker's own fill", () => {
    const granted = fillPattern(Buffer.alloc(2 * PIECE), 0x11);
    expect(f.search(granted).bytes).toBe(0);
    expect(f.search(Buffer.alloc(PIECE, 0xee)).bytes).toBe(0);
  });
});

describe.each(PATHS)('forged metadata over %s', (path) => {
  let result: Awaited<ReturnType<typeof runScenario<AttackReport>>> | undefined;

  async function attack(): Promise<AttackReport> {
    result ??= await runScenario<AttackReport>('attack.js', { path, piece: PIECE, timeoutMs: 10_000 }, 300_000);
    expect(result.report, why(result)).toBeDefined();
    return result.report!;
  }

  it('serves what the victim granted (a genuine READ of its read-only region), or refuses the path, typed', async () => {
    const r = await attack();
    const count = (o: string) => r.attacks.filter((a) => a.outcome === o).length;
    record(`forged-metadata-${path}`, {
      genuine: r.genuine,
      transport: r.transport,
      protocol: r.protocol,
      attacks: r.attacks.length,
      refused: count('refused'),
      contained: count('contained'),
      breached: count('breached'),
      untyped: count('untyped'),
      leakedBytes: r.attacks.reduce((s, a) => s + a.leakedBytes, 0),
      writesLanded: r.attacks.filter((a) => a.landed).length,
      victimCrashes: r.attacks.filter((a) => a.victimDied !== undefined).length,
      codes: Object.fromEntries(
        [...new Set(r.attacks.map((a) => a.code ?? '-'))].map((c) => [
          c,
          r.attacks.filter((a) => (a.code ?? '-') === c).length,
        ]),
      ),
      outcomes: r.attacks,
    });
    if (path === 'tcp-rma') {
      // The target offers no one-sided path over tcp: the initiator cannot choose one.
      expect(r.genuine).toBe('ERR_KVWIRE_UNSUPPORTED');
      return;
    }
    expect(r.genuine).toBe('connected');
    expect(r.baselineOk).toBe(true);
    expect(r.transport).toBe(path.startsWith('sm') ? 'sm' : 'tcp');
  });

  it('lets no attack leak a byte, land a write or kill the victim', async () => {
    const r = await attack();
    expect(r.attacks.length).toBeGreaterThanOrEqual(25);
    const breached = r.attacks.filter((a) => a.outcome === 'breached');
    expect(breached, JSON.stringify(breached, null, 1)).toEqual([]);
    expect(r.victimRestarts).toBe(0);
  });

  it('refuses every attack with a typed error', async () => {
    const r = await attack();
    const notRefused = r.attacks.filter((a) => a.outcome !== 'refused');
    expect(notRefused, JSON.stringify(notRefused, null, 1)).toEqual([]);
    for (const a of r.attacks) expect(a.code, a.name).toMatch(/^ERR_KVWIRE_[A-Z_]+$/);
  });
});
