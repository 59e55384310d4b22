import { spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { describe, expect, it } from 'vitest';
import { startEngine, TEST_KV_SECRET } from '../fixtures/engine-process.js';
import { post } from './helpers.js';

// `kvwire engine` as a process: the InferenceService environment, a port in use, SIGTERM drains.
function run(
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number | null; stderr: string; stdout: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['bin/kvwire.js', 'engine', ...args], {
      env: { ...process.env, KVWIRE_KV_SECRET: TEST_KV_SECRET, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    let stdout = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.on('exit', (code) => resolve({ code, stderr, stdout }));
  });
}

describe('kvwire engine', () => {
  it('a port in use: a message naming --listen, exit 2', async () => {
    const blocker = createServer();
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r));
    const port = (blocker.address() as { port: number }).port;
    try {
      const r = await run(['--listen', `127.0.0.1:${port}`]);
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(
        new RegExp(
          `--listen 127\\.0\\.0\\.1:${port}: the port is in use by another process; choose another with --listen`,
        ),
      );
    } finally {
      blocker.close();
    }
  });

  it('bad flags and environment values exit 2 naming them', async () => {
    expect((await run(['--role', 'chef'])).stderr).toMatch(/--role must be .*prefill.*decode.*both/);
    const r = await run(['--listen', '127.0.0.1:0'], { MAX_BATCH_SIZE: 'lots' });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/MAX_BATCH_SIZE/);
    expect((await run(['--model', 'gpt-5', '--listen', '127.0.0.1:0'])).stderr).toMatch(
      /no generated model named "gpt-5"/,
    );
    expect((await run(['--help'])).stdout).toMatch(/--kv-load-failure-policy/);
    // The lease settings (docs/pd.md, "Leases, heartbeats and the lease fence"): flags and environment, checked.
    const help = (await run(['--help'])).stdout;
    for (const f of ['--lease-ms', '--lease-extension-ms', '--lease-heartbeat-ms']) expect(help).toContain(f);
    const lease = await run(['--listen', '127.0.0.1:0'], { KVWIRE_LEASE_MS: 'soon' });
    expect(lease.code).toBe(2);
    expect(lease.stderr).toMatch(/KVWIRE_LEASE_MS/);
    const beat = await run(['--listen', '127.0.0.1:0', '--lease-heartbeat-ms', '-5']);
    expect(beat.code).toBe(2);
    expect(beat.stderr).toMatch(/--lease-heartbeat-ms must be an integer from 0 to/);
    const huge = await run(['--listen', '127.0.0.1:0', '--lease-extension-ms', '99999999999']);
    expect(huge.code).toBe(2);
    expect(huge.stderr).toMatch(/--lease-extension-ms must be an integer from 1 to/);
  });

  it('PREFILL_MODE, MODEL_NAME and ENABLE_KV_TRANSFER from the environment; flags win', async () => {
    const e = await startEngine({ role: null, env: { PREFILL_MODE: 'true', MODEL_NAME: 'tiny', MAX_BATCH_SIZE: '2' } });
    try {
      expect(e.sideChannel).not.toBeNull();
      const r = await post(`${e.url}/v1/completions`, {
        prompt: 'which role am I',
        max_tokens: 1,
        kv_transfer_params: { do_remote_prefill: true },
      });
      expect(r.body.error.message).toMatch(/--role prefill/);
    } finally {
      expect(await e.stop()).toBe(0);
    }
    const flagWins = await startEngine({ role: 'decode', env: { PREFILL_MODE: 'true' } });
    try {
      expect(flagWins.sideChannel).toBeNull();
    } finally {
      expect(await flagWins.stop()).toBe(0);
    }
    const off = await startEngine({ role: 'both', env: { ENABLE_KV_TRANSFER: 'false' } });
    try {
      expect(off.sideChannel).toBeNull();
      const r = await post(`${off.url}/v1/completions`, {
        prompt: 'no transfer',
        max_tokens: 1,
        kv_transfer_params: { do_remote_decode: true },
      });
      expect(r.status).toBe(400);
      expect(r.body.error.message).toMatch(/ENABLE_KV_TRANSFER=false/);
    } finally {
      expect(await off.stop()).toBe(0);
    }
  });

  it('SIGTERM: the request in flight finishes, the held lease is freed at close, exit 0', async () => {
    const e = await startEngine({ role: 'both', args: ['--drain-timeout-ms', '20000'] });
    const held = await post(`${e.url}/v1/completions`, {
      prompt: 'held for a decode that never comes',
      max_tokens: 1,
      kv_transfer_params: { do_remote_decode: true },
    });
    expect(held.body.kv_transfer_params.remote_block_ids.length).toBeGreaterThan(0);
    const inFlight = post(`${e.url}/v1/completions`, { prompt: 'a long answer', max_tokens: 2000, temperature: 0 });
    await new Promise((r) => setTimeout(r, 100));
    const stopped = e.stop('SIGTERM');
    const r = await inFlight;
    expect(r.status).toBe(200);
    expect(r.body.usage.completion_tokens).toBe(2000);
    expect(await stopped).toBe(0);
    expect(e.stderr()).toMatch(/SIGTERM: draining/);
  });
});
