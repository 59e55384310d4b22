/**
 * The engine benchmark (`npm run bench:engine`): TTFT and tokens/s of prefill -> decode (two
 * `kvwire engine` processes, KV pulled over UCX) against one `--role both` worker, at 1, 4 and 16
 * concurrent requests on the generated `small` model, and the KV hand-off's share of TTFT for a
 * 4,096-token prompt. Runs alternate between the two paths (interleaved), so a busy machine
 * slows both alike; ratios are the result, absolute numbers only describe this machine.
 *
 * Not a test: it asserts nothing and takes minutes.
 *
 * @packageDocumentation
 */
import { writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import { mulberry32 } from '../../lib/util/mulberry32.js';
import { startEngine, type EngineProcess } from '../../test/fixtures/engine-process.js';

interface Sample {
  ttftMs: number;
  totalMs: number;
  tokens: number;
}

const WORDS = 'alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa'.split(
  ' ',
);

/** A prompt of about `tokens` tokens (the tiny/small vocabulary: about one token per 1.3 characters), unique by `seed`. */
function prompt(tokens: number, seed: number): string {
  const rnd = mulberry32(seed);
  let s = `${seed} `;
  while (s.length < tokens * 1.6) s += WORDS[Math.floor(rnd() * WORDS.length)] + ' ';
  return s;
}

async function tokenCount(url: string, text: string): Promise<number> {
  const r = await fetch(`${url}/tokenize`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ prompt: text }),
  });
  return ((await r.json()) as { count: number }).count;
}

async function cut(url: string, text: string, tokens: number): Promise<string> {
  // Trim the text until it tokenizes to at most `tokens` tokens (the generated vocabulary merges unevenly).
  let t = text;
  while ((await tokenCount(url, t)) > tokens) t = t.slice(0, Math.floor(t.length * 0.97));
  return t;
}

/** Streams a completion; resolves at the end with the first-token and total times from `t0`. */
async function stream(url: string, body: Record<string, unknown>, t0: number): Promise<Sample> {
  const r = await fetch(`${url}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ ...body, stream: true, stream_options: { include_usage: true } }),
  });
  if (r.status !== 200 || r.body === null) throw new Error(`HTTP ${r.status}: ${await r.text()}`);
  let ttft = -1;
  let tokens = 0;
  let buf = '';
  const dec = new TextDecoder();
  for await (const chunk of r.body as unknown as AsyncIterable<Uint8Array>) {
    buf += dec.decode(chunk, { stream: true });
    let i: number;
    while ((i = buf.indexOf('\n\n')) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 2);
      if (!line.startsWith('data: ') || line === 'data: [DONE]') continue;
      const ev = JSON.parse(line.slice(6)) as { choices: { text: string }[]; usage?: { completion_tokens: number } };
      if (ttft < 0 && ev.choices.length > 0 && ev.choices[0]!.text.length > 0) ttft = performance.now() - t0;
      if (ev.usage) tokens = ev.usage.completion_tokens;
    }
  }
  return { ttftMs: ttft, totalMs: performance.now() - t0, tokens };
}

async function viaBoth(both: EngineProcess, text: string, maxTokens: number): Promise<Sample> {
  return stream(both.url, { model: 'small', prompt: text, max_tokens: maxTokens, temperature: 0 }, performance.now());
}

async function viaPd(prefill: EngineProcess, decode: EngineProcess, text: string, maxTokens: number): Promise<Sample> {
  const t0 = performance.now();
  const body = { model: 'small', prompt: text, temperature: 0 };
  const p = await fetch(`${prefill.url}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ ...body, max_tokens: 1, kv_transfer_params: { do_remote_decode: true } }),
  });
  const params = ((await p.json()) as { kv_transfer_params: unknown }).kv_transfer_params;
  return stream(decode.url, { ...body, max_tokens: maxTokens, kv_transfer_params: params }, t0);
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

