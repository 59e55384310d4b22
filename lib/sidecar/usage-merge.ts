/**
 * Merges the prefill's `cached_tokens` into the decode response's `usage`, in a JSON body or in an
 * SSE stream (the chunk that carries `usage`, with `stream_options.include_usage`).
 *
 * The client sees one response; the prompt tokens the prefill found in its prefix cache are the
 * prompt tokens this request did not compute, so they are the response's cached tokens (see
 * {@link setCachedTokens} for why the decode worker's own figure is replaced, not added to).
 *
 * @packageDocumentation
 */
import { isJsonObject, setCachedTokens } from './nixlv2.js';

/**
 * The JSON body with `usage.prompt_tokens_details.cached_tokens` set to `cached`, or undefined
 * when the body is not a JSON object with a `usage` object (then it goes on unchanged).
 */
export function mergeUsageIntoJson(body: Buffer, cached: number): Buffer | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(body.toString('utf8'));
  } catch {
    return undefined;
  }
  if (!isJsonObject(parsed) || !setCachedTokens(parsed.usage, cached)) return undefined;
  return Buffer.from(JSON.stringify(parsed));
}

const USAGE_BYTES = Buffer.from('"usage"');
const USAGE_OBJECT = /"usage"\s*:\s*\{/;
const NEWLINE = 0x0a;

/**
 * Rewrites the usage chunk of an SSE stream as it passes, without holding anything back but an
 * incomplete line.
 *
 * Complete lines are released as soon as they arrive; only the bytes after the last newline of a
 * chunk wait for the next one (a partial line is of no use to a client anyway). A chunk without
 * the text `"usage"` is released as it is, unparsed. A `data:` line whose JSON has a `usage`
 * object is parsed, merged and written back as one line. Multi-line `data:` JSON (not produced
 * by OpenAI-compatible servers) is left unchanged.
 */
export class SseUsageMerger {
  private pending: Buffer | undefined;

  /** @param cached - the cached tokens the usage chunk reports. */
  constructor(private readonly cached: number) {}

  /** Takes a chunk from the worker; returns the bytes to send to the client now (maybe empty). */
  push(chunk: Buffer): Buffer {
    const data = this.pending === undefined ? chunk : Buffer.concat([this.pending, chunk]);
    const lastNewline = data.lastIndexOf(NEWLINE);
    if (lastNewline < 0) {
      this.pending = data;
      return Buffer.alloc(0);
    }
    this.pending = lastNewline === data.length - 1 ? undefined : data.subarray(lastNewline + 1);
    const complete = data.subarray(0, lastNewline + 1);
    return complete.indexOf(USAGE_BYTES) < 0 ? complete : this.rewrite(complete);
  }

  /** The stream ended: returns what is left (an unterminated last line, unchanged). */
  end(): Buffer {
    const rest = this.pending ?? Buffer.alloc(0);
    this.pending = undefined;
    return rest;
  }

  private rewrite(complete: Buffer): Buffer {
    // Split on '\n' keeping any '\r' with its line; the text ends with '\n', so the last piece is ''.
    const lines = complete.toString('utf8').split('\n');
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i]!;
      if (!line.startsWith('data:') || !USAGE_OBJECT.test(line)) continue;
      const cr = line.endsWith('\r') ? '\r' : '';
      const payload = line.slice(5, line.length - cr.length).trimStart();
      let parsed: unknown;
      try {
        parsed = JSON.parse(payload);
      } catch {
        continue;
      }
      if (isJsonObject(parsed) && setCachedTokens(parsed.usage, this.cached)) {
        lines[i] = `data: ${JSON.stringify(parsed)}${cr}`;
      }
    }
    return Buffer.from(lines.join('\n'));
  }
}
