import { isIP } from 'node:net';

/**
 * A UDP address: an IPv4 literal with a port (`192.0.2.7:4000`) or a bracketed IPv6 literal
 * (`[2001:db8::7]:4000`). Host names are never accepted: they would have to be resolved by
 * DNS on the packet path. This module is the one parser every part of Arrow uses: the API
 * schemas, the portal, the store, the router and the configs (docs/api.md, "Addresses").
 */
export interface UdpAddress {
  host: string;
  port: number;
}

export interface AddressOptions {
  /** A bind/listen address: port 0 (the OS picks a free port) is allowed. Destinations need 1-65535. */
  bind?: boolean;
}

export type AddressResult = { ok: true; address: UdpAddress } | { ok: false; message: string };

/** Longest valid form: `[ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255]:65535` is 53 characters. */
const MAX_ADDRESS_LENGTH = 64;

function quote(text: string): string {
  return JSON.stringify(text.length > MAX_ADDRESS_LENGTH ? `${text.slice(0, MAX_ADDRESS_LENGTH)}…` : text);
}

/** Parses `IPv4:PORT` or `[IPv6]:PORT`; pure, no resolution. Messages say what is wrong and what is expected. */
export function parseAddress(text: unknown, opts: AddressOptions = {}): AddressResult {
  if (typeof text !== 'string')
    return { ok: false, message: `expected an address string, got ${typeof text}` };
  const fail = (why: string): AddressResult => ({ ok: false, message: `address ${quote(text)}: ${why}` });
  if (text.length > MAX_ADDRESS_LENGTH) return fail(`too long (at most ${MAX_ADDRESS_LENGTH} characters)`);
  const m = /^\[([^\]]*)\]:([^:]*)$/.exec(text) ?? /^([^:[\]]*):([^:]*)$/.exec(text);
  if (!m) return fail('expected IPv4:PORT or [IPv6]:PORT');
  const host = m[1]!;
  const bracketed = text.startsWith('[');
  const family = host.includes('%') ? 0 : isIP(host);
  if (bracketed && family !== 6) return fail(`${quote(host)} in brackets is not an IPv6 literal`);
  if (!bracketed && family !== 4)
    return fail(
      `${quote(host)} is not an IPv4 literal (host names are refused: they would be resolved by DNS on the packet path; IPv6 goes in brackets)`,
    );
  const portText = m[2]!;
  if (!/^[0-9]{1,5}$/.test(portText)) return fail(`port ${quote(portText)} is not a number from 1 to 65535`);
  const port = Number(portText);
  if (port > 65535) return fail(`port ${port} out of range 1-65535`);
  if (port === 0 && !opts.bind) return fail('port 0 is not a destination (ports are 1-65535)');
  return { ok: true, address: { host, port } };
}

export function isValidAddress(text: unknown): boolean {
  return parseAddress(text).ok;
}

export function isValidBindAddress(text: unknown): boolean {
  return parseAddress(text, { bind: true }).ok;
}

/** Thrown by `mustParseAddress`: the text is not an address. */
export class AddressError extends Error {
  override name = 'AddressError';
}

export function mustParseAddress(text: string, opts: AddressOptions = {}): UdpAddress {
  const r = parseAddress(text, opts);
  if (!r.ok) throw new AddressError(r.message);
  return r.address;
}

export function formatAddress(a: UdpAddress): string {
  return a.host.includes(':') ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`;
}

/**
 * One spelling per host, for comparing addresses: IPv6 compressed and lowercase, and
 * IPv4-mapped IPv6 (`::ffff:127.0.0.1`) as the IPv4 address it is.
 */
export function canonicalHost(host: string): string {
  if (isIP(host) !== 6) return host;
  const v6 = new URL(`http://[${host}]/`).hostname.slice(1, -1);
  const mapped = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(v6);
  if (!mapped) return v6;
  const hi = parseInt(mapped[1]!, 16);
  const lo = parseInt(mapped[2]!, 16);
  return `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;
}

/** `host:port` with the host in its canonical form: equal keys, same address. */
export function addressKey(a: UdpAddress): string {
  return formatAddress({ host: canonicalHost(a.host), port: a.port });
}

/** An IP prefix in CIDR notation, e.g. `10.0.0.0/8` or `2001:db8::/32`. */
export interface IpPrefix {
  network: string;
  length: number;
  family: 4 | 6;
}

export type PrefixResult = { ok: true; prefix: IpPrefix } | { ok: false; message: string };

/** Parses `IP/LENGTH` (a bare IP is a host prefix: /32 or /128). */
export function parsePrefix(text: unknown): PrefixResult {
  if (typeof text !== 'string')
    return { ok: false, message: `expected a CIDR prefix string, got ${typeof text}` };
  const fail = (why: string): PrefixResult => ({ ok: false, message: `prefix ${quote(text)}: ${why}` });
  if (text.length > MAX_ADDRESS_LENGTH) return fail('too long');
  const [network = '', lengthText, extra] = text.split('/');
  if (extra !== undefined) return fail('expected IP/LENGTH');
  const family = network.includes('%') ? 0 : isIP(network);
  if (family !== 4 && family !== 6) return fail(`${quote(network)} is not an IP literal`);
  const max = family === 4 ? 32 : 128;
  if (lengthText === undefined) return { ok: true, prefix: { network, length: max, family } };
  if (!/^[0-9]{1,3}$/.test(lengthText) || Number(lengthText) > max)
    return fail(`prefix length must be 0-${max}`);
  return { ok: true, prefix: { network, length: Number(lengthText), family } };
}

export function isValidPrefix(text: unknown): boolean {
  return parsePrefix(text).ok;
}
