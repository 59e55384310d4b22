/**
 * The prefill side of the handshake: checks who asks, then answers with what a decode worker
 * needs to read this engine's blocks — or refuses.
 *
 * Order of checks (the first failure answers):
 * 1. signature over the raw body (constant-time) — else 401, empty body: nothing is parsed, nothing served;
 * 2. the body parses as a request — else 400, empty body;
 * 3. timestamp within the window and nonce not seen — else 401, empty body;
 * 4. compatibility fields equal — else 409 with the differing field and this side's fields, signed;
 * 5. 200 with the metadata of every rank agent, signed over the request's nonce.
 *
 * @packageDocumentation
 */
import { firstDifferingField } from '../kv/index.js';
import { NonceWindow, signResponse, verifyRequest } from './handshake-auth.js';
import { parseHandshakeRequest, type HandshakeAnswer, type HandshakeRequest } from './handshake.js';
import type { SideChannelAnswer, SideChannelHandler, SideChannelRequest } from './side-channel.js';

/** What the prefill side advertises: its handshake answer but the ranks, whose metadata is read per answer. */
export interface PrefillDescription extends Pick<
  HandshakeAnswer,
  'engineId' | 'instance' | 'compat' | 'compatHash' | 'cache' | 'leaseTable'
> {
  /** Current metadata of every rank agent, in rank order. */
  metadata(): Uint8Array[];
}

/** The outcome of one handshake request, for the coordinator's `'handshake'` event. */
export interface HandshakeOutcome {
  /** HTTP status answered: 200, 400, 401, 409 (or 500). */
  readonly status: number;
  /** The decode engine's id, once the request was authenticated and parsed. */
  readonly decodeEngineId?: string;
  /** The differing compatibility field (409). */
  readonly field?: string;
  /** The caller's address. */
  readonly remoteAddress?: string;
}

function json(v: unknown): Buffer {
  return Buffer.from(JSON.stringify(v), 'utf8');
}

/**
 * The side-channel handler of a prefill coordinator.
 *
 * @param key - the shared secret's bytes.
 * @param window - replay window (shared by every request of this coordinator).
 */
export function prefillHandshakeHandler(
  key: Buffer,
  window: NonceWindow,
  describe: PrefillDescription,
  onOutcome: (o: HandshakeOutcome) => void,
): SideChannelHandler {
  return (req: SideChannelRequest): SideChannelAnswer => {
    const remote = req.remoteAddress === undefined ? {} : { remoteAddress: req.remoteAddress };
    if (!verifyRequest(key, req.body, req.signature)) {
      onOutcome({ status: 401, ...remote });
      return { status: 401 };
    }
    let r: HandshakeRequest;
    try {
      r = parseHandshakeRequest(req.body);
    } catch {
      onOutcome({ status: 400, ...remote });
      return { status: 400 };
    }
    if (!window.admit(r.nonce, r.ts, Date.now())) {
      onOutcome({ status: 401, decodeEngineId: r.engineId, ...remote });
      return { status: 401 };
    }
    const field = firstDifferingField(describe.compat, r.compat);
    if (field !== undefined) {
      const body = json({ v: 1, error: 'incompatible', field, compat: describe.compat });
      onOutcome({ status: 409, decodeEngineId: r.engineId, field, ...remote });
      return { status: 409, body, signature: signResponse(key, r.nonce, body) };
    }
    const answer: HandshakeAnswer = {
      v: 1,
      engineId: describe.engineId,
      instance: describe.instance,
      compat: describe.compat,
      compatHash: describe.compatHash,
      cache: describe.cache,
      leaseTable: describe.leaseTable,
      ranks: describe.metadata().map((m, rank) => ({ rank, metadata: Buffer.from(m).toString('base64') })),
    };
    const body = json(answer);
    onOutcome({ status: 200, decodeEngineId: r.engineId, ...remote });
    return { status: 200, body, signature: signResponse(key, r.nonce, body) };
  };
}
