import { describe, expect, it } from 'vitest';
import { mergeUsageIntoJson, SseUsageMerger } from '../../lib/sidecar/usage-merge.js';

describe('JSON bodies', () => {
  it('sets usage.prompt_tokens_details.cached_tokens', () => {
    const out = mergeUsageIntoJson(
      Buffer.from('{"id":"x","usage":{"prompt_tokens":10,"prompt_tokens_details":{"cached_tokens":2}}}'),
      5,
    );
    expect(JSON.parse(out!.toString())).toEqual({
      id: 'x',
      usage: { prompt_tokens: 10, prompt_tokens_details: { cached_tokens: 5 } },
    });
  });

  it('leaves bodies without usage, or not JSON, alone', () => {
    expect(mergeUsageIntoJson(Buffer.from('{"id":"x"}'), 5)).toBeUndefined();
    expect(mergeUsageIntoJson(Buffer.from('{"usage":null}'), 5)).toBeUndefined();
    expect(mergeUsageIntoJson(Buffer.from('nope'), 5)).toBeUndefined();
  });
});

describe('SSE streams', () => {
  const stream =
    'data: {"choices":[{"text":"a"}],"usage":null}\n\n' +
    'data: {"choices":[{"text":"b"}],"usage":null}\r\n\r\n' +
    'data: {"choices":[],"usage": {"prompt_tokens":10,"prompt_tokens_details":{"cached_tokens":1}}}\n\n' +
    'data: [DONE]\n\n';

  function run(chunks: string[], extra: number): { out: string; emitted: string[] } {
    const m = new SseUsageMerger(extra);
    const emitted = chunks.map((c) => m.push(Buffer.from(c)).toString());
    emitted.push(m.end().toString());
    return { out: emitted.join(''), emitted };
  }

  it('rewrites only the usage chunk, however the stream is cut into chunks', () => {
    const expected = stream.replace(
      '"usage": {"prompt_tokens":10,"prompt_tokens_details":{"cached_tokens":1}}',
      '"usage":{"prompt_tokens":10,"prompt_tokens_details":{"cached_tokens":3}}',
    );
    const bytes = Buffer.from(stream);
    for (let size = 1; size <= bytes.length; size += 7) {
      const chunks: string[] = [];
      for (let i = 0; i < bytes.length; i += size) chunks.push(bytes.subarray(i, i + size).toString('latin1'));
      const m = new SseUsageMerger(3);
      const out = Buffer.concat([...chunks.map((c) => m.push(Buffer.from(c, 'latin1'))), m.end()]).toString();
      expect(out).toBe(expected);
    }
  });

  it('releases each complete line at once: nothing is held but a partial line', () => {
    const { emitted } = run(['data: {"choices":[{"text":"a"}]}\n', '\ndata: {"x"', ':1}\n\n'], 3);
    expect(emitted[0]).toBe('data: {"choices":[{"text":"a"}]}\n');
    expect(emitted[1]).toBe('\n');
    expect(emitted[2]).toBe('data: {"x":1}\n\n');
  });

  it('keeps multi-byte characters split across chunks intact', () => {
    const text = 'data: {"choices":[{"text":"héllo €"}],"usage":{"prompt_tokens":1}}\n\n';
    const bytes = Buffer.from(text);
    const m = new SseUsageMerger(2);
    const out = Buffer.concat([
      m.push(bytes.subarray(0, 30)),
      m.push(bytes.subarray(30, 31)),
      m.push(bytes.subarray(31)),
      m.end(),
    ]).toString();
    expect(JSON.parse(out.slice(6))).toEqual({
      choices: [{ text: 'héllo €' }],
      usage: { prompt_tokens: 1, prompt_tokens_details: { cached_tokens: 2 } },
    });
  });

  it('passes an unterminated last line through at the end', () => {
    expect(run(['data: [DONE]'], 1).out).toBe('data: [DONE]');
  });
});
