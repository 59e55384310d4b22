/**
 * Sends the workload through the router with the real `openai` npm client, streaming, sessions in
 * parallel (`concurrency` at once) and each session's turns in order, and records what a client
 * sees of every request: when the answer's headers and first token arrived, the text and token
 * ids, usage, the router's decision (`x-kvwire-decision`) and the `Server-Timing` entries the
 * components added on the way.
 *
 * `openai` is an optional peer dependency of kvwire (a devDependency here): the demo loads it
 * when it runs and says how to install it when it is missing.
 *
 * @packageDocumentation
 */
import type OpenAI from 'openai';
import { ErrorCode, KvwireError } from '../errors.js';
import { parseServerTiming, type ServerTimingEntry } from './server-timing.js';
import type { Workload } from './workload.js';

/** A chat message as the demo sends it. */
export interface ChatMessage {
  /** `system`, `user` or `assistant`. */
  readonly role: 'system' | 'user' | 'assistant';
  /** Its text. */
  readonly content: string;
}

/** What the client saw of one request. Times are ms since the run started. */
export interface RequestRecord {
  /** Order of start (0-based). */
  readonly index: number;
  /** The `x-request-id` sent (the engines name their answers after it). */
  readonly id: string;
  /** Session id. */
  readonly session: string;
  /** Turn in the session (0-based). */
  readonly turn: number;
  /** The session's shared system prompt, or null. */
  readonly systemPrompt: number | null;
  /** The messages sent. */
  readonly messages: readonly ChatMessage[];
  /** `max_tokens`. */
  readonly maxTokens: number;
  /** Sent. */
  start: number;
  /** Response headers arrived. */
  headers?: number;
  /** First generated text arrived. */
  firstToken?: number;
  /** The stream ended. */
  end?: number;
  /** HTTP status, when an answer came. */
  status?: number;
  /** The generated text. */
  text: string;
  /** The generated token ids, when the engine streams them (`return_token_ids`). */
  tokenIds?: number[];
  /** usage.prompt_tokens. */
  promptTokens?: number;
  /** usage.completion_tokens. */
  completionTokens?: number;
  /** usage.prompt_tokens_details.cached_tokens. */
  cachedTokens?: number;
  /** The router's `x-kvwire-decision` header. */
  decision?: string;
  /** Server-Timing entries. */
  timing: ServerTimingEntry[];
  /** What went wrong, if anything. */
  error?: string;
}

/** Options of {@link driveWorkload}. */
export interface DriveOptions {
  /** The router's base URL (`http://127.0.0.1:8080`). */
  readonly baseUrl: string;
  /** Model name. */
  readonly model: string;
  /** Traffic. */
  readonly workload: Workload;
  /** Sessions in flight at once; default 4. */
  readonly concurrency?: number;
  /** Deadline of one request; default 300 s (a busy 2-core machine). */
  readonly requestTimeoutMs?: number;
  /** Stops sending (requests in flight are aborted). */
  readonly signal?: AbortSignal;
  /** Prefix of every x-request-id; default `demo`. */
  readonly idPrefix?: string;
  /** Called after each request, in completion order, with the number done so far. */
  readonly onDone?: (record: RequestRecord, done: number) => void;
  /** The run's clock, ms (records' times); default ms since this call. */
  readonly clock?: () => number;
}

/** Loads the `openai` package, or says how to install it. */
export async function loadOpenAi(): Promise<typeof OpenAI> {
  try {
    return (await import('openai')).default;
  } catch (e) {
    throw new KvwireError(
      ErrorCode.UNSUPPORTED,
      `the demo drives the system with the openai npm client, which is not installed (${(e as Error).message}): npm install openai@6`,
      { field: 'openai' },
      { cause: e },
    );
  }
}

interface UsageLike {
  prompt_tokens?: number;
  completion_tokens?: number;
  prompt_tokens_details?: { cached_tokens?: number } | null;
}

