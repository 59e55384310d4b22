// The sidecar in front of real `kvwire engine` workers (separate processes, KV pulled over UCX):
// the openai client talks to the sidecar, which runs the prefill leg on a prefill worker and the
// decode leg on a decode worker; greedy output equals a single --role both worker's, token for
// token, in chat and completions, streamed and not.
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRegistry, type MetricsRegistry } from '../../lib/metrics.js';
import { createSidecar, type Sidecar } from '../../lib/sidecar/index.js';
import { startEngine, type EngineProcess } from '../fixtures/engine-process.js';
import { metric, prompts } from '../engine/helpers.js';

const PROMPTS = prompts(8, 11);
const MAX_TOKENS = 10;

let both: EngineProcess;
let prefill: EngineProcess;
let decode: EngineProcess;
let sidecar: Sidecar;
let registry: MetricsRegistry;
let prefillTarget: string;

beforeAll(async () => {
  const t = ['--transports', 'tcp'];
  [both, prefill, decode] = await Promise.all([
    startEngine({ role: 'both', args: t }),
    startEngine({ role: 'prefill', args: t }),
    startEngine({ role: 'decode', args: t }),
  ]);
  prefillTarget = new URL(prefill.url).host;
  registry = createRegistry();
  sidecar = await createSidecar({ decode: decode.url, allow: [prefillTarget], registry });
}, 180_000);

afterAll(async () => {
  await sidecar?.close();
  const codes = await Promise.all([both, prefill, decode].filter(Boolean).map((e) => e.stop()));
  expect(codes).toEqual([0, 0, 0]);
});

/** An openai client; through the sidecar it names the prefill worker as a scheduler would. */
function client(baseURL: string, viaSidecar: boolean): OpenAI {
  return new OpenAI({
    baseURL: `${baseURL}/v1`,
    apiKey: 'unused',
    maxRetries: 0,
    timeout: 120_000,
    defaultHeaders: viaSidecar ? { 'x-prefiller-host-port': prefillTarget } : {},
  });
}

async function completion(
  c: OpenAI,
  prompt: string,
): Promise<{ text: string; tokens: number[]; cached: number | undefined }> {
  const r = await c.completions.create({
    model: 'tiny',
    prompt,
    max_tokens: MAX_TOKENS,
    temperature: 0,
    return_token_ids: true,
  } as never);
  const choice = r.choices[0] as unknown as { text: string; token_ids: number[] };
  return { text: choice.text, tokens: choice.token_ids, cached: r.usage?.prompt_tokens_details?.cached_tokens };
}

async function streamedCompletion(
  c: OpenAI,
  prompt: string,
): Promise<{ text: string; chunks: number; cached: number | undefined }> {
  const stream = await c.completions.create({
    model: 'tiny',
    prompt,
    max_tokens: MAX_TOKENS,
    temperature: 0,
    stream: true,
    stream_options: { include_usage: true },
  });
  let text = '';
  let chunks = 0;
  let cached: number | undefined;
  for await (const chunk of stream) {
    if (chunk.choices[0] !== undefined) {
      text += chunk.choices[0].text;
      chunks++;
    }
    if (chunk.usage) cached = chunk.usage.prompt_tokens_details?.cached_tokens;
  }
  return { text, chunks, cached };
}

async function chat(c: OpenAI, prompt: string, stream: boolean): Promise<string> {
  const messages = [{ role: 'user' as const, content: prompt }];
  if (!stream) {
    const r = await c.chat.completions.create({
      model: 'tiny',
      messages,
      max_completion_tokens: MAX_TOKENS,
      temperature: 0,
    });
    return r.choices[0]!.message.content ?? '';
  }
  const s = await c.chat.completions.create({
    model: 'tiny',
    messages,
    max_completion_tokens: MAX_TOKENS,
    temperature: 0,
    stream: true,
  });
  let text = '';
  for await (const chunk of s) text += chunk.choices[0]?.delta?.content ?? '';
  return text;
}

