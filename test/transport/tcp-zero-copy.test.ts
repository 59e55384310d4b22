// UCX 1.13's tcp transport completes a zero-copy send twice, and aborts the process, when the peer
// resets the connection while the send is part way out and bytes from the peer wait to be read
// (docs/transport.md, "UCX 1.13's tcp abort on peer death"). kvwire therefore sends tcp data packed
// by UCX into its own buffers, never zero-copy (native/engine/ucx_messages.cc, SetDataParams).
// Checked where it happens: gdb counts the calls of libuct's uct_tcp_ep_am_zcopy (the only way
// into that abort) in a process holding both ends of a tcp connection, while it moves data of
// every protocol's size both ways; with KVWIRE_TCP_ZERO_COPY=1 the same run makes such calls
// (so the count can fail).
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const PROBE = fileURLToPath(new URL('../../dist/test/fixtures/tcp-sends-probe.js', import.meta.url));
const HAS_GDB = spawnSync('gdb', ['--version'], { stdio: 'ignore' }).status === 0;

/** Runs the probe under gdb: its report, and how many times uct_tcp_ep_am_zcopy was called. */
function probe(env: NodeJS.ProcessEnv): { report: { ok: boolean; transport: string; moved: number }; zcopy: number } {
  const dir = mkdtempSync(join(tmpdir(), 'kvwire-zcopy-'));
  const script = join(dir, 'count.gdb');
  writeFileSync(
    script,
    [
      'set pagination off',
      'set breakpoint pending on',
      'handle SIGUSR1 SIGUSR2 SIGPIPE nostop noprint pass',
      'break uct_tcp_ep_am_zcopy',
      'commands 1',
      'silent',
      'continue',
      'end',
      'run',
      'info breakpoints',
      '',
    ].join('\n'),
  );
  const r = spawnSync('gdb', ['-nx', '-batch', '-x', script, '--args', process.execPath, PROBE], {
    env: { ...process.env, ...env },
    encoding: 'utf8',
    timeout: 120_000,
  });
  const out = `${r.stdout}\n${r.stderr}`;
  const line = out.split('\n').find((l) => l.startsWith('{"ok"'));
  expect(line, out.slice(-3000)).toBeDefined();
  // "breakpoint already hit N times" appears once it was hit at all.
  const hit = /breakpoint already hit (\d+) time/.exec(out);
  expect(out, 'the breakpoint was set in libuct').toMatch(/<uct_tcp_ep_am_zcopy/);
  return { report: JSON.parse(line!), zcopy: hit ? Number(hit[1]) : 0 };
}

describe.skipIf(!HAS_GDB)('tcp data is never sent zero-copy', () => {
  it('moves every size both ways over tcp, every byte right, with no zero-copy send', () => {
    const r = probe({ KVWIRE_TCP_ZERO_COPY: undefined });
    expect(r.report).toMatchObject({ ok: true, transport: 'tcp' });
    expect(r.zcopy).toBe(0);
  }, 180_000);

  it('does send zero-copy with KVWIRE_TCP_ZERO_COPY=1 (what the count above would see)', () => {
    const r = probe({ KVWIRE_TCP_ZERO_COPY: '1' });
    expect(r.report).toMatchObject({ ok: true, transport: 'tcp' });
    expect(r.zcopy).toBeGreaterThan(0);
  }, 180_000);
});