/** Runs the workload; resolves with one record per request, in start order. */
export async function driveWorkload(o: DriveOptions): Promise<RequestRecord[]> {
  const OpenAIClient = await loadOpenAi();
  const client = new OpenAIClient({
    baseURL: `${o.baseUrl}/v1`,
    apiKey: 'kvwire-demo', // the router asks for none; the client insists on one
    maxRetries: 0, // a failure must show, not be retried away
    timeout: o.requestTimeoutMs ?? 300_000,
  });
  const t0 = performance.now();
  const now = o.clock ?? ((): number => performance.now() - t0);
  const records: RequestRecord[] = [];
  const prefix = o.idPrefix ?? 'demo';
  let nextSession = 0;
  let done = 0;
  const { workload } = o;

  // A function, not a property read: the signal can abort between two reads in one loop.
  const stopped = (): boolean => o.signal?.aborted === true;
  const runSession = async (): Promise<void> => {
    while (nextSession < workload.sessions.length && !stopped()) {
      const session = workload.sessions[nextSession++]!;
      const history: ChatMessage[] =
        session.systemPrompt === null
          ? []
          : [{ role: 'system', content: workload.systemPrompts[session.systemPrompt]! }];
      let sessionToken: string | undefined;
      let failed = false;
      for (const [turn, t] of session.turns.entries()) {
        const messages: ChatMessage[] = [...history, { role: 'user', content: t.user }];
        const r: RequestRecord = {
          index: records.length,
          id: `${prefix}-${session.id}-t${turn}`,
          session: session.id,
          turn,
          systemPrompt: session.systemPrompt,
          messages,
          maxTokens: t.maxTokens,
          start: now(),
          text: '',
          timing: [],
        };
        records.push(r);
        if (failed || stopped()) {
          r.error = failed ? 'not sent: an earlier turn of its session failed' : 'not sent: the run was stopped';
          r.end = r.start;
        } else {
          sessionToken = await send(r, sessionToken);
          if (r.error !== undefined) failed = true;
          else history.push({ role: 'user', content: t.user }, { role: 'assistant', content: r.text });
        }
        o.onDone?.(r, ++done);
      }
    }
  };

  const send = async (r: RequestRecord, sessionToken: string | undefined): Promise<string | undefined> => {
    try {
      const params = {
        model: o.model,
        messages: r.messages.map((m) => ({ role: m.role, content: m.content })),
        max_tokens: r.maxTokens,
        temperature: 0,
        stream: true as const,
        stream_options: { include_usage: true },
        // vLLM's extension: the token ids of each chunk, for the token-for-token check.
        return_token_ids: true,
      };
      const { data: stream, response } = await client.chat.completions
        .create(params as OpenAI.Chat.ChatCompletionCreateParamsStreaming, {
          headers: {
            'x-request-id': r.id,
            ...(sessionToken === undefined ? {} : { 'x-session-token': sessionToken }),
          },
          ...(o.signal === undefined ? {} : { signal: o.signal }),
        })
        .withResponse();
      r.headers = now();
      r.status = response.status;
      r.decision = response.headers.get('x-kvwire-decision') ?? undefined;
      r.timing = parseServerTiming(response.headers.get('server-timing'));
      const ids: number[] = [];
      let sawIds = false;
      for await (const chunk of stream) {
        const choice = chunk.choices[0] as
          (OpenAI.Chat.ChatCompletionChunk.Choice & { token_ids?: number[] }) | undefined;
        const delta = choice?.delta?.content ?? '';
        if (delta !== '' && r.firstToken === undefined) r.firstToken = now();
        r.text += delta;
        if (Array.isArray(choice?.token_ids)) {
          sawIds = true;
          ids.push(...choice.token_ids);
        }
        const usage = chunk.usage as UsageLike | null | undefined;
        if (usage) {
          r.promptTokens = usage.prompt_tokens;
          r.completionTokens = usage.completion_tokens;
          r.cachedTokens = usage.prompt_tokens_details?.cached_tokens ?? 0;
        }
      }
      r.end = now();
      if (sawIds) r.tokenIds = ids;
      r.firstToken ??= r.end; // an empty answer: its first token is its end
      return response.headers.get('x-session-token') ?? sessionToken;
    } catch (e) {
      r.end = now();
      const status = (e as { status?: number }).status;
      if (status !== undefined) r.status = status;
      r.error = `${status === undefined ? '' : `HTTP ${status}: `}${(e as Error).message}`;
      return sessionToken;
    }
  };

  await Promise.all(Array.from({ length: Math.max(1, o.concurrency ?? 4) }, runSession));
  return records;
}
