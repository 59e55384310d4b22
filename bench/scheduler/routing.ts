/**
 * Prefix-aware routing against round-robin through real engines: `kvwire engine` processes (the
 * llama runtime, a generated model) behind `kvwire router`, their KV events flowing into the
 * router's index, and a shared-prefix workload (a few long system prompts, many short questions
 * on them) sent with the `openai`-compatible streaming API at some concurrency. Measured per mode:
 * the prefix cache hit rate (`usage.prompt_tokens_details.cached_tokens` / `prompt_tokens`, as the
 * engines report them) and the time to first token (first streamed chunk), p50 and p99.
 *
 * The two modes differ only in the router's weights: the defaults (prefix-cache 3, load 1,
 * kv-utilization 1, session-affinity 2) against all weights 0, where every decision is a tie that
 * goes to the worker with fewer requests in flight, then in turn: round-robin. Runs alternate
 * between the modes, each on fresh system prompts (a new salt), so no run reuses another's cache.
 *
 * @packageDocumentation
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRegistry } from '../../lib/metrics.js';
import { startRouter, type Router } from '../../lib/scheduler/router/router.js';
import type { ScorerName } from '../../lib/scheduler/types.js';
import { mulberry32 } from '../../lib/util/mulberry32.js';

/** A running engine process. */
export interface EngineHandle {
  readonly url: string;
  readonly pod: string;
  readonly model: string;
  readonly kvEvents: string;
  readonly kvEventsReplay: string;
  readonly child: ChildProcess;
}

/** bin/kvwire.js, from bench/scheduler (tests run the source) or dist/bench/scheduler. */
function kvwireBin(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++, dir = dirname(dir))
    if (existsSync(join(dir, 'bin', 'kvwire.js'))) return join(dir, 'bin', 'kvwire.js');
  throw new Error(`bin/kvwire.js not found above ${fileURLToPath(import.meta.url)}`);
}

/** Starts `kvwire engine` (role both) and waits for its ready line. */
export async function startEngineProcess(
  pod: string,
  model: string,
  numBlocks: number,
  role: 'both' | 'prefill' | 'decode' = 'both',
): Promise<EngineHandle> {
  const args = [
    'engine',
    '--role',
    role,
    '--model',
    model,
    '--listen',
    '127.0.0.1:0',
    '--pod-name',
    pod,
    '--kv-events-endpoint',
    'tcp://127.0.0.1:*',
    '--kv-events-replay-endpoint',
    'tcp://127.0.0.1:*',
    '--num-blocks',
    String(numBlocks),
  ];
  const child = spawn(process.execPath, [kvwireBin(), ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, KVWIRE_KV_SECRET: 'kvwire-bench-secret-0123456789abcdef' },
  });
  let out = '';
  let err = '';
  child.stderr!.on('data', (b: Buffer) => (err = (err + b.toString()).slice(-4000)));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`kvwire engine ${pod} not ready after 180 s: ${err}`)), 180_000);
    child.stdout!.on('data', (b: Buffer) => {
      out += b.toString();
      const m = /kvwire-engine-ready (\{.*\})\n/.exec(out);
      if (m) {
        clearTimeout(timer);
        const r = JSON.parse(m[1]!) as {
          url: string;
          pod: string;
          model: string;
          kvEvents: string;
          kvEventsReplay: string;
        };
        resolve({ ...r, child });
      }
    });
    child.once('exit', (c) => {
      clearTimeout(timer);
      reject(
        new Error(
          `kvwire engine ${pod} exited with ${String(c)} before it was ready (is kvwire engine built?): ${err}`,
        ),
      );
    });
  });
}

/** Options of one run. */
export interface RoutingRunOptions {
  readonly engines: readonly EngineHandle[];
  readonly mode: 'prefix-aware' | 'round-robin';
  readonly systems: number;
  readonly systemWords: number;
  readonly requests: number;
  readonly concurrency: number;
  readonly maxTokens: number;
  readonly salt: number;
}

