import { afterEach, describe, expect, it } from 'vitest';
import { KvwireError } from '../../lib/errors.js';
import { PromptTokenizer } from '../../lib/scheduler/tokenizer.js';
import { FakeEngine, tokenizeText } from './fake-engine.js';

describe("PromptTokenizer (the engine's /tokenize, cached)", () => {
  const engines: FakeEngine[] = [];
  afterEach(async () => {
    for (const e of engines.splice(0)) await e.close();
  });

  it('asks the engine once per prompt, shares concurrent calls, and bounds the cache by prompts and tokens', async () => {
    const e = await new FakeEngine('e').start();
    engines.push(e);
    const results: string[] = [];
    const t = new PromptTokenizer({ cacheEntries: 2, cacheTokens: 10_000, onResult: (r) => results.push(r) });
    const [a, b] = await Promise.all([
      t.tokenize([e.url], 'm', { kind: 'text', prompt: 'hello' }),
      t.tokenize([e.url], 'm', { kind: 'text', prompt: 'hello' }),
    ]);
    expect([...a]).toEqual(tokenizeText('hello'));
    expect(b).toBe(a);
    expect(e.tokenizeCalls).toBe(1);
    await t.tokenize([e.url], 'm', { kind: 'text', prompt: 'hello' });
    expect(e.tokenizeCalls).toBe(1);
    expect(results).toEqual(['miss', 'miss', 'hit']);
    await t.tokenize([e.url], 'm', { kind: 'chat', messages: [{ role: 'user', content: 'x' }], options: {} });
    await t.tokenize([e.url], 'm', { kind: 'text', prompt: 'third' });
    expect(t.size).toBe(2);
    const big = new PromptTokenizer({ cacheTokens: 10 });
    await big.tokenize([e.url], 'm', { kind: 'text', prompt: 'x'.repeat(8) });
    await big.tokenize([e.url], 'm', { kind: 'text', prompt: 'y'.repeat(8) });
    expect(big.size).toBe(1);
    // Token ids given in the request are used as they are, without asking.
    expect([...(await t.tokenize([], 'm', { kind: 'tokens', tokens: [5, 6] }))]).toEqual([5, 6]);
  });

  it('tries the next engine, and says why when none answers', async () => {
    const e = await new FakeEngine('e').start();
    engines.push(e);
    const t = new PromptTokenizer({ timeoutMs: 2_000 });
    expect([...(await t.tokenize(['http://127.0.0.1:1', e.url], 'm', { kind: 'text', prompt: 'ok' }))]).toEqual(
      tokenizeText('ok'),
    );
    const err = await t.tokenize(['http://127.0.0.1:1'], 'm', { kind: 'text', prompt: 'no' }).catch((x: unknown) => x);
    expect(KvwireError.is(err, 'ERR_KVWIRE_BACKEND_UNAVAILABLE')).toBe(true);
    expect((err as Error).message).toMatch(/could not tokenize the prompt \(http:\/\/127\.0\.0\.1:1\/tokenize failed/);
  });
});
