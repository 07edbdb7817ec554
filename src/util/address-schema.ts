import { FormatRegistry, Type, type TString } from '@sinclair/typebox';
import {
  isValidAddress,
  isValidBindAddress,
  isValidPrefix,
  parseAddress,
  parsePrefix,
} from '../wire/address.js';

/**
 * JSON-schema formats for addresses, checked by the same functions as the code path
 * (src/wire/address.ts), so the schema at the edge and the parser can never disagree.
 * Registered with TypeBox (configs, clients) on import, and with fastify's Ajv through
 * `addressFormats` (src/util/http.ts).
 */
export const ADDRESS_FORMAT = 'arrow-address';
export const BIND_ADDRESS_FORMAT = 'arrow-bind-address';
export const PREFIX_FORMAT = 'arrow-prefix';
export const SNAT_FORMAT = 'arrow-snat';

/** An egress's source NAT: `masquerade`, or an IPv4 address (no prefix length). */
function parseSnat(value: unknown): { ok: true } | { ok: false; message: string } {
  if (value === 'masquerade') return { ok: true };
  if (typeof value !== 'string' || value.includes('/'))
    return { ok: false, message: `expected "masquerade" or an IPv4 address, got ${JSON.stringify(value)}` };
  const r = parsePrefix(value);
  if (!r.ok) return r;
  if (r.prefix.family !== 4) return { ok: false, message: `source NAT is IPv4 only, got ${value}` };
  return { ok: true };
}

export const addressFormats: Record<string, (text: string) => boolean> = {
  [ADDRESS_FORMAT]: isValidAddress,
  [BIND_ADDRESS_FORMAT]: isValidBindAddress,
  [PREFIX_FORMAT]: isValidPrefix,
  [SNAT_FORMAT]: (text) => parseSnat(text).ok,
};

for (const [name, check] of Object.entries(addressFormats)) FormatRegistry.Set(name, check);

/** What is wrong with `value` under one of these formats, in the parser's words; undefined for other formats. */
export function addressFormatMessage(format: string, value: unknown): string | undefined {
  if (format === ADDRESS_FORMAT) return messageOf(parseAddress(value));
  if (format === BIND_ADDRESS_FORMAT) return messageOf(parseAddress(value, { bind: true }));
  if (format === PREFIX_FORMAT) return messageOf(parsePrefix(value));
  if (format === SNAT_FORMAT) return messageOf(parseSnat(value));
  return undefined;
}

function messageOf(r: { ok: true } | { ok: false; message: string }): string | undefined {
  return r.ok ? undefined : r.message;
}

/** A destination address: IPv4:PORT or [IPv6]:PORT, port 1-65535. */
export function AddressString(description = 'UDP address IPv4:PORT or [IPv6]:PORT (port 1-65535)'): TString {
  return Type.String({ format: ADDRESS_FORMAT, maxLength: 64, description });
}

/** A bind/listen address: as a destination, but port 0 (the OS picks one) is allowed. */
export function BindAddressString(
  description = 'address to bind, IP:PORT; port 0 picks a free one',
  extra: { default?: string } = {},
): TString {
  return Type.String({ format: BIND_ADDRESS_FORMAT, maxLength: 64, description, ...extra });
}

/** An IP prefix in CIDR notation (a bare IP is a single host). */
export function PrefixString(description = 'IP prefix in CIDR notation, e.g. 10.0.0.0/8'): TString {
  return Type.String({ format: PREFIX_FORMAT, maxLength: 64, description });
}

/** An egress's source NAT: `masquerade` or an IPv4 address of the host. */
export function SnatString(description: string): TString {
  return Type.String({ format: SNAT_FORMAT, maxLength: 64, description });
}
