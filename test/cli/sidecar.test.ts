// `kvwire sidecar`: its flags, its errors (exit 2, naming the flag), and the command run as its own
// process in front of fake workers.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { command, sidecarOptions, type SidecarFlags } from '../../cli/commands/sidecar.js';
import { parseOptions, runCommand, type CommandOutput } from '../../cli/kit/command.js';
import { decodeAnswer, prefillAnswer, request, startFakeWorker, type FakeWorker } from '../sidecar/fake-workers.js';

const bin = fileURLToPath(new URL('../../bin/kvwire.js', import.meta.url));

function capture(): CommandOutput & { stderr: () => string } {
  let err = '';
  return { out: () => {}, err: (s) => void (err += s), stderr: () => err };
}

describe('kvwire sidecar flags', () => {
  it('turns flags into createSidecar options (seconds into ms, repeatable --allow)', () => {
    const f = parseOptions<SidecarFlags>(command(), [
      '--decode',
      'http://127.0.0.1:8200',
      '--listen',
      '0.0.0.0:8000',
      '--allow',
      '10.0.0.5:8100',
      '--allow',
      '10.1.0.0/16:8100',
      '--prefiller-sampling',
      '--prefill-max-retries',
      '4',
      '--on-prefill-failure',
      'fail',
      '--prefill-timeout',
      '2.5',
      '--decode-timeout',
      '60',
    ]);
    expect(sidecarOptions(f)).toMatchObject({
      decode: 'http://127.0.0.1:8200',
      host: '0.0.0.0',
      port: 8000,
      allow: ['10.0.0.5:8100', '10.1.0.0/16:8100'],
      allowAny: false,
      prefillerSampling: true,
      prefillMaxRetries: 4,
      prefillRetryBackoffMs: 100,
      onPrefillFailure: 'fail',
      prefillTimeoutMs: 2500,
      decodeTimeoutMs: 60_000,
      maxBodyBytes: 16 << 20,
      metricsPath: '/sidecar/metrics',
    });
  });

  it.each([
    [[], /--decode is required/],
    [['--decode', 'localhost:8200'], /--decode must be an http:\/\/ or https:\/\/ URL/],
    [
      ['--decode', 'http://h:1', '--allow', '127.1:80'],
      /--allow is refused: '127\.1' is not an IPv4 address.*not '127\.1:80'/,
    ],
    [['--decode', 'http://h:1', '--allow', '169.254.169.254:80'], /--allow is refused: .*never allowed/],
    [
      ['--decode', 'http://h:1', '--on-prefill-failure', 'retry'],
      /--on-prefill-failure must be decode or fail, not 'retry'/,
    ],
    [
      ['--decode', 'http://h:1', '--prefill-max-retries', '11'],
      /--prefill-max-retries must be an integer from 0 to 10/,
    ],
    [['--decode', 'http://h:1', '--prefill-timeout', '0'], /--prefill-timeout must be a number of seconds/],
    [['--decode', 'http://h:1', '--listen', '8000'], /--listen must be HOST:PORT/],
    [['--decode', 'http://h:1', '--tls-cert', 'c.pem'], /--tls-cert and --tls-key go together/],
    [['--decode', 'http://h:1', '--prefill-ca', 'ca.pem'], /--prefill-ca is the CA for --prefill-tls/],
    [
      ['--decode', 'http://h:1', '--tls-cert', '/nonexistent/c', '--tls-key', '/nonexistent/k'],
      /--tls-cert \/nonexistent\/c: cannot read it \(ENOENT\)/,
    ],
    [['--decode', 'http://h:1', '--metrics-path', '/metrics'], /--metrics-path must not be '\/metrics'/],
  ])('%j exits 2 saying what is wrong', async (argv, message) => {
    const io = capture();
    expect(await runCommand(command(), argv, io)).toBe(2);
    expect(io.stderr()).toMatch(/^kvwire sidecar: /);
    expect(io.stderr()).toMatch(message);
  });
});

describe('kvwire sidecar as a process', () => {
  let prefill: FakeWorker;
  let decode: FakeWorker;
  const children: ChildProcess[] = [];

  beforeAll(async () => {
    prefill = await startFakeWorker(prefillAnswer(5));
    decode = await startFakeWorker(decodeAnswer({ ownCached: 1 }));
  });

  afterAll(async () => {
    for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
    await prefill.close();
    await decode.close();
  });

  function start(args: string[]): {
    child: ChildProcess;
    ready: Promise<{ url: string }>;
    stderr: () => string;
    exit: Promise<number | null>;
  } {
    const child = spawn(process.execPath, [bin, 'sidecar', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(child);
    let out = '';
    let err = '';
    child.stderr!.on('data', (c: Buffer) => (err += c.toString()));
    const exit = once(child, 'exit').then(([code]) => code as number | null);
    const ready = new Promise<{ url: string }>((resolve, reject) => {
      child.stdout!.on('data', (c: Buffer) => {
        out += c.toString();
        const m = /^kvwire-sidecar-ready (.*)$/m.exec(out);
        if (m) resolve(JSON.parse(m[1]!) as { url: string });
      });
      void exit.then((code) => reject(new Error(`kvwire sidecar exited (${code}) before it was ready: ${err}`)));
    });
    ready.catch(() => {}); // a test that expects an early exit awaits `exit` instead
    return { child, ready, stderr: () => err, exit };
  }

  it('serves the P/D flow, logs a refused target, and exits 0 on SIGTERM', async () => {
    const s = start(['--listen', '127.0.0.1:0', '--decode', decode.url, '--allow', prefill.hostPort]);
    const { url } = await s.ready;
    const r = await request(url, {
      path: '/v1/completions',
      headers: { 'x-prefiller-host-port': prefill.hostPort },
      body: JSON.stringify({ model: 'm', prompt: 'p' }),
    });
    expect(r.status).toBe(200);
    expect(
      (r.json!.usage as { prompt_tokens_details: { cached_tokens: number } }).prompt_tokens_details.cached_tokens,
    ).toBe(5);
    expect(decode.received.at(-1)!.headers['x-request-id']).toBe(prefill.received.at(-1)!.headers['x-request-id']);
    const refused = await request(url, {
      path: '/v1/completions',
      headers: { 'x-prefiller-host-port': '169.254.169.254:80' },
      body: '{}',
    });
    expect(refused.status).toBe(403);
    const metrics = await request(url, { method: 'GET', path: '/sidecar/metrics' });
    expect(metrics.body).toMatch(/kvwire_sidecar_ssrf_refusals_total\{reason="metadata"\} 1/);
    s.child.kill('SIGTERM');
    expect(await s.exit).toBe(0);
    expect(s.stderr()).toMatch(/refused prefill target \(metadata\)/);
  });

  it('exits 2 naming --listen when the port is in use', async () => {
    const holder = createServer();
    await new Promise<void>((r) => holder.listen(0, '127.0.0.1', () => r()));
    const port = (holder.address() as { port: number }).port;
    try {
      const s = start(['--listen', `127.0.0.1:${port}`, '--decode', decode.url, '--allow', prefill.hostPort]);
      expect(await s.exit).toBe(2);
      expect(s.stderr()).toMatch(new RegExp(`--listen 127\\.0\\.0\\.1:${port}: the port is in use`));
    } finally {
      holder.close();
    }
  });
});
