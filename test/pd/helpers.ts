/**
 * Test support for lib/pd: loopback agents, a small model, fake engines wired together, and a
 * condition poller (no fixed sleeps: tests wait for a state, with a deadline).
 */
import { createRegistry, type MetricsRegistry } from '../../lib/metrics.js';
import type { ModelShape } from '../../lib/kv/index.js';
import { Agent } from '../../lib/transport/index.js';
import { FakePrefillEngine, type FakePrefillOptions } from '../../lib/engine/runtimes/synthetic/fake-engine.js';
import { FakeDecodeEngine, type FakeDecodeOptions } from '../../lib/engine/runtimes/synthetic/fake-decode.js';

/** A small GQA model: 2 layers, 4 KV heads of 16 bf16 elements (4 KiB per 16-token block and tensor). */
export const SMALL: ModelShape = { name: 'small', attention: 'mha', layers: 2, kvHeads: 4, headDim: 16, dtype: 'bf16' };

/** The shared secret of the tests. */
export const SECRET = 'kvwire-test-secret-0123456789abcdef';

/** Creates `n` loopback agents named `${name}-r<rank>`. */
export async function loopbackAgents(name: string, n: number): Promise<Agent[]> {
  const out: Agent[] = [];
  // The agents authenticate their peers with the shared secret, as lib/pd requires by default.
  for (let r = 0; r < n; r++) {
    out.push(await Agent.create({ name: `${name}-r${r}`, engine: 'loopback', auth: { secret: SECRET } }));
  }
  return out;
}

/** A prefill and a decode fake engine on loopback agents, with a fresh registry. */
export interface Pair {
  readonly prefill: FakePrefillEngine;
  readonly decode: FakeDecodeEngine;
  readonly prefillAgents: Agent[];
  readonly decodeAgents: Agent[];
  readonly registry: MetricsRegistry;
  close(): Promise<void>;
}

/** Builds a {@link Pair}. */
export async function pair(
  options: {
    prefillTp?: number;
    decodeTp?: number;
    model?: ModelShape;
    numBlocks?: number;
    prefill?: Partial<FakePrefillOptions>;
    decode?: Partial<FakeDecodeOptions>;
  } = {},
): Promise<Pair> {
  const registry = createRegistry();
  const prefillAgents = await loopbackAgents('prefill', options.prefillTp ?? 1);
  const decodeAgents = await loopbackAgents('decode', options.decodeTp ?? 1);
  const common = { model: options.model ?? SMALL, numBlocks: options.numBlocks ?? 64, secret: SECRET, registry };
  const prefill = await FakePrefillEngine.create({
    engineId: 'prefill-0',
    agents: prefillAgents,
    ...common,
    ...options.prefill,
  });
  const decode = await FakeDecodeEngine.create({
    engineId: 'decode-0',
    agents: decodeAgents,
    ...common,
    ...options.decode,
  });
  return {
    prefill,
    decode,
    prefillAgents,
    decodeAgents,
    registry,
    async close() {
      await decode.close();
      await prefill.close();
      for (const a of [...decodeAgents, ...prefillAgents]) await a.close();
    },
  };
}

/** Prompt tokens `[start, start + n)` (distinct prompts get distinct ranges). */
export function prompt(n: number, start = 1000): number[] {
  return Array.from({ length: n }, (_, i) => start + i);
}

/** Resolves once `cond()` is true; rejects after `timeoutMs` with `what`. */
export async function until(cond: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

/** The value of a metric (summed over the series matching `labels`; a histogram's observation count). */
export async function metricValue(
  registry: MetricsRegistry,
  name: string,
  labels: Record<string, string> = {},
): Promise<number> {
  const m = registry.getSingleMetric(name);
  if (m === undefined) return 0;
  const data = await m.get();
  let sum = 0;
  for (const v of data.values) {
    const series = (v as { metricName?: string }).metricName ?? data.name;
    if (String(data.type) === 'histogram' && series !== `${name}_count`) continue;
    const l = v.labels as Record<string, string | number>;
    if (Object.entries(labels).every(([k, x]) => String(l[k]) === x)) sum += v.value;
  }
  return sum;
}