describe('the sidecar in front of kvwire engine workers', () => {
  it('completions through the sidecar equal a --role both worker token for token (KV pulled, not recomputed)', async () => {
    const direct = client(both.url, false);
    const pd = client(sidecar.url, true);
    for (const prompt of PROMPTS) {
      const ref = await completion(direct, prompt);
      const got = await completion(pd, prompt);
      expect(got.tokens, prompt).toEqual(ref.tokens);
      expect(got.text).toBe(ref.text);
      expect(got.tokens).toHaveLength(MAX_TOKENS);
    }
    // One x-request-id on both legs: the client's, echoed as the answer's id by the decode worker.
    const tagged = await pd.completions.create(
      { model: 'tiny', prompt: PROMPTS[0]!, max_tokens: 2, temperature: 0 },
      { headers: { 'x-request-id': 'sidecar-e2e-1' } },
    );
    expect(tagged.id).toBe('cmpl-sidecar-e2e-1');
    // Every request went the P/D way and the decode worker pulled the prompt blocks.
    const text = await registry.metrics();
    expect(text).toMatch(
      new RegExp(`kvwire_sidecar_requests_total\\{route="pd",outcome="ok"\\} ${PROMPTS.length + 1}`),
    );
    expect(await metric(decode.url, 'kvwire_pd_blocks_total', { source: 'remote' })).toBeGreaterThan(0);
    await expect(metric(decode.url, 'kvwire_engine_kv_load_failures_total')).rejects.toThrow(/not found/);
  });

  it('streams completions and chat through the sidecar with the same text, usage included', async () => {
    const direct = client(both.url, false);
    const pd = client(sidecar.url, true);
    for (const prompt of PROMPTS.slice(0, 4)) {
      const ref = await completion(direct, prompt);
      const streamed = await streamedCompletion(pd, prompt);
      expect(streamed.text, prompt).toBe(ref.text);
      expect(streamed.chunks).toBeGreaterThan(1);
      expect(streamed.cached).toBeTypeOf('number');
      expect(await chat(pd, prompt, false)).toBe(await chat(direct, prompt, false));
      expect(await chat(pd, prompt, true)).toBe(await chat(direct, prompt, false));
    }
  });

  it("reports the prompt tokens neither worker computed as cached: the same usage as the single worker's", async () => {
    const direct = client(both.url, false);
    const pd = client(sidecar.url, true);
    // A long prompt twice: the second time the prefill (and the single worker) reuse their prefix cache.
    const prompt = `${PROMPTS.join(' ')} and once more`;
    for (let i = 0; i < 2; i++) {
      const ref = await completion(direct, prompt);
      const got = await completion(pd, prompt);
      expect(got.text).toBe(ref.text);
      expect(got.cached).toBe(ref.cached);
      if (i === 1) expect(got.cached).toBeGreaterThan(0);
    }
  });

  it('refuses another port of the prefill host, and runs decode-only with the same output once the prefill worker is gone', async () => {
    const prompt = PROMPTS[1]!;
    const ref = await completion(client(both.url, false), prompt);
    const { hostname, port } = new URL(prefill.url);
    const otherPort = new OpenAI({
      baseURL: `${sidecar.url}/v1`,
      apiKey: 'unused',
      maxRetries: 0,
      defaultHeaders: { 'x-prefiller-host-port': `${hostname}:${Number(port) + 1}` },
    });
    await expect(completion(otherPort, prompt)).rejects.toMatchObject({ status: 403 });

    expect(await prefill.stop()).toBe(0);
    const fallback = await completion(client(sidecar.url, true), prompt);
    expect(fallback.tokens).toEqual(ref.tokens);
    expect(await registry.metrics()).toMatch(/kvwire_sidecar_decode_only_fallbacks_total\{reason="unreachable"\} 1/);
  });
});
