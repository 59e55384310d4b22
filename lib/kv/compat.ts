/**
 * What must match between a prefill and a decode worker for KV blocks to mean the same thing on
 * both sides, as a canonical object, a stable hash, and a comparison that names what differs.
 *
 * The fields are the model shape (name, attention kind, layers, heads, head/latent width), the
 * dtype, the block layout (K/V storage, dimension order, tokens per block) and the protocol
 * version. Tensor-parallel size and rank are not among them (heterogeneous TP is supported, see
 * `planTensorParallelReads`), nor is the block count (each side has its own cache).
 *
 * @packageDocumentation
 */
import { createHash } from 'node:crypto';
import { ErrorCode, KvwireError } from '../errors.js';
import type { KvDtype } from './dtype.js';
import type { KvLayout, KvOrder, KvSplit } from './layout.js';
import { isMla } from './model.js';

/** Protocol version {@link compatibilityFields} records when the caller does not give one. */
export const KV_LAYOUT_PROTOCOL_VERSION = 1;

/** The fields that must be equal on both sides of a KV transfer. */
export interface KvCompatibilityFields {
  /** Version of the protocol that carries the blocks. */
  readonly protocolVersion: number;
  /** Model name (`''` when the shape has none). */
  readonly model: string;
  /** Attention kind. */
  readonly attention: 'mha' | 'mla';
  /** Layers with a KV cache. */
  readonly layers: number;
  /** Total KV heads (1 for MLA). */
  readonly kvHeads: number;
  /** Elements per head per token (MLA: the latent width). */
  readonly headDim: number;
  /** MLA `kv_lora_rank` (0 for MHA). */
  readonly kvLoraRank: number;
  /** MLA `qk_rope_head_dim` (0 for MHA). */
  readonly qkRopeHeadDim: number;
  /** Element type. */
  readonly dtype: KvDtype;
  /** K/V storage. */
  readonly kv: KvSplit | 'latent';
  /** Block dimension order. */
  readonly order: KvOrder;
  /** Tokens per block. */
  readonly blockTokens: number;
}

/** Names of the compatibility fields, in the order they are compared (most fundamental first). */
export const KV_COMPATIBILITY_FIELD_NAMES: readonly (keyof KvCompatibilityFields)[] = Object.freeze([
  'protocolVersion',
  'model',
  'attention',
  'layers',
  'kvHeads',
  'headDim',
  'kvLoraRank',
  'qkRopeHeadDim',
  'dtype',
  'kv',
  'order',
  'blockTokens',
]);

/** Options of {@link compatibilityFields}. */
export interface CompatibilityOptions {
  /** Protocol version to record; default {@link KV_LAYOUT_PROTOCOL_VERSION}. */
  readonly protocolVersion?: number;
}

/** The compatibility fields of `layout`, as a frozen object with keys in canonical order. */
export function compatibilityFields(layout: KvLayout, options: CompatibilityOptions = {}): KvCompatibilityFields {
  const m = layout.model;
  const mla = isMla(m);
  return Object.freeze({
    protocolVersion: options.protocolVersion ?? KV_LAYOUT_PROTOCOL_VERSION,
    model: m.name ?? '',
    attention: mla ? 'mla' : 'mha',
    layers: m.layers,
    kvHeads: mla ? 1 : m.kvHeads,
    headDim: layout.headDim,
    kvLoraRank: mla ? m.kvLoraRank : 0,
    qkRopeHeadDim: mla ? m.qkRopeHeadDim : 0,
    dtype: layout.dtype,
    kv: layout.kv,
    order: layout.order,
    blockTokens: layout.blockTokens,
  } satisfies KvCompatibilityFields);
}

/**
 * The canonical JSON text of `fields`: exactly the compatibility fields, keys sorted, no
 * whitespace — independent of how the object was built or which extra keys it carries.
 */
export function canonicalCompatibilityJson(fields: KvCompatibilityFields): string {
  const sorted = [...KV_COMPATIBILITY_FIELD_NAMES].sort();
  const out: Record<string, unknown> = {};
  for (const k of sorted) out[k] = fields[k];
  return JSON.stringify(out);
}

/** sha256 (lowercase hex) of {@link canonicalCompatibilityJson}; equal hashes mean compatible peers. */
export function compatHash(fields: KvCompatibilityFields): string {
  return createHash('sha256').update(canonicalCompatibilityJson(fields)).digest('hex');
}

/**
 * The name of the first field (in {@link KV_COMPATIBILITY_FIELD_NAMES} order) whose values
 * differ between `a` and `b`, or `undefined` when all are equal. A field missing from one side
 * (e.g. a peer's fields decoded from the wire) counts as different.
 */
export function firstDifferingField(
  a: Partial<KvCompatibilityFields>,
  b: Partial<KvCompatibilityFields>,
): keyof KvCompatibilityFields | undefined {
  for (const k of KV_COMPATIBILITY_FIELD_NAMES) {
    if (!Object.is(a[k], b[k])) return k;
  }
  return undefined;
}

function show(v: unknown): string {
  if (v === undefined) return '<missing>';
  if (v === '') return '<unnamed>';
  return typeof v === 'string' ? v : JSON.stringify(v);
}

/**
 * Throws unless `prefill` and `decode` agree on every compatibility field.
 *
 * @throws KvwireError `ERR_KVWIRE_INCOMPATIBLE` with a message such as
 *   `incompatible: dtype differs (prefill bf16, decode fp16)` and `details.field` naming the field.
 */
export function assertCompatible(
  prefill: Partial<KvCompatibilityFields>,
  decode: Partial<KvCompatibilityFields>,
): void {
  const field = firstDifferingField(prefill, decode);
  if (field === undefined) return;
  throw new KvwireError(
    ErrorCode.INCOMPATIBLE,
    `incompatible: ${field} differs (prefill ${show(prefill[field])}, decode ${show(decode[field])}); run both workers with the same model, KV dtype, block size and cache layout`,
    { field, prefill: prefill[field], decode: decode[field] },
  );
}
