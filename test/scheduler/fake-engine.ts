/**
 * A stand-in for a vLLM-compatible engine (or a sidecar in front of one), in vLLM's formats: `POST
 * /tokenize` ({count, max_model_len, tokens}; one token per UTF-8 byte), `GET /health`, `GET
 * /metrics` (vLLM's gauge names, values the test sets), `POST /v1/completions` and `/v1/chat/
 * completions` (JSON or SSE), and, when asked, a vLLM KV events publisher that announces the
 * prompt's full blocks after each request, as an engine caching its prefix does. Test helper.
 */
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { FakeVllmPublisher } from '../kv-index/vllm-publisher.js';

export interface Seen {
  readonly path: string;
  readonly headers: IncomingHttpHeaders;
  readonly body: Record<string, unknown>;
}

export function tokenizeText(text: string): number[] {
  return [...Buffer.from(text, 'utf8')];
}

export function chatText(messages: { role: string; content: string }[]): string {
  return messages.map((m) => `<${m.role}>${m.content}`).join('') + '<assistant>';
}

export class FakeEngine {
  readonly server: Server;
  readonly seen: Seen[] = [];
  url = '';
  port = 0;
  metrics = { waiting: 0, running: 0, kvUsage: 0.1 };
  healthy = true;
  tokenizeCalls = 0;
  /** Resolves a streaming answer's second chunk; the test sets it to hold the stream open. */
  holdStream: Promise<void> | undefined;
  publisher: FakeVllmPublisher | undefined;
  /** A Server-Timing header its completions answer with (as kvwire engines and sidecars do). */
  serverTiming: string | undefined;
  private hash = 1;
  private readonly parents = new Map<string, number>();

  constructor(
    readonly name: string,
    readonly blockSize = 16,
  ) {
    this.server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        void this.answer(req.method ?? 'GET', req.url ?? '/', req.headers, Buffer.concat(chunks).toString('utf8'), res);
      });
    });
  }

  async start(withEvents = false, port = 0): Promise<this> {
    await new Promise<void>((r) => this.server.listen(port, '127.0.0.1', () => r()));
    this.port = (this.server.address() as AddressInfo).port;
    this.url = `http://127.0.0.1:${this.port}`;
    if (withEvents) {
      this.publisher = new FakeVllmPublisher(`kv@${this.name}@m`, 'map');
      await this.publisher.start();
    }
    return this;
  }

  promptTokens(body: Record<string, unknown>): number[] {
    if (Array.isArray(body.messages))
      return tokenizeText(chatText(body.messages as { role: string; content: string }[]));
    if (typeof body.prompt === 'string') return tokenizeText(body.prompt);
    return body.prompt as number[];
  }

  /** Publishes BlockStored for the full blocks of `tokens`, chained as vLLM does. */
  async cache(tokens: number[]): Promise<void> {
    if (this.publisher === undefined) return;
    const full = Math.floor(tokens.length / this.blockSize);
    const parent: number | null = null;
    const hashes: number[] = [];
    for (let i = 0; i < full; i++) {
      const key = tokens.slice(0, (i + 1) * this.blockSize).join(',');
      let h = this.parents.get(key);
      if (h === undefined) {
        h = this.hash++;
        this.parents.set(key, h);
      }
      hashes.push(h);
    }
    if (hashes.length === 0) return;
    await this.publisher.publish([
      {
        type: 'BlockStored',
        block_hashes: hashes,
        parent_block_hash: parent,
        token_ids: tokens.slice(0, full * this.blockSize),
        block_size: this.blockSize,
        lora_id: null,
        medium: 'GPU',
        lora_name: null,
      },
    ]);
  }

  private async answer(
    method: string,
    url: string,
    headers: IncomingHttpHeaders,
    text: string,
    res: import('node:http').ServerResponse,
  ): Promise<void> {
    const path = new URL(url, 'http://x').pathname;
    const json = (status: number, doc: unknown, extra: Record<string, string> = {}): void => {
      const t = JSON.stringify(doc);
      res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(t), ...extra });
      res.end(t);
    };
    if (path === '/health') {
      res.writeHead(this.healthy ? 200 : 503);
      res.end();
      return;
    }
    if (path === '/metrics') {
      res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' });
      res.end(
        [
          '# HELP vllm:num_requests_waiting Number of requests waiting to be processed.',
          '# TYPE vllm:num_requests_waiting gauge',
          `vllm:num_requests_waiting{engine="0",model_name="m"} ${this.metrics.waiting}`,
          `vllm:num_requests_running{engine="0",model_name="m"} ${this.metrics.running}`,
          `vllm:kv_cache_usage_perc{engine="0",model_name="m"} ${this.metrics.kvUsage}`,
          '',
        ].join('\n'),
      );
      return;
    }
    const body = text === '' ? {} : (JSON.parse(text) as Record<string, unknown>);
    if (path === '/tokenize') {
      this.tokenizeCalls++;
      const tokens = this.promptTokens(body);
      json(200, { count: tokens.length, max_model_len: 8192, tokens });
      return;
    }
    this.seen.push({ path, headers, body });
    if (path === '/v1/completions' || path === '/v1/chat/completions') {
      const tokens = this.promptTokens(body);
      if (body.stream === true) {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.write(`data: ${JSON.stringify({ choices: [{ text: `${this.name}-1` }] })}\n\n`);
        await this.holdStream;
        res.write(`data: ${JSON.stringify({ choices: [{ text: `${this.name}-2` }] })}\n\n`);
        res.end('data: [DONE]\n\n');
      } else {
        json(
          200,
          {
            id: 'cmpl-1',
            object: 'text_completion',
            model: body.model,
            served_by: this.name,
            choices: [{ index: 0, text: 'ok' }],
            usage: { prompt_tokens: tokens.length, completion_tokens: 1 },
          },
          this.serverTiming === undefined ? {} : { 'server-timing': this.serverTiming },
        );
      }
      await this.cache(tokens);
      return;
    }
    json(200, { path, method, served_by: this.name });
  }

  async close(): Promise<void> {
    await new Promise<void>((r) => {
      this.server.close(() => r());
      this.server.closeAllConnections();
    });
    await this.publisher?.close();
  }
}
