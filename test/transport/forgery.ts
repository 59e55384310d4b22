// Forged metadata, as an attacker who holds an agent's genuine metadata would make it: every field
// kvwire reads changed in the direction that would widen access, with the checksum recomputed (and,
// against an agent that authenticates, re-signed with a key of the attacker's own). Exported so the
// reliability suite can run the same attacks.
import { deriveKey } from '../../lib/transport/auth.js';
import type { AuthKey } from '../../lib/transport/auth.js';
import { crc32, decodeMetadata, encodeMetadata } from '../../lib/transport/metadata.js';
import type { AgentDescription, MetadataInput, RegionDescription } from '../../lib/transport/metadata.js';

/** One attack: a name, and how it changes the genuine description (or the genuine bytes). */
export interface Attack {
  readonly name: string;
  /** Changes the description (re-encoded with a fresh checksum), or null when `bytes` is used. */
  readonly forge: ((d: MetadataInput) => MetadataInput) | null;
  /** Changes the genuine bytes directly (the checksum is recomputed after). */
  readonly bytes?: (b: Uint8Array) => Uint8Array;
}

function region(d: MetadataInput, label: string): RegionDescription {
  const r = d.regions.find((x) => x.label === label);
  if (r === undefined) throw new Error(`the target exports no region '${label}'`);
  return r;
}

function withRegion(d: MetadataInput, label: string, change: Partial<RegionDescription>): MetadataInput {
  return { ...d, regions: d.regions.map((r) => (r.label === label ? { ...r, ...change } : r)) };
}

/**
 * The attacks against a target exporting `ro` (access read) and `wo` (access write) and holding a
 * region with access none at id `noneId` (never exported: its id is guessed).
 */
export function attacks(noneId: number, noneLength: number): Attack[] {
  return [
    {
      name: 'a read-only region twice as long',
      forge: (d) => withRegion(d, 'ro', { length: region(d, 'ro').length * 2 }),
    },
    {
      name: 'a read-only region one byte longer',
      forge: (d) => withRegion(d, 'ro', { length: region(d, 'ro').length + 1 }),
    },
    { name: 'a region of 2^52 bytes', forge: (d) => withRegion(d, 'ro', { length: 2 ** 52 }) },
    { name: 'a read-only region made writable', forge: (d) => withRegion(d, 'ro', { access: 'readwrite' }) },
    { name: 'a read-only region made write-only', forge: (d) => withRegion(d, 'ro', { access: 'write' }) },
    { name: 'a write-only region made readable', forge: (d) => withRegion(d, 'wo', { access: 'readwrite' }) },
    {
      name: 'the guessed id of a region with access none',
      forge: (d) => ({
        ...d,
        regions: [...d.regions, { id: noneId, label: 'stolen', access: 'readwrite', length: noneLength }],
      }),
    },
    {
      name: 'guessed ids of regions never registered',
      forge: (d) => ({
        ...d,
        regions: [
          ...d.regions,
          ...[50, 51, 52].map((id) => ({ id, label: `guess-${id}`, access: 'readwrite' as const, length: 1 << 20 })),
        ],
      }),
    },
    {
      name: 'the ids of the two regions swapped',
      forge: (d) => {
        const ro = region(d, 'ro');
        const wo = region(d, 'wo');
        return withRegion(withRegion(d, 'ro', { id: wo.id }), 'wo', { id: ro.id });
      },
    },
    {
      name: 'the labels of the two regions swapped (write to the read-only one by name)',
      forge: (d) => withRegion(withRegion(d, 'ro', { label: 'wo-renamed' }), 'wo', { label: 'ro' }),
    },
    { name: 'host memory claimed to be device memory', forge: (d) => withRegion(d, 'ro', { memory: 'cuda' }) },
    { name: 'another process id (cross-memory attach aimed elsewhere)', forge: (d) => ({ ...d, pid: process.pid }) },
    { name: 'another agent name', forge: (d) => ({ ...d, name: `${d.name}-impostor` }) },
    {
      name: 'a moved base address (the version 1 layout, which carried one)',
      forge: null,
      bytes: (b) => {
        const out = Uint8Array.from(b);
        new DataView(out.buffer).setUint16(4, 1, true);
        return out;
      },
    },
  ];
}

/** The key an attacker signs with: not the deployment's. */
export const ATTACKER_KEY: AuthKey = deriveKey('the-attacker-does-not-hold-the-secret');

/**
 * Applies `a` to genuine metadata: decoded, changed, encoded with a recomputed checksum and, when
 * `sign`, re-signed with the attacker's key (the genuine signature cannot be recomputed).
 */
export function forge(genuine: Uint8Array, a: Attack, sign: boolean): Uint8Array {
  if (a.forge === null) {
    const out = a.bytes!(genuine);
    const v = new DataView(out.buffer, out.byteOffset, out.byteLength);
    const body = sign ? out.length - 40 : out.length;
    v.setUint32(12, crc32(out.subarray(16, body)), true);
    return out;
  }
  const d: AgentDescription = decodeMetadata(genuine);
  const { version, keyId, ...input } = d;
  void version;
  void keyId;
  return encodeMetadata(a.forge(input), sign ? ATTACKER_KEY : undefined);
}
