/**
 * The prefill target: read from `x-prefiller-host-port`, checked against the allowlist, and pinned
 * to the address that was checked.
 *
 * Order matters for SSRF: parse strictly, resolve a name once, check EVERY resolved address and the
 * port, and hand the leg the checked address to connect to. The leg never resolves the name again,
 * so a DNS answer that changes between check and connect (DNS rebinding) cannot redirect it.
 *
 * @packageDocumentation
 */
import { promises as dns } from 'node:dns';
import type { Allowlist } from './allowlist.js';
import { formatHostPort, parseHostPort, type Host, type SyntaxRefusal } from './host-port.js';
import { classifyAddress, isAlwaysRefused, parseIp, type AddressClass, type IpAddress } from './ip.js';

/** Most targets one header may list; more is refused (each name costs a lookup). */
export const MAX_TARGETS = 16;

/** Why a target was refused: a metric label and the `reason` of the 403 body. */
export type TargetRefusalReason =
  SyntaxRefusal | Exclude<AddressClass, 'unicast'> | 'not_allowed' | 'port_not_allowed' | 'resolve_failed' | 'too_many';

/** A refused target. */
export interface TargetRefusal {
  /** Always false. */
  readonly ok: false;
  /** Stable reason (metric label). */
  readonly reason: TargetRefusalReason;
  /** What was wrong, for the 403 body and the log. */
  readonly message: string;
}

/** A target that passed the check, pinned to the address that was checked. */
export interface CheckedTarget {
  /** Always true. */
  readonly ok: true;
  /** The entry as the header gave it (after trimming list whitespace). */
  readonly text: string;
  /** The host as parsed. */
  readonly host: Host;
  /** The port. */
  readonly port: number;
  /** The address to connect to: one of those checked (all were). */
  readonly address: IpAddress;
  /** The `Host` header for the prefill leg (`name:port`, or the address). */
  readonly hostHeader: string;
  /** TLS server name (SNI and certificate check) when the host is a name. */
  readonly servername: string | undefined;
}

/** One address a resolver returned. */
export interface ResolvedAddress {
  /** Address text as the resolver gives it. */
  readonly address: string;
  /** 4 or 6. */
  readonly family: number;
}

/**
 * Resolves a host name to all of its addresses. The default is the system resolver
 * (`dns.lookup` with `all: true`); tests inject their own so no real DNS is involved.
 */
export type Resolver = (hostname: string) => Promise<readonly ResolvedAddress[]>;

/** The system resolver: every address getaddrinfo returns, in its order. */
export const systemResolver: Resolver = (hostname) => dns.lookup(hostname, { all: true, verbatim: true });

/** What {@link checkTarget} needs. */
export interface TargetCheckContext {
  /** The allowlist. */
  readonly allowlist: Allowlist;
  /** The resolver for names. */
  readonly resolve: Resolver;
  /** Deadline for one name's resolution, in ms. */
  readonly resolveTimeoutMs: number;
}

function refused(reason: TargetRefusalReason, message: string): TargetRefusal {
  return { ok: false, reason, message };
}

/** RFC 6761: `localhost` and names under it always mean this host's loopback. */
function isLocalhostName(name: string): boolean {
  return name === 'localhost' || name.endsWith('.localhost');
}

/**
 * Checks one resolved (or literal) address of a target against the classes that are never allowed
 * and against the allowlist. `name` is the host name it came from, if any.
 */
function checkAddress(
  ip: IpAddress,
  port: number,
  name: string | undefined,
  ctx: TargetCheckContext,
): TargetRefusal | undefined {
  const cls = classifyAddress(ip);
  const where = name === undefined ? ip.text : `${name} (${ip.text})`;
  if (isAlwaysRefused(cls))
    return refused(
      cls as TargetRefusalReason,
      `${where} is ${cls.replace('_', '-')} address space, never a prefill target`,
    );
  // A name entry trusts DNS for that name, but not to point at this host: a poisoned or
  // attacker-held record for an allowed name must not reach the decode worker's loopback services.
  const byName = (p: number | undefined): boolean =>
    name !== undefined && ctx.allowlist.admitsName(name, p) && (cls !== 'loopback' || isLocalhostName(name));
  if (ctx.allowlist.admitsAddress(ip, port) || byName(port)) return undefined;
  // The host is allowed, the port is not: llm-d's bug #979 was letting exactly this through.
  if (ctx.allowlist.admitsAddress(ip, undefined) || byName(undefined)) {
    return refused('port_not_allowed', `${where} is allowed, but not on port ${port}`);
  }
  if (cls === 'loopback') {
    return refused('loopback', `${where} port ${port} is a loopback address no allowlist entry admits`);
  }
  return refused('not_allowed', `${where} port ${port} matches no allowlist entry (address and port must both match)`);
}

