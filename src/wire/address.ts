/** A UDP address as `host:port` (IPv4 or a name) or `[v6]:port`. Pure parsing, no resolution. */
export interface UdpAddress {
  host: string;
  port: number;
}

export type AddressResult = { ok: true; address: UdpAddress } | { ok: false; message: string };

export function parseAddress(text: string): AddressResult {
  const m = /^\[([0-9a-fA-F:.]+)\]:(\d{1,5})$/.exec(text) ?? /^([^:[\]\s]+):(\d{1,5})$/.exec(text);
  if (!m) return { ok: false, message: `expected HOST:PORT, got ${JSON.stringify(text)}` };
  const port = Number(m[2]);
  if (port < 0 || port > 65535) return { ok: false, message: `port out of range in ${JSON.stringify(text)}` };
  return { ok: true, address: { host: m[1]!, port } };
}

export function mustParseAddress(text: string): UdpAddress {
  const r = parseAddress(text);
  if (!r.ok) throw new Error(r.message);
  return r.address;
}

export function formatAddress(a: UdpAddress): string {
  return a.host.includes(':') ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`;
}

/** JSON-schema pattern matching what parseAddress accepts, for API and config validation. */
export const ADDRESS_PATTERN = '^(\\[[0-9a-fA-F:.]+\\]|[^:\\[\\]\\s]+):[0-9]{1,5}$';
