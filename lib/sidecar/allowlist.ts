/**
 * The sidecar's allowlist: which prefill targets it may connect to, by address (or name) AND port.
 *
 * llm-d's sidecar kept only the host of each allowed pod, so an allowed host let every port of it
 * through (llm-d-router bug #979): any service on a prefill pod's host became reachable. Here each
 * entry carries a port unless it says "any port" by omitting it, and a target must match both.
 *
 * Entry forms (`--allow`, repeatable): `10.0.0.5:8000`, `10.0.0.5` (any port), `10.0.0.0/24`,
 * `10.0.0.0/24:8000`, `[fd00::5]:8000`, `[fd00::/64]:8000`, `prefill-0.pool.svc:8000`,
 * `prefill-0.pool.svc` (any port).
 *
 * @packageDocumentation
 */
import { ErrorCode, KvwireError } from '../errors.js';
import { parseHostPort } from './host-port.js';
import {
  blockContains,
  classifyAddress,
  isAlwaysRefused,
  parseIpBlock,
  sameAddress,
  type IpAddress,
  type IpBlock,
} from './ip.js';

/** One parsed allowlist entry; `port` undefined means any port. */
export type AllowEntry =
  | { readonly kind: 'address'; readonly ip: IpAddress; readonly port: number | undefined; readonly text: string }
  | { readonly kind: 'block'; readonly block: IpBlock; readonly port: number | undefined; readonly text: string }
  | { readonly kind: 'name'; readonly name: string; readonly port: number | undefined; readonly text: string };

function invalid(text: string, why: string): KvwireError {
  return new KvwireError(ErrorCode.INVALID_ARGUMENT, `allowlist entry '${text}': ${why}`, {
    field: 'allow',
    entry: text,
  });
}

function parseBlockEntry(text: string): AllowEntry {
  // [v6/len] or [v6/len]:port, and v4/len or v4/len:port.
  let blockText: string;
  let portText: string | undefined;
  if (text.startsWith('[')) {
    const close = text.indexOf(']');
    if (close < 0) throw invalid(text, "opens '[' without closing it");
    blockText = text.slice(1, close);
    const after = text.slice(close + 1);
    if (after !== '' && !after.startsWith(':')) throw invalid(text, "has text after ']' that is not ':port'");
    portText = after === '' ? undefined : after.slice(1);
  } else {
    const colon = text.indexOf(':');
    blockText = colon < 0 ? text : text.slice(0, colon);
    portText = colon < 0 ? undefined : text.slice(colon + 1);
  }
  const block = parseIpBlock(blockText);
  if (block === undefined) {
    throw invalid(text, 'is not a CIDR block (a.b.c.d/n or [ipv6/n], no bits set past the prefix, optionally :port)');
  }
  let port: number | undefined;
  if (portText !== undefined) {
    // Reuse the target syntax for the port: one definition of what a port is.
    const probe = parseHostPort(`0.0.0.1:${portText}`, false);
    if (!probe.ok) throw invalid(text, probe.message);
    port = probe.value.port;
  }
  const cls = classifyAddress(block.base);
  if (cls !== 'unicast' && cls !== 'loopback') {
    throw invalid(text, `starts in ${cls} address space, which is never allowed; to allow any target use --allow-any`);
  }
  return { kind: 'block', block, port, text };
}

/**
 * Parses one `--allow` entry.
 *
 * @throws KvwireError `ERR_KVWIRE_INVALID_ARGUMENT` naming the entry and what is wrong with it,
 *   including entries for addresses that are never allowed (link-local, metadata, unspecified).
 */
export function parseAllowEntry(text: string): AllowEntry {
  if (text.includes('/') && !text.includes('//')) return parseBlockEntry(text);
  const parsed = parseHostPort(text, true);
  if (!parsed.ok) throw invalid(text, parsed.message);
  const { host, port } = parsed.value;
  if (host.kind === 'name') return { kind: 'name', name: host.name, port, text };
  const cls = classifyAddress(host.ip);
  if (isAlwaysRefused(cls))
    throw invalid(
      text,
      `${host.ip.text} is ${cls.replace('_', '-')} address space, which is never allowed as a prefill target`,
    );
  return { kind: 'address', ip: host.ip, port, text };
}

function portMatches(entryPort: number | undefined, port: number): boolean {
  return entryPort === undefined || entryPort === port;
}

/** Options of {@link Allowlist.from}. */
export interface AllowlistOptions {
  /**
   * Admit any unicast address that is not loopback, on any port (llm-d's "SSRF protection off",
   * made narrower: the always-refused classes and this host's loopback stay refused unless an
   * entry names them).
   */
  readonly allowAny?: boolean;
}

/** The set of allowed prefill targets. */
export class Allowlist {
  private constructor(
    /** The parsed entries, in the order given. */
    readonly entries: readonly AllowEntry[],
    /** See {@link AllowlistOptions.allowAny}. */
    readonly allowAny: boolean,
  ) {}

  /**
   * Builds an allowlist from entry texts.
   *
   * @throws KvwireError `ERR_KVWIRE_INVALID_ARGUMENT` for a bad entry (see {@link parseAllowEntry}).
   */
  static from(entries: readonly string[], options: AllowlistOptions = {}): Allowlist {
    return new Allowlist(Object.freeze(entries.map(parseAllowEntry)), options.allowAny === true);
  }

  /**
   * True when an address entry or block entry admits `address` on `port` (on some port, when
   * `port` is undefined), or (not loopback) `--allow-any` does. The caller has already refused the
   * always-refused classes.
   */
  admitsAddress(address: IpAddress, port: number | undefined): boolean {
    for (const e of this.entries) {
      if (port !== undefined && !portMatches(e.port, port)) continue;
      if (e.kind === 'address' && sameAddress(e.ip, address)) return true;
      if (e.kind === 'block' && blockContains(e.block, address)) return true;
    }
    return this.allowAny && classifyAddress(address) === 'unicast';
  }

  /** True when a name entry admits `name` (lowercase, no trailing dot) on `port` (on some port when undefined). */
  admitsName(name: string, port: number | undefined): boolean {
    return this.entries.some(
      (e) => e.kind === 'name' && e.name === name && (port === undefined || portMatches(e.port, port)),
    );
  }

  /** True when nothing can ever be admitted (no entries, no `--allow-any`). */
  get empty(): boolean {
    return this.entries.length === 0 && !this.allowAny;
  }
}
