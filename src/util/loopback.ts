import { isIP } from 'node:net';

/** True for 127.0.0.0/8 and ::1: plain HTTP there stays on this machine. */
export function isLoopback(host: string): boolean {
  if (isIP(host) === 4) return host.startsWith('127.');
  return host === '::1' || host === 'localhost';
}
