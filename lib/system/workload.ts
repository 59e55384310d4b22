/**
 * The demo's traffic: chat sessions that share a few long system prompts (so the decode workers'
 * prefix caches and the router's prefix-aware placement have something to find) and run several
 * turns each (each turn resends the conversation so far, as a chat client does), plus a share of
 * one-off requests with a long unique document (nothing cached anywhere: always worth a separate
 * prefill). Deterministic for a seed; the assistant turns come from the run itself.
 *
 * Sizes are in characters, so one workload fits both runtimes: the generated llama models spend
 * about 1.3 characters per token, the synthetic runtime one byte per token.
 *
 * @packageDocumentation
 */
import { ErrorCode, KvwireError } from '../errors.js';
import { mulberry32 } from '../util/mulberry32.js';

/** One user turn. */
export interface Turn {
  /** The user's message. */
  readonly user: string;
  /** `max_tokens` of the answer. */
  readonly maxTokens: number;
}

/** A conversation: an optional shared system prompt, then turns sent one after the other. */
export interface Session {
  /** `s0`, `s1`, ... */
  readonly id: string;
  /** Index into {@link Workload.systemPrompts}, or null (a one-off with a unique document). */
  readonly systemPrompt: number | null;
  /** The turns, in order. */
  readonly turns: readonly Turn[];
}

/** The demo's traffic. */
export interface Workload {
  /** The shared system prompts. */
  readonly systemPrompts: readonly string[];
  /** Sessions; their turns add up to `requests`. */
  readonly sessions: readonly Session[];
  /** Total requests (turns). */
  readonly requests: number;
}

/** Options of {@link demoWorkload}. */
export interface WorkloadOptions {
  /** Total requests; default 100. */
  readonly requests?: number;
  /** Seed; default 1. */
  readonly seed?: number;
  /** Shared system prompts; default 4. */
  readonly systemPrompts?: number;
  /** System prompt length range in characters; default [600, 900]. */
  readonly systemChars?: readonly [number, number];
  /** User message length range in characters; default [40, 160]. */
  readonly userChars?: readonly [number, number];
  /** Most turns per session; default 4. */
  readonly maxTurns?: number;
  /** `max_tokens` range; default [16, 32]. */
  readonly maxTokens?: readonly [number, number];
  /** Share of sessions that are one-off documents; default 0.15. */
  readonly oneOffShare?: number;
}

const WORDS = (
  'the of and to in is you that it he was for on are as with his they at be this have from or one had by ' +
  'word but not what all were we when your can said there use an each which she do how their if will up ' +
  'other about out many then them these so some her would make like him into time has look two more write ' +
  'go see number no way could people my than first water been call who oil its now find long down day did ' +
  'get come made may part cache block prefill decode token stream router worker memory transfer request ' +
  'answer question system prompt model layer head key value batch queue latency throughput session turn'
).split(' ');

const PERSONAS = [
  'You are a careful assistant for a railway timetable office.',
  'You are a patient tutor who explains arithmetic to children.',
  'You are a support agent for a company that sells garden tools.',
  'You are a reviewer who reads short stories and comments on their style.',
  'You are a librarian who helps people find old newspapers.',
  'You are a cook who answers questions about bread and pastry.',
];

function check(name: string, v: number, min: number): number {
  if (!Number.isSafeInteger(v) || v < min)
    throw new KvwireError(ErrorCode.INVALID_ARGUMENT, `${name} must be an integer >= ${min}, got ${String(v)}`, {
      field: name,
    });
  return v;
}

/** Builds the demo's traffic (see the module documentation). */
export function demoWorkload(o: WorkloadOptions = {}): Workload {
  const requests = check('requests', o.requests ?? 100, 1);
  const random = mulberry32(o.seed ?? 1);
  const int = (lo: number, hi: number): number => lo + Math.floor(random() * (hi - lo + 1));
  const pick = <T>(xs: readonly T[]): T => xs[int(0, xs.length - 1)]!;
  const sentence = (): string => {
    const n = int(6, 14);
    const words = Array.from({ length: n }, () => pick(WORDS));
    return `${words[0]![0]!.toUpperCase()}${words.join(' ').slice(1)}.`;
  };
  const text = (chars: number): string => {
    let out = '';
    while (out.length < chars) out += (out === '' ? '' : ' ') + sentence();
    return out.slice(0, chars);
  };
  const [sysLo, sysHi] = o.systemChars ?? [600, 900];
  const [userLo, userHi] = o.userChars ?? [40, 160];
  const [tokLo, tokHi] = o.maxTokens ?? [16, 32];
  const maxTurns = check('maxTurns', o.maxTurns ?? 4, 1);
  const nPrompts = check('systemPrompts', o.systemPrompts ?? 4, 1);
  const systemPrompts = Array.from(
    { length: nPrompts },
    (_, i) => `${PERSONAS[i % PERSONAS.length]} Rules: ${text(int(sysLo, sysHi))}`,
  );
  const oneOff = o.oneOffShare ?? 0.15;
  const sessions: Session[] = [];
  let left = requests;
  while (left > 0) {
    const id = `s${sessions.length}`;
    if (random() < oneOff) {
      sessions.push({
        id,
        systemPrompt: null,
        turns: [{ user: `Summarize this document: ${text(int(sysLo, sysHi))}`, maxTokens: int(tokLo, tokHi) }],
      });
      left--;
      continue;
    }
    const n = Math.min(left, int(1, maxTurns));
    sessions.push({
      id,
      systemPrompt: int(0, nPrompts - 1),
      turns: Array.from({ length: n }, () => ({ user: text(int(userLo, userHi)), maxTokens: int(tokLo, tokHi) })),
    });
    left -= n;
  }
  return { systemPrompts, sessions, requests };
}
