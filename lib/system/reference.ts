/**
 * The token-for-token check: every request the demo sent through the P/D path is sent again, with
 * the same messages and `max_tokens`, greedy, to one `--role both` worker that computes everything
 * itself (no prefill worker, no KV transfer), and the two outputs are compared.
 *
 * When the streamed answer carried token ids (`return_token_ids`), the ids are compared; otherwise
 * the text and the completion token count, and the summary says which.
 *
 * @packageDocumentation
 */
import type { RequestRecord } from './client.js';

/** The reference's output for one request and the verdict. */
export interface ReferenceCheck {
  /** The request's x-request-id. */
  readonly id: string;
  /** True when the outputs are equal. */
  readonly matched: boolean;
  /** What was compared. */
  readonly by: 'token ids' | 'text and token count' | 'not compared';
  /** The reference's token ids. */
  readonly referenceTokenIds?: readonly number[];
  /** The reference's text. */
  readonly referenceText?: string;
  /** Why it did not match (first differing position), or why it was not compared. */
  readonly detail?: string;
}

/** Options of {@link checkAgainstReference}. */
export interface ReferenceOptions {
  /** The reference worker's base URL. */
  readonly url: string;
  /** Model name. */
  readonly model: string;
  /** The requests to check. */
  readonly records: readonly RequestRecord[];
  /** Requests at once; default 2. */
  readonly concurrency?: number;
  /** Deadline per request; default 300 s. */
  readonly timeoutMs?: number;
  /** Stops the check. */
  readonly signal?: AbortSignal;
  /** Called after each check. */
  readonly onChecked?: (check: ReferenceCheck, done: number) => void;
}

interface ReferenceAnswer {
  choices?: { message?: { content?: string }; token_ids?: number[] }[];
  usage?: { completion_tokens?: number };
}

function firstDifference(a: readonly number[], b: readonly number[]): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return n;
}

/** Compares one record with the reference's answer (pure; exported for tests). */
export function compareWithReference(r: RequestRecord, answer: ReferenceAnswer): ReferenceCheck {
  const choice = answer.choices?.[0];
  const refText = choice?.message?.content ?? '';
  const refIds = choice?.token_ids;
  if (r.tokenIds !== undefined && Array.isArray(refIds)) {
    const matched = r.tokenIds.length === refIds.length && firstDifference(r.tokenIds, refIds) === refIds.length;
    const at = firstDifference(r.tokenIds, refIds);
    return {
      id: r.id,
      matched,
      by: 'token ids',
      referenceTokenIds: refIds,
      referenceText: refText,
      ...(matched
        ? {}
        : {
            detail: `token ${at} differs: P/D ${r.tokenIds[at] ?? '(end)'} vs reference ${refIds[at] ?? '(end)'} (${r.tokenIds.length} vs ${refIds.length} tokens)`,
          }),
    };
  }
  const refCount = answer.usage?.completion_tokens;
  const matched = r.text === refText && r.completionTokens === refCount;
  return {
    id: r.id,
    matched,
    by: 'text and token count',
    referenceText: refText,
    ...(matched
      ? {}
      : {
          detail: `text differs at character ${firstDifference(
            [...r.text].map((c) => c.codePointAt(0)!),
            [...refText].map((c) => c.codePointAt(0)!),
          )} (${r.completionTokens} vs ${refCount} tokens)`,
        }),
  };
}

/** Checks every record that has an answer; a failed request is reported as not compared. */
export async function checkAgainstReference(o: ReferenceOptions): Promise<ReferenceCheck[]> {
  const out: ReferenceCheck[] = new Array<ReferenceCheck>(o.records.length);
  let next = 0;
  let done = 0;
  const worker = async (): Promise<void> => {
    while (next < o.records.length && o.signal?.aborted !== true) {
      const i = next++;
      const r = o.records[i]!;
      let check: ReferenceCheck;
      if (r.error !== undefined) {
        check = { id: r.id, matched: false, by: 'not compared', detail: `the request failed: ${r.error}` };
      } else {
        check = await ask(r);
      }
      out[i] = check;
      o.onChecked?.(check, ++done);
    }
  };
  const ask = async (r: RequestRecord): Promise<ReferenceCheck> => {
    const signals = [AbortSignal.timeout(o.timeoutMs ?? 300_000), ...(o.signal === undefined ? [] : [o.signal])];
    try {
      const res = await fetch(`${o.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-request-id': `${r.id}-reference` },
        body: JSON.stringify({
          model: o.model,
          messages: r.messages,
          max_tokens: r.maxTokens,
          temperature: 0,
          return_token_ids: true,
        }),
        signal: AbortSignal.any(signals),
      });
      const text = await res.text();
      if (!res.ok)
        return {
          id: r.id,
          matched: false,
          by: 'not compared',
          detail: `the reference answered ${res.status}: ${text}`,
        };
      return compareWithReference(r, JSON.parse(text) as ReferenceAnswer);
    } catch (e) {
      return { id: r.id, matched: false, by: 'not compared', detail: `the reference failed: ${(e as Error).message}` };
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, o.concurrency ?? 2) }, worker));
  return out.filter((c) => c !== undefined);
}
