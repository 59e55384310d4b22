/**
 * A tiny JSON Schema validator for the subset {@link JsonSchema} describes (type, properties,
 * required, additionalProperties: false, items, anyOf, enum, const, minimum, local `$ref`s into
 * `$defs`): enough to prove that `kvwire bench --json` output matches its documented schema
 * without a dependency.
 *
 * @packageDocumentation
 */
import type { JsonSchema } from './schema.js';

function typeOf(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  if (typeof v === 'number') return Number.isInteger(v) ? 'integer' : 'number';
  return typeof v;
}

function typeMatches(actual: string, wanted: string): boolean {
  return actual === wanted || (wanted === 'number' && actual === 'integer');
}

/**
 * Validates `value` against `schema` (whose `$defs` resolve `$ref`s). Returns the problems, each
 * as `path: what is wrong` (e.g. `$.sweep.rows[3].gbps: expected number, got string`); an empty
 * list means valid.
 */
export function validateJson(value: unknown, schema: JsonSchema): string[] {
  const errors: string[] = [];
  const defs = schema.$defs ?? {};
  const resolve = (s: JsonSchema, path: string): JsonSchema | undefined => {
    if (s.$ref === undefined) return s;
    const m = /^#\/\$defs\/(.+)$/.exec(s.$ref);
    const target = m ? defs[m[1]!] : undefined;
    if (target === undefined) errors.push(`${path}: unresolvable $ref ${s.$ref}`);
    return target;
  };
  const walk = (v: unknown, s0: JsonSchema, path: string): void => {
    const s = resolve(s0, path);
    if (s === undefined) return;
    if (s.anyOf !== undefined) {
      const ok = s.anyOf.some((alt) => {
        const before = errors.length;
        walk(v, alt, path);
        const failed = errors.length > before;
        errors.length = before;
        return !failed;
      });
      if (!ok) errors.push(`${path}: matches none of the ${s.anyOf.length} alternatives (got ${typeOf(v)})`);
      return;
    }
    const t = typeOf(v);
    if (s.type !== undefined) {
      const wanted = typeof s.type === 'string' ? [s.type] : s.type;
      if (!wanted.some((w) => typeMatches(t, w))) {
        errors.push(`${path}: expected ${wanted.join(' or ')}, got ${t}`);
        return;
      }
    }
    if (s.const !== undefined && v !== s.const)
      errors.push(`${path}: expected ${JSON.stringify(s.const)}, got ${JSON.stringify(v)}`);
    if (s.enum !== undefined && !s.enum.includes(v))
      errors.push(`${path}: ${JSON.stringify(v)} is not one of ${s.enum.map((e) => JSON.stringify(e)).join(', ')}`);
    if (s.minimum !== undefined && typeof v === 'number' && v < s.minimum)
      errors.push(`${path}: ${v} is below the minimum ${s.minimum}`);
    if (t === 'number' || t === 'integer') {
      if (!Number.isFinite(v as number)) errors.push(`${path}: not a finite number`);
    }
    if (t === 'object' && (s.properties !== undefined || s.required !== undefined)) {
      const o = v as Record<string, unknown>;
      for (const k of s.required ?? []) if (!(k in o)) errors.push(`${path}: missing required property '${k}'`);
      for (const [k, child] of Object.entries(o)) {
        const ps = s.properties?.[k];
        if (ps !== undefined) walk(child, ps, `${path}.${k}`);
        else if (s.additionalProperties === false) errors.push(`${path}: unexpected property '${k}'`);
      }
    }
    if (t === 'array' && s.items !== undefined) {
      (v as unknown[]).forEach((item, i) => walk(item, s.items!, `${path}[${i}]`));
    }
  };
  walk(value, schema, '$');
  return errors;
}