/** What one run measured. */
export interface RoutingRunResult {
  readonly mode: RoutingRunOptions['mode'];
  readonly requests: number;
  readonly failed: number;
  readonly promptTokens: number;
  readonly cachedTokens: number;
  /** cached / prompt tokens. */
  readonly hitRate: number;
  readonly ttftP50Ms: number;
  readonly ttftP99Ms: number;
  /** Requests per decode worker. */
  readonly spread: Record<string, number>;
}

const WORDS = [
  'cache',
  'block',
  'prefill',
  'decode',
  'token',
  'router',
  'engine',
  'transfer',
  'memory',
  'lease',
  'prefix',
  'batch',
  'stream',
  'model',
  'layer',
  'tensor',
];

const RR_WEIGHTS: Record<ScorerName, number> = {
  'prefix-cache': 0,
  load: 0,
  'kv-utilization': 0,
  'session-affinity': 0,
};

/** One run through a fresh router (see the module documentation). */
export async function runRouting(o: RoutingRunOptions): Promise<RoutingRunResult> {
  const rnd = mulberry32(o.salt);
  const systems = Array.from(
    { length: o.systems },
    (_, s) =>
      `System ${o.salt}-${s}: ` +
      Array.from({ length: o.systemWords }, () => WORDS[Math.floor(rnd() * WORDS.length)]).join(' ') +
      '.\n',
  );
  const model = o.engines[0]!.model;
  const router: Router = await startRouter({
    endpoints: o.engines.map((e) => ({
      name: e.pod,
      role: 'decode',
      url: e.url,
      models: [model],
      kvEvents: e.kvEvents,
      kvReplay: e.kvEventsReplay,
      pod: e.pod,
    })),
    registry: createRegistry(),
    log: () => {},
    scheduler: { pdThreshold: 1_000_000, ...(o.mode === 'round-robin' ? { weights: RR_WEIGHTS } : {}) },
    pool: { healthIntervalMs: 1_000, scrapeIntervalMs: 500 },
  });
  const ttfts: number[] = [];
  let prompt = 0,
    cached = 0,
    failed = 0,
    next = 0;
  const spread: Record<string, number> = {};
  const one = async (i: number): Promise<void> => {
    const sys = systems[Math.floor(rnd() * systems.length)]!;
    const body = {
      model,
      prompt: `${sys}Question ${i}: what does the ${WORDS[i % WORDS.length]} do?`,
      max_tokens: o.maxTokens,
      temperature: 0,
      stream: true,
      stream_options: { include_usage: true },
    };
    const t0 = performance.now();
    try {
      const res = await fetch(`${router.url}/v1/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(300_000),
      });
      const served = Buffer.from(res.headers.get('x-session-token') ?? '', 'base64').toString();
      spread[served] = (spread[served] ?? 0) + 1;
      if (res.status !== 200 || res.body === null) throw new Error(`status ${res.status}`);
      const reader = res.body.getReader();
      let text = '';
      let first = true;
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        if (first) {
          ttfts.push(performance.now() - t0);
          first = false;
        }
        text += Buffer.from(value).toString();
      }
      const usage = [...text.matchAll(/^data: (\{.*\})$/gm)]
        .map(
          (m) =>
            JSON.parse(m[1]!) as {
              usage?: { prompt_tokens: number; prompt_tokens_details?: { cached_tokens?: number } };
            },
        )
        .find((c) => c.usage !== undefined)?.usage;
      if (usage === undefined) throw new Error('no usage chunk');
      prompt += usage.prompt_tokens;
      cached += usage.prompt_tokens_details?.cached_tokens ?? 0;
    } catch {
      failed++;
    }
  };
  try {
    await Promise.all(
      Array.from({ length: o.concurrency }, async () => {
        while (next < o.requests) await one(next++);
      }),
    );
  } finally {
    await router.close();
  }
  ttfts.sort((a, b) => a - b);
  const at = (p: number): number =>
    Math.round(ttfts[Math.min(ttfts.length - 1, Math.max(0, Math.ceil(p * ttfts.length) - 1))] ?? 0);
  return {
    mode: o.mode,
    requests: o.requests,
    failed,
    promptTokens: prompt,
    cachedTokens: cached,
    hitRate: prompt === 0 ? 0 : cached / prompt,
    ttftP50Ms: at(0.5),
    ttftP99Ms: at(0.99),
    spread,
  };
}
