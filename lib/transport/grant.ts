/**
 * The grant: the region table a target hands an initiator over the connection it accepted, after
 * the handshake (native/engine/grant.h writes it; the loopback engine writes the same bytes).
 *
 * The initiator believes the target, not the metadata it was given: every region of the metadata
 * must be in the grant with the same id, access, length and kind of memory, or `connect()` fails
 * with `ERR_KVWIRE_BAD_METADATA` (forged or stale metadata never widens what a peer reaches, and
 * never makes this agent read past a region's end). A region of the metadata that the target no
 * longer has (id at most the grant's highest, absent) was deregistered: it is marked revoked.
 * Base addresses and keys come only from the grant, and only for one-sided access the target
 * granted.
 *
 * Layout (little-endian): magic "KVWG" u32, version u16 (= 1), flags u16 (bit 0: one-sided),
 * highest region id u32, region count u32, the agent's name (u16 length + UTF-8), then per
 * region: id u32, kind u8 (bits 0-1 access, bit 2 device memory, bit 3 mappable shared memory; 0
 * for a region not exported, which carries nothing else),
 * length u64, base u64, label (u16 length + UTF-8), key length u32, key. (The engine also checks that the process that
 * answered is the one the metadata names, by pid and start time: native/engine/ucx_handshake.cc.)
 *
 * @packageDocumentation
 */
import { ErrorCode, KvwireError } from '../errors.js';
import { accessFromBits } from './metadata.js';
import type { AgentDescription, RegionDescription } from './metadata.js';
import { formatCount } from '../util/format.js';

const MAGIC = 0x4757564b; // "KVWG"
const VERSION = 1;
const ONE_SIDED = 1;
const DEVICE = 4;
const MAPPABLE = 8;
const MAX_REGIONS = 1 << 20;
const MAX_KEY = 64 * 1024;
const utf8 = new TextDecoder('utf-8', { fatal: true });

/** One region as a grant describes it. */
export interface GrantedRegion {
  readonly id: number;
  readonly label: string;
  readonly access: number;
  readonly memory: 'host' | 'cuda';
  readonly mappable: boolean;
  readonly length: number;
  readonly base: bigint;
  readonly key: Uint8Array;
}

/** A parsed grant. */
export interface Grant {
  /** The name of the agent that granted it. */
  readonly name: string;
  readonly oneSided: boolean;
  readonly highestId: number;
  readonly regions: ReadonlyMap<number, GrantedRegion>;
}

function bad(peer: string, what: string): never {
  throw new KvwireError(
    ErrorCode.BAD_METADATA,
    `'${peer}' answered the handshake with a malformed region table (${what}); both sides must run the same kvwire release`,
  );
}

/** Serializes a grant (the loopback engine's; the native engine writes the same layout in C++). */
export function encodeGrant(
  name: string,
  oneSided: boolean,
  highestId: number,
  regions: readonly GrantedRegion[],
): Uint8Array {
  const nameBytes = Buffer.from(name, 'utf8');
  const labels = regions.map((r) => Buffer.from(r.label, 'utf8'));
  const size = 18 + nameBytes.length + regions.reduce((s, r, i) => s + 27 + labels[i]!.length + r.key.length, 0);
  const out = new Uint8Array(size);
  const v = new DataView(out.buffer);
  v.setUint32(0, MAGIC, true);
  v.setUint16(4, VERSION, true);
  v.setUint16(6, oneSided ? ONE_SIDED : 0, true);
  v.setUint32(8, highestId, true);
  v.setUint32(12, regions.length, true);
  v.setUint16(16, nameBytes.length, true);
  out.set(nameBytes, 18);
  let o = 18 + nameBytes.length;
  regions.forEach((r, i) => {
    const label = labels[i]!;
    v.setUint32(o, r.id, true);
    out[o + 4] = (r.access & 3) | (r.memory === 'cuda' ? DEVICE : 0) | (r.mappable ? MAPPABLE : 0);
    v.setBigUint64(o + 5, BigInt(r.length), true);
    v.setBigUint64(o + 13, r.base, true);
    v.setUint16(o + 21, label.length, true);
    out.set(label, o + 23);
    o += 23 + label.length;
    v.setUint32(o, r.key.length, true);
    out.set(r.key, o + 4);
    o += 4 + r.key.length;
  });
  return out;
}

