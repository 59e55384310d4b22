import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startEngine, type EngineProcess } from '../fixtures/engine-process.js';

// The real openai npm client against the engine: chat and completions, streaming and not.
describe('the openai client', () => {
  let engine: EngineProcess;
  let client: OpenAI;
  beforeAll(async () => {
    engine = await startEngine({ role: 'both' });
    client = new OpenAI({ baseURL: `${engine.url}/v1`, apiKey: 'unused', maxRetries: 0, timeout: 60_000 });
  });
  afterAll(async () => expect(await engine.stop()).toBe(0));

  it('lists the model', async () => {
    const models = await client.models.list();
    expect(models.data.map((m) => m.id)).toEqual(['tiny']);
  });

  it('completions, not streamed', async () => {
    const prompt = 'Once upon a time, in a land far away, there lived a fox.';
    const r = await client.completions.create({ model: 'tiny', prompt, max_tokens: 10, temperature: 0 });
    expect(r.object).toBe('text_completion');
    expect(r.choices[0]!.text.length).toBeGreaterThan(0);
    expect(r.choices[0]!.finish_reason).toBe('length');
    const n = (
      (await (
        await fetch(`${engine.url}/tokenize`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ prompt }),
        })
      ).json()) as { count: number }
    ).count;
    expect(r.usage).toMatchObject({ completion_tokens: 10, prompt_tokens: n, total_tokens: n + 10 });
    // The same prompt again: its full blocks (all but the last token's) come from the prefix cache.
    const again = await client.completions.create({ model: 'tiny', prompt, max_tokens: 10, temperature: 0 });
    expect(again.choices[0]!.text).toBe(r.choices[0]!.text);
    expect(again.usage?.prompt_tokens_details?.cached_tokens).toBe(Math.floor((n - 1) / 16) * 16);
    expect(Math.floor((n - 1) / 16)).toBeGreaterThan(1);
  });

  it('completions, streamed, with usage', async () => {
    const full = await client.completions.create({
      model: 'tiny',
      prompt: 'The quick brown fox',
      max_tokens: 12,
      temperature: 0,
    });
    const stream = await client.completions.create({
      model: 'tiny',
      prompt: 'The quick brown fox',
      max_tokens: 12,
      temperature: 0,
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = '';
    let chunks = 0;
    let usage: OpenAI.CompletionUsage | undefined | null;
    for await (const c of stream) {
      chunks++;
      if (c.choices.length > 0) text += c.choices[0]!.text;
      if (c.usage) usage = c.usage;
    }
    expect(chunks).toBeGreaterThan(3);
    expect(text).toBe(full.choices[0]!.text);
    expect(usage?.completion_tokens).toBe(12);
  });

  it('chat, not streamed and streamed, same text', async () => {
    const messages = [
      { role: 'system' as const, content: 'You are terse.' },
      { role: 'user' as const, content: 'Name a colour.' },
    ];
    const r = await client.chat.completions.create({ model: 'tiny', messages, max_tokens: 16, temperature: 0 });
    expect(r.object).toBe('chat.completion');
    expect(r.choices[0]!.message.role).toBe('assistant');
    const content = r.choices[0]!.message.content ?? '';
    expect(content.length).toBeGreaterThan(0);
    const stream = await client.chat.completions.create({
      model: 'tiny',
      messages,
      max_tokens: 16,
      temperature: 0,
      stream: true,
    });
    let streamed = '';
    let finish: string | null = null;
    for await (const c of stream) {
      streamed += c.choices[0]?.delta.content ?? '';
      finish = c.choices[0]?.finish_reason ?? finish;
    }
    expect(streamed).toBe(content);
    expect(finish).toBe('length');
    // /tokenize with the same messages gives the prompt the chat completion counted.
    const tok = (await (
      await fetch(`${engine.url}/tokenize`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'tiny', messages }),
      })
    ).json()) as { count: number; max_model_len: number; tokens: number[] };
    expect(tok.count).toBe(r.usage?.prompt_tokens);
    expect(tok.max_model_len).toBe(4096);
    expect(tok.tokens[0]).toBe(1);
  });

  it('x-request-id is echoed, names the response and is logged', async () => {
    const r = await fetch(`${engine.url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-request-id': 'trace-me-123' },
      body: JSON.stringify({ model: 'tiny', prompt: 'log me', max_tokens: 2 }),
    });
    expect(r.headers.get('x-request-id')).toBe('trace-me-123');
    expect(((await r.json()) as { id: string }).id).toBe('cmpl-trace-me-123');
    for (let i = 0; i < 50 && !engine.stderr().includes('trace-me-123'); i++)
      await new Promise((res) => setTimeout(res, 20));
    expect(engine.stderr()).toMatch(
      /kvwire engine: trace-me-123 completion length prompt=\d+ cached=\d+ completion=2 /,
    );
  });

  it('an unknown model is a NotFoundError, as the client sees it', async () => {
    await expect(client.completions.create({ model: 'gpt-9', prompt: 'x', max_tokens: 1 })).rejects.toBeInstanceOf(
      OpenAI.NotFoundError,
    );
  });
});
