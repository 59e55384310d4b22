/**
 * The strict `host:port` syntax shared by prefill targets (`x-prefiller-host-port`) and allowlist
 * entries (`--allow`).
 *
 * One accepted spelling per thing: a host name in letters, digits and hyphens; a canonical dotted
 * quad; a bracketed IPv6 address. Everything a URL parser or resolver would quietly reinterpret
 * (schemes, userinfo, percent-encoding, numeric hosts that are not a dotted quad, zone ids,
 * whitespace) is refused here, with a reason a metric can count.
 *
 * @packageDocumentation
 */
import { parseIpv4, parseIpv6, type IpAddress } from './ip.js';

/** Why a `host:port` text was refused before any lookup. */
export type SyntaxRefusal =
  | 'empty'
  | 'whitespace'
  | 'scheme'
  | 'userinfo'
  | 'malformed'
  | 'missing_port'
  | 'bad_port'
  | 'non_canonical_ip'
  | 'metadata';

/** A host: an IP address, or a (lowercase, no trailing dot) DNS name. */
export type Host = { readonly kind: 'ip'; readonly ip: IpAddress } | { readonly kind: 'name'; readonly name: string };

/** A parsed `host[:port]`. */
export interface HostPort {
  /** The host. */
  readonly host: Host;
  /** The port, or undefined when the text had none. */
  readonly port: number | undefined;
}

/** A refusal: the reason (a metric label) and a sentence for the error body. */
export interface Refusal<R extends string> {
  /** Stable reason, e.g. `userinfo`. */
  readonly reason: R;
  /** What was wrong, for the person reading the 403 or the start-up error. */
  readonly message: string;
}

/** Result of a parse: the value, or why it was refused. */
export type Parsed<T, R extends string> =
  { readonly ok: true; readonly value: T } | ({ readonly ok: false } & Refusal<R>);

/**
 * Names of cloud metadata services. They resolve to link-local addresses in the cloud and are
 * refused by address too; refusing the name as well means a resolver that maps them elsewhere
 * (split-horizon DNS, /etc/hosts) cannot turn them into a target.
 */
const METADATA_NAMES = new Set([
  'metadata',
  'metadata.google.internal',
  'metadata.goog',
  'instance-data',
  'instance-data.ec2.internal',
]);

const LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
/** A label a resolver or URL parser reads as a number: then the whole host is an IPv4 spelling. */
const NUMERIC_LABEL = /^(?:0x[0-9a-f]*|[0-9]+)$/;

function refuse<R extends string>(reason: R, message: string): { ok: false } & Refusal<R> {
  return { ok: false, reason, message };
}

/**
 * Parses a host without port and without brackets: a canonical IPv4 address or a DNS name (IPv6
 * addresses are bracketed and parsed by {@link parseHostPort}).
 */
export function parseHost(text: string): Parsed<Host, SyntaxRefusal> {
  const v4 = parseIpv4(text);
  if (v4 !== undefined) return { ok: true, value: { kind: 'ip', ip: v4 } };
  const name = (text.endsWith('.') ? text.slice(0, -1) : text).toLowerCase();
  const labels = name.split('.');
  // WHATWG URL parsing and getaddrinfo both treat a host whose last label is numeric as an IPv4
  // address in some base (2130706433, 0x7f000001, 127.1, 0177.0.0.1 all mean 127.0.0.1).
  if (NUMERIC_LABEL.test(labels[labels.length - 1]!)) {
    return refuse(
      'non_canonical_ip',
      `'${text}' is not an IPv4 address in dotted-quad form (four decimal octets without leading zeros)`,
    );
  }
  if (name.length === 0 || name.length > 253 || !labels.every((l) => LABEL.test(l))) {
    return refuse('malformed', `'${text}' is not a host name (letters, digits, hyphens and dots) nor an IP address`);
  }
  if (METADATA_NAMES.has(name)) return refuse('metadata', `'${text}' names a cloud metadata service`);
  return { ok: true, value: { kind: 'name', name } };
}