async function resolveWithDeadline(
  name: string,
  ctx: TargetCheckContext,
): Promise<readonly ResolvedAddress[] | TargetRefusal> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<TargetRefusal>((resolve) => {
    timer = setTimeout(
      () => resolve(refused('resolve_failed', `resolving '${name}' took longer than ${ctx.resolveTimeoutMs} ms`)),
      ctx.resolveTimeoutMs,
    );
  });
  try {
    return await Promise.race([ctx.resolve(name), deadline]);
  } catch (e) {
    return refused('resolve_failed', `'${name}' could not be resolved: ${(e as Error).message}`);
  } finally {
    clearTimeout(timer);
  }
}

/** Parses, resolves and checks one target entry. */
export async function checkTarget(text: string, ctx: TargetCheckContext): Promise<CheckedTarget | TargetRefusal> {
  const parsed = parseHostPort(text, false);
  if (!parsed.ok) return refused(parsed.reason, parsed.message);
  const { host } = parsed.value;
  const port = parsed.value.port!;
  const hostHeader = formatHostPort(host, port);
  if (host.kind === 'ip') {
    const refusal = checkAddress(host.ip, port, undefined, ctx);
    if (refusal !== undefined) return refusal;
    return { ok: true, text, host, port, address: host.ip, hostHeader, servername: undefined };
  }
  const answer = await resolveWithDeadline(host.name, ctx);
  if (!Array.isArray(answer)) return answer as TargetRefusal;
  const addresses = answer as readonly ResolvedAddress[];
  if (addresses.length === 0) return refused('resolve_failed', `'${host.name}' resolved to no address`);
  const checked: IpAddress[] = [];
  for (const a of addresses) {
    const ip = parseIp(a.address);
    if (ip === undefined) {
      return refused('resolve_failed', `'${host.name}' resolved to '${a.address}', which is not an IP address`);
    }
    checked.push(ip);
  }
  // Addresses that are never allowed are reported first, whatever order the resolver used: a
  // name that mixes an allowed address with the metadata service is refused as 'metadata'.
  const worst = checked.find((ip) => isAlwaysRefused(classifyAddress(ip))) ?? checked[0]!;
  for (const ip of [worst, ...checked]) {
    const refusal = checkAddress(ip, port, host.name, ctx);
    if (refusal !== undefined) return refusal;
  }
  return { ok: true, text, host, port, address: checked[0]!, hostHeader, servername: host.name };
}

/**
 * Splits the header's comma-separated list. Whitespace around commas is list syntax (RFC 9110
 * "OWS") and is trimmed; whitespace inside an entry, and empty entries, are kept so the check
 * refuses them.
 */
export function splitTargetList(value: string): string[] {
  return value.split(',').map((s) => s.replace(/^[ \t]+|[ \t]+$/g, ''));
}

/** What {@link chooseTarget} needs beyond {@link TargetCheckContext}. */
export interface ChooseTargetContext extends TargetCheckContext {
  /** Pick a random entry instead of the first (llm-d's `--enable-prefiller-sampling`). */
  readonly sampling: boolean;
  /** Random number in [0, 1) for sampling. */
  readonly random: () => number;
}

/**
 * Chooses the prefill target from an `x-prefiller-host-port` value: the first entry, or a random
 * one with sampling. Every entry is checked (not only the chosen one), so the answer does not
 * depend on the draw: a list with one forbidden entry is refused every time.
 */
export async function chooseTarget(value: string, ctx: ChooseTargetContext): Promise<CheckedTarget | TargetRefusal> {
  const entries = splitTargetList(value);
  if (entries.length > MAX_TARGETS)
    return refused(
      'too_many',
      `x-prefiller-host-port lists ${entries.length} targets; at most ${MAX_TARGETS} are accepted`,
    );
  // Syntax first, for every entry: a malformed entry is refused before any name is looked up.
  for (const e of entries) {
    const parsed = parseHostPort(e, false);
    if (!parsed.ok) return refused(parsed.reason, parsed.message);
  }
  const results = await Promise.all(entries.map((e) => checkTarget(e, ctx)));
  for (const r of results) if (!r.ok) return r;
  const index = ctx.sampling ? Math.min(entries.length - 1, Math.floor(ctx.random() * entries.length)) : 0;
  return results[index] as CheckedTarget;
}
