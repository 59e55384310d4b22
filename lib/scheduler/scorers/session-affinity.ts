/**
 * The session affinity scorer, llm-d's `session-affinity-scorer` in its default, stateless form
 * (`encoded_endpoint_header`): the response carries `x-session-token: base64(<endpoint name>)` of
 * the decode endpoint that served it; a client that sends it back gets that endpoint scored 1 and
 * every other 0. Stateless, so it holds across scheduler replicas.
 *
 * No data when the header is absent, malformed, or names no current candidate (it was ejected or
 * removed): the other scorers decide, and the response carries the new endpoint's token.
 *
 * @packageDocumentation
 */
import type { Candidate, Scorer, ScoringContext } from '../types.js';

/** The header llm-d uses. */
export const SESSION_HEADER = 'x-session-token';

/** The token for an endpoint name. */
export function sessionToken(name: string): string {
  return Buffer.from(name, 'utf8').toString('base64');
}

/** The endpoint name a token names, or undefined if it is not a token we could have made. */
export function sessionEndpoint(token: string | undefined): string | undefined {
  if (token === undefined || token.length === 0 || token.length > 1024 || !/^[A-Za-z0-9+/]+={0,2}$/.test(token))
    return undefined;
  const name = Buffer.from(token, 'base64').toString('utf8');
  return sessionToken(name) === token ? name : undefined;
}

/** See the module documentation. */
export const sessionAffinityScorer: Scorer = {
  name: 'session-affinity',
  score(ctx: ScoringContext, candidates: readonly Candidate[]): Map<string, number> {
    const out = new Map<string, number>();
    const name = sessionEndpoint(ctx.request.headers[SESSION_HEADER]);
    if (name === undefined || !candidates.some((c) => c.spec.name === name)) return out;
    for (const c of candidates) out.set(c.spec.name, c.spec.name === name ? 1 : 0);
    return out;
  },
};