function parsePort(text: string, whole: string): Parsed<number, SyntaxRefusal> {
  if (!/^[1-9][0-9]{0,4}$/.test(text) || Number(text) > 65535) {
    return refuse('bad_port', `'${whole}' has port '${text}'; a port is a decimal number in 1..65535`);
  }
  return { ok: true, value: Number(text) };
}

/**
 * Checks the characters of a `host:port` text before its structure: whitespace, schemes,
 * userinfo and URL syntax each get their own reason.
 */
export function screenCharacters(text: string): Refusal<SyntaxRefusal> | undefined {
  if (text.length === 0) return { reason: 'empty', message: 'the entry is empty' };
  if (/[\s\u0000-\u001f\u007f]/.test(text))
    return {
      reason: 'whitespace',
      message: `'${JSON.stringify(text).slice(1, -1)}' contains whitespace or control characters`,
    };
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(text) || text.includes('//')) {
    return { reason: 'scheme', message: `'${text}' has a scheme; give host:port only` };
  }
  if (text.includes('@')) return { reason: 'userinfo', message: `'${text}' has userinfo ('@'); give host:port only` };
  if (/[/?#%\\]/.test(text) || /[^\x21-\x7e]/.test(text)) {
    return { reason: 'malformed', message: `'${text}' contains characters that are not part of host:port` };
  }
  return undefined;
}

/**
 * Parses `host:port`, `[ipv6]:port` or (when `portOptional`) a bare host or `[ipv6]`.
 *
 * @param portOptional - allowlist entries may omit the port ("any port"); targets may not.
 */
export function parseHostPort(text: string, portOptional: boolean): Parsed<HostPort, SyntaxRefusal> {
  const screened = screenCharacters(text);
  if (screened !== undefined) return { ok: false, ...screened };
  let hostText: string;
  let portText: string | undefined;
  if (text.startsWith('[')) {
    const close = text.indexOf(']');
    if (close < 0) return refuse('malformed', `'${text}' opens '[' without closing it`);
    const inner = text.slice(1, close);
    const after = text.slice(close + 1);
    if (after !== '' && !after.startsWith(':'))
      return refuse('malformed', `'${text}' has text after ']' that is not ':port'`);
    portText = after === '' ? undefined : after.slice(1);
    const v6 = parseIpv6(inner);
    if (v6 === undefined) return refuse('malformed', `'[${inner}]' is not an IPv6 address`);
    if (portText === undefined) {
      if (!portOptional) return refuse('missing_port', `'${text}' has no port; give [address]:port`);
      return { ok: true, value: { host: { kind: 'ip', ip: v6 }, port: undefined } };
    }
    const port = parsePort(portText, text);
    if (!port.ok) return port;
    return { ok: true, value: { host: { kind: 'ip', ip: v6 }, port: port.value } };
  }
  const colons = text.split(':').length - 1;
  if (colons > 1) {
    return refuse('malformed', `'${text}' looks like an IPv6 address without brackets; write [address]:port`);
  }
  if (colons === 1) {
    const at = text.lastIndexOf(':');
    hostText = text.slice(0, at);
    portText = text.slice(at + 1);
  } else {
    hostText = text;
  }
  const host = parseHost(hostText);
  if (!host.ok) return host;
  if (portText === undefined) {
    if (!portOptional) return refuse('missing_port', `'${text}' has no port; give host:port`);
    return { ok: true, value: { host: host.value, port: undefined } };
  }
  const port = parsePort(portText, text);
  if (!port.ok) return port;
  return { ok: true, value: { host: host.value, port: port.value } };
}

/** `host:port` text of a host and port, IPv6 in brackets. */
export function formatHostPort(host: Host, port: number): string {
  const h = host.kind === 'name' ? host.name : host.ip.family === 6 ? `[${host.ip.text}]` : host.ip.text;
  return `${h}:${port}`;
}