/** Parses a grant, refusing anything truncated, padded or out of range. */
export function decodeGrant(bytes: Uint8Array, peer: string): Grant {
  if (!(bytes instanceof Uint8Array) || bytes.length < 18) bad(peer, 'too short');
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (v.getUint32(0, true) !== MAGIC || v.getUint16(4, true) !== VERSION) bad(peer, 'another format');
  const flags = v.getUint16(6, true);
  if ((flags & ~ONE_SIDED) !== 0) bad(peer, 'unknown flags');
  const highestId = v.getUint32(8, true);
  const count = v.getUint32(12, true);
  if (count > MAX_REGIONS) bad(peer, `${count} regions`);
  const nameLen = v.getUint16(16, true);
  if (nameLen > 1024 || 18 + nameLen > bytes.length) bad(peer, 'a name beyond its bounds');
  let name: string;
  try {
    name = utf8.decode(bytes.subarray(18, 18 + nameLen));
  } catch {
    return bad(peer, 'a name that is not UTF-8');
  }
  const regions = new Map<number, GrantedRegion>();
  let o = 18 + nameLen;
  for (let i = 0; i < count; i++) {
    if (o + 23 > bytes.length) bad(peer, `truncated at region ${i}`);
    const id = v.getUint32(o, true);
    const kind = bytes[o + 4]!;
    const length = v.getBigUint64(o + 5, true);
    const base = v.getBigUint64(o + 13, true);
    const labelLen = v.getUint16(o + 21, true);
    o += 23;
    if (labelLen > 1024 || o + labelLen + 4 > bytes.length) bad(peer, `truncated at region ${id}'s label`);
    let label: string;
    try {
      label = utf8.decode(bytes.subarray(o, o + labelLen));
    } catch {
      return bad(peer, `region ${id}'s label is not UTF-8`);
    }
    o += labelLen;
    const keyLen = v.getUint32(o, true);
    o += 4;
    if ((kind & ~(3 | DEVICE | MAPPABLE)) !== 0) bad(peer, `region ${id} has kind ${kind}`);
    const exported = (kind & 3) !== 0;
    if (exported ? length === 0n || length > BigInt(Number.MAX_SAFE_INTEGER) : length !== 0n || kind !== 0) {
      bad(peer, `region ${id} has length ${length}`);
    }
    if (keyLen > MAX_KEY || o + keyLen > bytes.length || (!exported && keyLen !== 0)) {
      bad(peer, `region ${id} has a key of ${keyLen} bytes`);
    }
    if (id === 0 || id > highestId || regions.has(id)) bad(peer, `region id ${id}`);
    regions.set(id, {
      id,
      label,
      access: kind & 3,
      memory: (kind & DEVICE) !== 0 ? 'cuda' : 'host',
      mappable: (kind & MAPPABLE) !== 0,
      length: Number(length),
      base,
      key: bytes.slice(o, o + keyLen),
    });
    o += keyLen;
  }
  if (o !== bytes.length) bad(peer, `${bytes.length - o} trailing bytes`);
  return { name, oneSided: (flags & ONE_SIDED) !== 0, highestId, regions };
}

/** The metadata's regions as the target granted them, and those it deregistered since. */
export interface CheckedRegions {
  /** With base and key from the grant. */
  readonly regions: readonly RegionDescription[];
  /** Ids of metadata regions the target no longer has. */
  readonly revoked: readonly number[];
}

/**
 * Checks the metadata `d` against the grant: each of its regions must be granted as described.
 *
 * @throws KvwireError `ERR_KVWIRE_BAD_METADATA` naming the first region that differs (forged or
 *   stale metadata: fetch it again from the agent).
 */
export function checkGrant(d: AgentDescription, grant: Grant): CheckedRegions {
  if (grant.name !== d.name) {
    throw new KvwireError(
      ErrorCode.BAD_METADATA,
      `bad metadata: it names agent '${d.name}', but '${grant.name}' answered at its address; the metadata was altered or is stale: fetch it again`,
    );
  }
  const regions: RegionDescription[] = [];
  const revoked: number[] = [];
  for (const r of d.regions) {
    const g = grant.regions.get(r.id);
    if (g === undefined) {
      if (r.id <= grant.highestId) {
        revoked.push(r.id); // deregistered since the metadata was taken
        regions.push({ ...r, base: 0n, key: new Uint8Array(0) });
        continue;
      }
      throw new KvwireError(
        ErrorCode.BAD_METADATA,
        `bad metadata: '${d.name}' never registered a region ${r.id} ('${r.label}'); the metadata does not come from this agent as it is: fetch it again`,
      );
    }
    if (g.access === 0) {
      throw new KvwireError(
        ErrorCode.BAD_METADATA,
        `bad metadata: it names region ${r.id} ('${r.label}'), which '${d.name}' does not export (its access is none); the metadata was altered: fetch it again`,
      );
    }
    const access = accessFromBits(g.access);
    const memory = r.memory ?? 'host';
    if (access !== r.access || g.length !== r.length || g.memory !== memory || g.label !== r.label) {
      throw new KvwireError(
        ErrorCode.BAD_METADATA,
        `bad metadata: it says region ${r.id} is '${r.label}', ${formatCount(r.length)} bytes of ${memory} memory with ${r.access} access, ` +
          `but '${d.name}' serves '${g.label}', ${formatCount(g.length)} bytes of ${g.memory} memory with ${access} access; ` +
          'the metadata was altered or is stale: fetch it again from the agent',
      );
    }
    regions.push({ ...r, base: g.base, key: g.key });
  }
  return { regions, revoked };
}
