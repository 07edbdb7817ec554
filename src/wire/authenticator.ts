import { randomBytes } from 'node:crypto';
import { AUTH_LENGTH } from './header.js';

/** Authenticators travel as 32 lowercase hex characters in APIs, configs and the store. */
const HEX_AUTH = /^[0-9a-f]{32}$/;

export function isAuthenticatorHex(s: string): boolean {
  return HEX_AUTH.test(s);
}

/** A fresh 128-bit authenticator from the OS CSPRNG, so it cannot be guessed. */
export function newAuthenticator(): string {
  return randomBytes(AUTH_LENGTH).toString('hex');
}

export function authToBytes(hex: string): Buffer {
  if (!isAuthenticatorHex(hex)) throw new Error(`not a 128-bit hex authenticator: ${JSON.stringify(hex)}`);
  return Buffer.from(hex, 'hex');
}

/** The forwarding table's key: the 16 raw bytes as a latin1 string, cheap to make from a packet in place. */
export function authKeyFromHex(hex: string): string {
  return authToBytes(hex).toString('latin1');
}

export function authKeyFromPacket(buf: Buffer, offset: number): string {
  return buf.toString('latin1', offset, offset + AUTH_LENGTH);
}

/** Short form for humans: the first 8 hex digits, like a git hash. */
export function authPrefix(hex: string): string {
  return hex.slice(0, 8);
}
