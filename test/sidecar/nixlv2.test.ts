import { describe, expect, it } from 'vitest';
import {
  cachedTokensOf,
  decodeRequestBody,
  prefillRequestBody,
  setCachedTokens,
  withoutClientKvParams,
} from '../../lib/sidecar/nixlv2.js';

describe('prefill and decode bodies', () => {
  const original = {
    model: 'm',
    prompt: 'p',
    max_tokens: 50,
    min_tokens: 5,
    stream: true,
    stream_options: { include_usage: true },
    kv_transfer_params: { remote_host: 'x' },
    temperature: 0,
  };

  it('prefill: remote decode, no stream, one token, no stream_options or min_tokens', () => {
    const p = prefillRequestBody(original, 'completions');
    expect(p).toEqual({
      model: 'm',
      prompt: 'p',
      temperature: 0,
      max_tokens: 1,
      stream: false,
      kv_transfer_params: {
        do_remote_decode: true,
        do_remote_prefill: false,
        remote_engine_id: null,
        remote_request_id: null,
        remote_block_ids: null,
        remote_host: null,
        remote_port: null,
      },
    });
    expect(original.max_tokens).toBe(50);
    expect(prefillRequestBody({ messages: [] }, 'chat')).toMatchObject({ max_tokens: 1, max_completion_tokens: 1 });
    expect(prefillRequestBody({ prompt: 'p', max_completion_tokens: 9 }, 'completions')).toMatchObject({
      max_completion_tokens: 1,
    });
    expect('max_completion_tokens' in prefillRequestBody({ prompt: 'p' }, 'completions')).toBe(false);
  });

  it('decode: the client body as sent, with the prefill params', () => {
    const params = { do_remote_prefill: true, remote_block_ids: [1] };
    expect(decodeRequestBody(original, params)).toEqual({ ...original, kv_transfer_params: params });
  });
});

describe('usage', () => {
  it('reads cached tokens defensively', () => {
    expect(cachedTokensOf({ usage: { prompt_tokens_details: { cached_tokens: 5 } } })).toBe(5);
    for (const r of [
      {},
      { usage: null },
      { usage: { prompt_tokens_details: null } },
      { usage: { prompt_tokens_details: { cached_tokens: -1 } } },
      { usage: { prompt_tokens_details: { cached_tokens: '5' } } },
      { usage: { prompt_tokens_details: { cached_tokens: 1.5 } } },
    ]) {
      expect(cachedTokensOf(r as Record<string, unknown>)).toBeUndefined();
    }
  });

  it('sets usage cached tokens, creating prompt_tokens_details when missing', () => {
    const u: Record<string, unknown> = { prompt_tokens: 3 };
    expect(setCachedTokens(u, 4)).toBe(true);
    expect(u).toEqual({ prompt_tokens: 3, prompt_tokens_details: { cached_tokens: 4 } });
    expect(setCachedTokens(u, 1)).toBe(true);
    expect(u.prompt_tokens_details).toEqual({ cached_tokens: 1 });
    expect(setCachedTokens(null, 1)).toBe(false);
  });
});

describe('client kv_transfer_params', () => {
  it('passes a body without the field unparsed (same bytes)', () => {
    const raw = Buffer.from('{"model":"m","prompt":"kv transfer params"}');
    expect(withoutClientKvParams(raw)).toEqual({ kind: 'unchanged' });
  });

  it('strips the field, written plainly or with \\u escapes', () => {
    for (const text of [
      '{"prompt":"p","kv_transfer_params":{"remote_host":"h"}}',
      '{"prompt":"p","\\u006bv_transfer_params":{"remote_host":"h"}}',
    ]) {
      const r = withoutClientKvParams(Buffer.from(text));
      expect(r.kind).toBe('stripped');
      expect(r.kind === 'stripped' && JSON.parse(r.body.toString())).toEqual({ prompt: 'p' });
    }
    // Escapes elsewhere are parsed but nothing changes.
    expect(withoutClientKvParams(Buffer.from('{"prompt":"\\u00e9"}'))).toEqual({ kind: 'unchanged' });
  });

  it('refuses to vouch for a body it cannot parse that might carry the field', () => {
    expect(withoutClientKvParams(Buffer.from('{"kv_transfer_params": {"a": NaN}}'))).toEqual({ kind: 'unparseable' });
  });
});
