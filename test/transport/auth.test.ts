// Agents that share a secret (AgentOptions.auth) sign their metadata and authenticate every
// handshake: metadata not signed with a held key is refused before any of it is parsed, and a
// target serves nothing to an initiator that cannot prove it holds the secret, even one that skips
// the metadata check.
import { afterEach, describe, expect, it } from 'vitest';
import { Agent, ErrorCode, decodeMetadata, encodeMetadata } from '../../lib/index.js';
import { authKeys, deriveKey, SECRET_ENV } from '../../lib/transport/auth.js';
import { expectRejectCode } from './helpers.js';

const SECRET = 'auth-test-shared-secret-0123456789';
const OTHER = 'auth-test-another-secret-987654321';

/** The metadata without its signature (re-encoded unsigned, checksum recomputed). */
function unsigned(md: Uint8Array): Uint8Array {
  const { version, keyId, ...d } = decodeMetadata(md);
  void version;
  void keyId;
  return encodeMetadata(d);
}

describe.each([
  { engine: 'ucx' as const, transports: 'tcp' },
  { engine: 'ucx' as const, transports: 'sm' },
  { engine: 'loopback' as const, transports: undefined },
])('authenticated agents ($engine $transports)', ({ engine, transports }) => {
  const agents: Agent[] = [];
  afterEach(async () => {
    for (const a of agents.splice(0)) await a.close();
  });
  async function agent(name: string, auth: { secret: string; previous?: string[] } | false) {
    const a = await Agent.create({ name, engine, ...(transports ? { transports } : {}), auth });
    agents.push(a);
    return a;
  }

  it('sign their metadata, connect and move bytes', async () => {
    const target = await agent('target', { secret: SECRET });
    const initiator = await agent('initiator', { secret: SECRET });
    expect(target.authenticates).toBe(true);
    const src = Buffer.alloc(65536, 7);
    target.register(src, { access: 'read', label: 'kv' });
    const md = target.metadata();
    expect(decodeMetadata(md).keyId).toBe(deriveKey(SECRET).id.toString('hex'));
    const peer = await initiator.connect(md);
    const dst = initiator.register(Buffer.alloc(65536), { label: 'dst' });
    await initiator.read(
      peer,
      [{ region: dst, offset: 0, length: 65536 }],
      [{ region: peer.region('kv'), offset: 0, length: 65536 }],
    ).done;
    expect(dst.bytes.every((b) => b === 7)).toBe(true);
  });

  it('refuse metadata of another secret, unsigned metadata, and (without a secret) signed metadata', async () => {
    const target = await agent('target', { secret: SECRET });
    const stranger = await agent('stranger', { secret: OTHER });
    const open = await agent('open', false);
    await expectRejectCode(stranger.connect(target.metadata()), ErrorCode.UNAUTHORIZED, /does not hold/);
    await expectRejectCode(stranger.connect(unsigned(target.metadata())), ErrorCode.UNAUTHORIZED, /not signed/);
    await expectRejectCode(open.connect(target.metadata()), ErrorCode.UNAUTHORIZED, /is signed/);
    expect(stranger.peers).toHaveLength(0);
    expect(open.peers).toHaveLength(0);
  });

  it('accept a previous secret during a rotation, both ways', async () => {
    const rotated = await agent('rotated', { secret: OTHER, previous: [SECRET] });
    const old = await agent('old', { secret: SECRET, previous: [OTHER] });
    rotated.register(Buffer.alloc(4096), { access: 'read', label: 'a' });
    old.register(Buffer.alloc(4096), { access: 'read', label: 'b' });
    expect((await old.connect(rotated.metadata())).state).toBe('connected');
    expect((await rotated.connect(old.metadata())).state).toBe('connected');
  });

  it.skipIf(engine === 'loopback')(
    'serve nothing to an initiator that skips the metadata check: no secret, or another one',
    async () => {
      const target = await agent('guarded', { secret: SECRET });
      target.register(Buffer.alloc(4096, 1), { access: 'readwrite', label: 'kv' });
      const warnings: string[] = [];
      target.on('warning', (m: string) => warnings.push(m));
      // An initiator without a secret given the metadata stripped of its signature: its engine
      // sends an unsigned hello, which the target drops before it parses anything in it.
      const open = await agent('open', false);
      await expectRejectCode(
        open.connect(unsigned(target.metadata()), { timeoutMs: 1500 }),
        ErrorCode.PEER_UNREACHABLE,
        /auth secret/,
      );
      // An initiator with another secret, the metadata re-signed with its own key: its hello is
      // signed with a key the target does not hold.
      const stranger = await agent('stranger', { secret: OTHER });
      const resigned = encodeMetadata(
        (({ version, keyId, ...d }) => (void version, void keyId, d))(decodeMetadata(target.metadata())),
        deriveKey(OTHER),
      );
      await expectRejectCode(stranger.connect(resigned, { timeoutMs: 1500 }), ErrorCode.PEER_UNREACHABLE);
      expect(warnings.some((w) => /did not prove it holds this agent's secret/.test(w))).toBe(true);
      expect(open.peers).toHaveLength(0);
      expect(stranger.peers).toHaveLength(0);
    },
  );
});

describe('the secret', () => {
  it('comes from auth, else from KVWIRE_SECRET, and auth: false turns it off', () => {
    expect(authKeys(undefined, {})).toEqual([]);
    expect(authKeys(undefined, { [SECRET_ENV]: SECRET })[0]!.id).toEqual(deriveKey(SECRET).id);
    expect(authKeys(false, { [SECRET_ENV]: SECRET })).toEqual([]);
    expect(authKeys({ secret: OTHER, previous: [SECRET] }).map((k) => k.id.toString('hex'))).toEqual([
      deriveKey(OTHER).id.toString('hex'),
      deriveKey(SECRET).id.toString('hex'),
    ]);
  });

  it('is refused when short or of the wrong type, typed', async () => {
    await expect(Agent.create({ engine: 'loopback', auth: { secret: 'short' } })).rejects.toMatchObject({
      code: ErrorCode.INVALID_ARGUMENT,
      message: /at least 16 random bytes/,
    });
    await expect(Agent.create({ engine: 'loopback', auth: { secret: 42 as never } })).rejects.toMatchObject({
      code: ErrorCode.INVALID_ARGUMENT,
    });
    await expect(Agent.create({ engine: 'loopback', auth: 'yes' as never })).rejects.toMatchObject({
      code: ErrorCode.INVALID_ARGUMENT,
    });
  });
});