async function metricSum(url: string, name: string, labels = ''): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  let v = 0;
  for (const line of text.split('\n'))
    if (line.startsWith(name) && line.includes(labels)) v += Number(line.split(' ').pop());
  return v;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      prompt: { type: 'string', default: '512' },
      'long-prompt': { type: 'string', default: '4096' },
      'max-tokens': { type: 'string', default: '32' },
      rounds: { type: 'string', default: '2' },
      'long-rounds': { type: 'string', default: '3' },
      concurrency: { type: 'string', default: '1,4,16' },
      transports: { type: 'string', default: 'tcp' },
      threads: { type: 'string', default: '1' },
      out: { type: 'string', default: 'bench/RESULTS-engine.md' },
    },
  });
  const promptTokens = Number(values.prompt);
  const longTokens = Number(values['long-prompt']);
  const maxTokens = Number(values['max-tokens']);
  const levels = values.concurrency!.split(',').map(Number);
  const maxC = Math.max(...levels);
  const common = [
    '--max-model-len',
    String(longTokens + 256),
    '--max-batch-size',
    String(maxC),
    '--max-queue',
    String(4 * maxC),
    '--num-blocks',
    String(Math.max(maxC * Math.ceil((promptTokens + 64) / 16) * 2, 2 * Math.ceil(longTokens / 16) + 64)),
    '--threads',
    values.threads!,
    '--transports',
    values.transports!,
  ];
  const log = (s: string): void => console.error(s);
  log(`starting engines (model small, ${values.transports}, ${values.threads} thread(s) each) ...`);
  const [both, prefill, decode] = await Promise.all([
    startEngine({ role: 'both', model: 'small', args: common, timeoutMs: 180_000 }),
    startEngine({ role: 'prefill', model: 'small', args: common, timeoutMs: 180_000 }),
    startEngine({ role: 'decode', model: 'small', args: common, timeoutMs: 180_000 }),
  ]);
  const rows: string[] = [];
  const json: Record<string, unknown> = {
    machine: { cpus: cpus().length, model: cpus()[0]?.model, loadavg: loadavg() },
  };
  try {
    let seed = 1000;
    const base = await cut(both.url, prompt(promptTokens, 1), promptTokens);
    // Warm-up: the handshake and first allocations, off the record.
    await viaPd(prefill, decode, `${seed++} ${base}`, 2);
    await viaBoth(both, `${seed++} ${base}`, 2);
    rows.push(
      '| concurrency | path | TTFT p50 (ms) | tokens/s (all requests) | requests |',
      '|---:|---|---:|---:|---:|',
    );
    const sweep: Record<string, unknown>[] = [];
    for (const c of levels) {
      const res: Record<'pd' | 'both', { ttft: number[]; tokens: number; wallMs: number; n: number }> = {
        pd: { ttft: [], tokens: 0, wallMs: 0, n: 0 },
        both: { ttft: [], tokens: 0, wallMs: 0, n: 0 },
      };
      for (let round = 0; round < Number(values.rounds); round++) {
        for (const path of round % 2 === 0 ? (['pd', 'both'] as const) : (['both', 'pd'] as const)) {
          const t0 = performance.now();
          const samples = await Promise.all(
            Array.from({ length: c }, () => {
              const text = `${seed++} ${base}`; // unique first token: no prefix-cache hits
              return path === 'pd' ? viaPd(prefill, decode, text, maxTokens) : viaBoth(both, text, maxTokens);
            }),
          );
          res[path].wallMs += performance.now() - t0;
          res[path].ttft.push(...samples.map((s) => s.ttftMs));
          res[path].tokens += samples.reduce((a, s) => a + s.tokens, 0);
          res[path].n += samples.length;
        }
      }
      for (const path of ['pd', 'both'] as const) {
        const r = res[path];
        const tps = r.tokens / (r.wallMs / 1000);
        rows.push(
          `| ${c} | ${path === 'pd' ? 'prefill -> decode' : '--role both'} | ${median(r.ttft).toFixed(0)} | ${tps.toFixed(1)} | ${r.n} |`,
        );
        sweep.push({ concurrency: c, path, ttftP50Ms: median(r.ttft), tokensPerSecond: tps, requests: r.n });
      }
      rows.push(
        `| ${c} | ratio P/D / both | ${(median(res.pd.ttft) / median(res.both.ttft)).toFixed(2)}x | ${(res.pd.tokens / res.pd.wallMs / (res.both.tokens / res.both.wallMs)).toFixed(2)}x | |`,
      );
      log(rows.slice(-3).join('\n'));
    }
    json['sweep'] = sweep;

    // The hand-off's share of TTFT for a long prompt: interleaved P/D and single-worker runs.
    const long = await cut(both.url, prompt(longTokens, 2), longTokens - 8);
    const n = await tokenCount(both.url, long);
    const pdT: number[] = [];
    const bothT: number[] = [];
    const before = {
      store: await metricSum(prefill.url, 'kvwire_engine_kv_handoff_seconds_sum', 'stage="store"'),
      load: await metricSum(decode.url, 'kvwire_engine_kv_handoff_seconds_sum', 'stage="load"'),
      xfer: await metricSum(decode.url, 'kvwire_pd_transfer_latency_seconds_sum'),
      bytes: await metricSum(decode.url, 'kvwire_pd_transfer_bytes_total'),
    };
    for (let i = 0; i < Number(values['long-rounds']); i++) {
      const a = `${seed++} ${long}`;
      const b = `${seed++} ${long}`;
      if (i % 2 === 0) {
        pdT.push((await viaPd(prefill, decode, a, 4)).ttftMs);
        bothT.push((await viaBoth(both, b, 4)).ttftMs);
      } else {
        bothT.push((await viaBoth(both, b, 4)).ttftMs);
        pdT.push((await viaPd(prefill, decode, a, 4)).ttftMs);
      }
      log(`long prompt ${i + 1}: P/D ${pdT.at(-1)!.toFixed(0)} ms, both ${bothT.at(-1)!.toFixed(0)} ms`);
    }
    const k = Number(values['long-rounds']);
    const store =
      ((await metricSum(prefill.url, 'kvwire_engine_kv_handoff_seconds_sum', 'stage="store"')) - before.store) / k;
    const load =
      ((await metricSum(decode.url, 'kvwire_engine_kv_handoff_seconds_sum', 'stage="load"')) - before.load) / k;
    const xfer = ((await metricSum(decode.url, 'kvwire_pd_transfer_latency_seconds_sum')) - before.xfer) / k;
    const bytes = ((await metricSum(decode.url, 'kvwire_pd_transfer_bytes_total')) - before.bytes) / k;
    const pd = median(pdT);
    const single = median(bothT);
    const handoffMs = (store + xfer + load) * 1000;
    const longRows = [
      `| prompt tokens | ${n} |`,
      `| KV moved per request | ${(bytes / 2 ** 20).toFixed(1)} MiB |`,
      `| TTFT, --role both (prefill compute alone), median | ${single.toFixed(0)} ms |`,
      `| TTFT, prefill -> decode, median | ${pd.toFixed(0)} ms |`,
      `| P/D over single-worker TTFT | ${((pd / single - 1) * 100).toFixed(1)}% |`,
      `| hand-off inside it: store (llama.cpp -> blocks) + transfer (UCX READ + fence) + load (blocks -> llama.cpp), mean | ${(store * 1000).toFixed(0)} + ${(xfer * 1000).toFixed(0)} + ${(load * 1000).toFixed(0)} = ${handoffMs.toFixed(0)} ms |`,
      `| hand-off share of the single-worker TTFT | ${((handoffMs / single) * 100).toFixed(1)}% (target <= 5%) |`,
    ];
    json['long'] = {
      promptTokens: n,
      bytes,
      pdTtftMs: pdT,
      bothTtftMs: bothT,
      storeMs: store * 1000,
      transferMs: xfer * 1000,
      loadMs: load * 1000,
    };
    const md = [
      '# kvwire engine: P/D against a single worker',
      '',
      `Generated by \`npm run bench:engine\` (bench/engine/bench-engine.ts) on ${new Date().toISOString().slice(0, 10)}.`,
      `Machine: ${cpus().length} cores (${cpus()[0]?.model ?? 'unknown CPU'}), **shared with other jobs while it ran** (load average at the end ${loadavg()
        .map((x) => x.toFixed(1))
        .join(', ')}); the two paths ran interleaved, so compare ratios, not absolute numbers.`,
      `Model: kvwire's generated \`small\` (8 layers, 8 KiB of KV per token), llama.cpp on CPU, ${values.threads} thread(s) per engine;`,
      `KV over UCX ${values.transports}; prompts of ~${promptTokens} tokens, ${maxTokens} tokens generated, temperature 0, no prefix-cache hits.`,
      'TTFT of the P/D path is measured as a client of the sidecar would see it: prefill request sent -> first streamed token from the decode worker.',
      '',
      rows.join('\n'),
      '',
      `## Hand-off of a ${longTokens}-token prompt (${k} interleaved runs each)`,
      '',
      '| measure | value |',
      '|---|---|',
      longRows.join('\n'),
      '',
    ].join('\n');
    writeFileSync(values.out!, md);
    writeFileSync(values.out!.replace(/\.md$/, '.json'), JSON.stringify(json, null, 2));
    console.log(md);
  } finally {
    await Promise.all([both.stop(), prefill.stop(), decode.stop()]);
  }
}

await main();
