/** Helpers of the engine tests: HTTP calls, metric reads, prompts. */
import { mulberry32 } from '../../lib/util/mulberry32.js';

/**
 * What the tests read from the engine's JSON answers (completions, errors, /tokenize, P/D fields).
 * A field a given answer lacks is undefined at run time, and the test reading it fails.
 */
export interface ApiAnswer {
  id: string;
  object: string;
  choices: {
    index: number;
    text: string;
    token_ids: number[];
    finish_reason: string | null;
    message: { role: string; content: string };
  }[];
  usage: {
    prompt_tokens: number;
    completion_tokens: number;
    total_tokens: number;
    prompt_tokens_details: { cached_tokens: number };
  };
  kv_transfer_params: { do_remote_prefill: boolean; remote_block_ids: number[]; [field: string]: unknown };
  prompt_token_ids: number[];
  error: { message: string; type: string; param: string | null; code: number };
  count: number;
  max_model_len: number;
  tokens: number[];
}

/** POSTs JSON, returns status, headers and parsed body (text when not JSON). */
export async function post(
  url: string,
  body: unknown,
  headers: Record<string, string> = {},
): Promise<{ status: number; headers: Headers; body: ApiAnswer }> {
  const r = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' || body instanceof Uint8Array ? (body as string) : JSON.stringify(body),
  });
  const text = await r.text();
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    // not JSON
  }
  return { status: r.status, headers: r.headers, body: parsed as ApiAnswer };
}

/** The value of one metric series from /metrics (sum over label sets matching `labels`). */
export async function metric(base: string, name: string, labels: Record<string, string> = {}): Promise<number> {
  const text = await (await fetch(`${base}/metrics`)).text();
  let sum = 0;
  let found = false;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const m = /^([^{\s]+)(\{[^}]*\})?\s+(\S+)$/.exec(line);
    if (m === null || m[1] !== name) continue;
    const ls = m[2] ?? '';
    if (!Object.entries(labels).every(([k, v]) => ls.includes(`${k}="${v}"`))) continue;
    sum += Number(m[3]);
    found = true;
  }
  if (!found) throw new Error(`metric ${name} ${JSON.stringify(labels)} not found`);
  return sum;
}

const WORDS =
  'the quick brown fox jumps over a lazy dog while seven tired engineers measure kv cache transfers between prefill and decode workers on one small machine'.split(
    ' ',
  );

/** `n` prompts of mixed lengths (some sharing prefixes), deterministic. */
export function prompts(n: number, seed = 7): string[] {
  const rnd = mulberry32(seed);
  const out: string[] = [];
  const shared = 'System: you are a careful assistant that answers briefly. ';
  for (let i = 0; i < n; i++) {
    const words = 1 + Math.floor(rnd() * (i % 5 === 0 ? 60 : 20));
    let s = i % 3 === 0 ? shared : '';
    for (let w = 0; w < words; w++) s += WORDS[Math.floor(rnd() * WORDS.length)] + ' ';
    out.push(s.trimEnd() + (i % 2 === 0 ? '.' : ''));
  }
  return out;
}
