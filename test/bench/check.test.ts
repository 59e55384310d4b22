import { describe, expect, it, vi } from 'vitest';
import { main } from '../../bench/transfer/command.js';
import type { BenchReportJson } from '../../bench/transfer/schema.js';
import { runCli } from './helpers.js';

describe('kvwire bench --check', () => {
  it('fails a WRITE row whose bytes the loopback engine corrupts, naming the offset', async () => {
    const r = await runCli([
      '--engine',
      'loopback',
      '--ops',
      'write',
      '--sizes',
      '4K',
      '--batches',
      '8',
      '--iters',
      '5',
      '--check',
      '--fault',
      'corrupt=1',
      '--json',
    ]);
    expect(r.code).toBe(1);
    const doc = JSON.parse(r.stdout) as BenchReportJson;
    const row = doc.sweep!.rows[0]!;
    expect(row.status).toBe('failed');
    expect(row.errorCode).toBe('ERR_KVWIRE_CORRUPTED');
    // The loopback engine flips the first destination byte of the transfer.
    expect(row.mismatch).toMatchObject({ side: 'target', descriptor: 0, offset: 0, byteInDescriptor: 0, transfer: 0 });
    expect(row.mismatch!.actual).toBe(row.mismatch!.expected ^ 0xff);
  });

  it('fails a READ row too, and leaves rows after the corruption intact', async () => {
    const r = await runCli([
      '--engine',
      'loopback',
      '--ops',
      'read',
      '--sizes',
      '64K',
      '--batches',
      '1,4',
      '--iters',
      '5',
      '--check',
      '--fault',
      'corrupt=1',
    ]);
    expect(r.code).toBe(1);
    const lines = r.stdout.split('\n');
    expect(lines.find((l) => /^\s*64K\s+1\s/.test(l))).toMatch(
      /FAILED: corrupted at transfer 0, descriptor 0, byte 0 .*initiator/,
    );
    expect(lines.find((l) => /^\s*64K\s+4\s/.test(l))).toMatch(/ok, verified/);
  });

  it('catches corruption planted later in a row (every transfer is verified, not only the last)', async () => {
    const out: string[] = [];
    const spy = vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
      out.push(String(chunk));
      return true;
    });
    let posts = 0;
    try {
      const code = await main(
        [
          '--engine',
          'loopback',
          '--ops',
          'write',
          '--sizes',
          '4K',
          '--batches',
          '2',
          '--iters',
          '20',
          '--warmup',
          '2',
          '--check',
          '--quiet',
          '--json',
        ],
        {
          onConnected: ({ initiator }) => {
            // Plant the fault right before the 9th post: the warmups and first measured transfers are clean.
            const prepare = initiator.prepare.bind(initiator);
            initiator.prepare = (...args: Parameters<typeof prepare>) => {
              const p = prepare(...args);
              const post = p.post.bind(p);
              p.post = (...a: Parameters<typeof post>) => {
                if (++posts === 9) initiator.faults!.set({ corrupt: 1 });
                return post(...a);
              };
              return p;
            };
          },
        },
      );
      expect(code).toBe(1);
    } finally {
      spy.mockRestore();
    }
    const doc = JSON.parse(out.join('')) as BenchReportJson;
    const row = doc.sweep!.rows[0]!;
    expect(row.status).toBe('failed');
    expect(row.mismatch).toMatchObject({ side: 'target', transfer: 8, descriptor: 0 });
    expect(row.iterations).toBe(7); // after the 2 warmups, 7 measured transfers: the 7th was corrupted
  });

  it('passes clean rows without --fault', async () => {
    const r = await runCli([
      '--engine',
      'loopback',
      '--sizes',
      '4K',
      '--batches',
      '1',
      '--iters',
      '5',
      '--check',
      '--csv',
    ]);
    expect(r.code, r.stderr).toBe(0);
    const [header, ...rows] = r.stdout.trim().split('\n');
    expect(header!.split(',').slice(0, 6)).toEqual(['op', 'transport', 'block_size', 'batch', 'inflight', 'status']);
    expect(rows).toHaveLength(2);
    for (const row of rows) expect(row.split(',')[5]).toBe('ok');
  });
});
