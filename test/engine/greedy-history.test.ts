/**
 * Greedy output does not depend on what the engine served before: a prompt answered by a fresh
 * engine and by one that has served another turn of the same conversation first (so the prompt's
 * prefix comes from the prefix cache, loaded from blocks, and only the rest is computed) gives
 * the same token ids. The small model: its close logits make rounding differences visible (with
 * llama.cpp's flash attention on, 3 of 4 such prompts differed at token 0-5).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startEngine, type EngineProcess } from '../fixtures/engine-process.js';
import { post } from './helpers.js';

const SYSTEM =
  'You are a careful assistant for a railway timetable office. Rules: the trains go north and south, ' +
  'the times are written in a book, and every answer names the platform. Be brief and polite.';
const USERS = ['Tell me about the trains to the north please.', 'What time does the last one leave on a Sunday?'];

const ask = async (url: string, user: string): Promise<{ ids: number[]; cached: number }> => {
  const r = await post(`${url}/v1/chat/completions`, {
    model: 'small',
    messages: [
      { role: 'system', content: SYSTEM },
      { role: 'user', content: user },
    ],
    max_tokens: 24,
    temperature: 0,
    return_token_ids: true,
  });
  expect(r.status, JSON.stringify(r.body)).toBe(200);
  return { ids: r.body.choices[0]!.token_ids, cached: r.body.usage.prompt_tokens_details.cached_tokens };
};

describe('greedy output and the engine history (small model)', () => {
  let warm: EngineProcess;
  beforeAll(async () => {
    warm = await startEngine({ model: 'small', timeoutMs: 180_000 });
  }, 240_000);
  afterAll(async () => {
    await warm?.stop();
  });

  it('a prompt whose prefix comes from the prefix cache gets the same ids as on a fresh engine', async () => {
    await ask(warm.url, USERS[0]!);
    const hit = await ask(warm.url, USERS[1]!);
    expect(hit.cached).toBeGreaterThan(0);
    const fresh = await startEngine({ model: 'small', timeoutMs: 180_000 });
    try {
      const cold = await ask(fresh.url, USERS[1]!);
      expect(cold.cached).toBe(0);
      expect(hit.ids).toEqual(cold.ids);
    } finally {
      await fresh.stop();
    }
  }, 240_000);
});
