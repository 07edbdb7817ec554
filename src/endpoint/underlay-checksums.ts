/**
 * Who finishes the checksums of the packets the endpoint's kernel path sends
 * (`arrow endpoint --underlay-checksums`, docs/endpoint.md "Checksums and super-packets").
 *
 * The tc program on the TUN's egress runs before the kernel finishes anything: TCP's packets reach
 * it with only the pseudo-header summed into their checksum (CHECKSUM_PARTIAL), and its GSO
 * super-packets whole. The program wraps them as they are and the skb keeps that state, which is
 * right wherever the next device does the work: a NIC finishes the inner checksum and cuts the
 * super-packet on the way out, and a kernel that receives the skb over a veth trusts the partial
 * state. A program that reads the datagram's bytes on the same host (a router or endpoint on the
 * Node path, behind a veth) gets neither: a TCP checksum over the pseudo-header only, which the far
 * end drops, and a 64 KB datagram. The field's answer for user-space packet processors behind a
 * veth (VPP's af_packet, DPDK, userspace tunnels) is to turn the sending interface's transmit
 * checksum offload off: the stack then finishes the checksum, and cuts super-packets into
 * finished segments, in the device's transmit path, after our program. The alternatives were
 * worse: BPF can sum a packet's bytes but cannot clear CHECKSUM_PARTIAL, so a device that
 * finished it later would write a wrong checksum over ours, and it cannot cut a super-packet;
 * handing TCP to the Node path would take the kernel path's main traffic off it.
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';

export const UNDERLAY_CHECKSUM_MODES = ['auto', 'finish', 'keep'] as const;
/**
 * `finish`: turn the sending interface's transmit checksum offload off (`ethtool -K IF tx off`);
 * `keep`: leave it (every reader on this host is a kernel, or the interface is a NIC);
 * `auto` (default): finish on a virtual interface (veth, bridge...), keep on a NIC's.
 */
export type UnderlayChecksums = (typeof UNDERLAY_CHECKSUM_MODES)[number];

/** Whether the endpoint must have the stack finish checksums on an interface (pure). */
export function mustFinish(mode: UnderlayChecksums, iface: { hardware: boolean }): boolean {
  return mode === 'finish' || (mode === 'auto' && !iface.hardware);
}

/** `tx-checksumming` from `ethtool -k IF`'s output: true on, false off, undefined when absent. */
export function txChecksumming(ethtoolShow: string): boolean | undefined {
  const m = /^tx-checksumming:\s+(on|off)/m.exec(ethtoolShow);
  return m ? m[1] === 'on' : undefined;
}

/** An interface backed by a device (a NIC, virtio...) rather than a virtual one (veth, bridge, dummy). */
export function isHardware(ifname: string): boolean {
  return existsSync(`/sys/class/net/${ifname}/device`);
}

/** What `finishChecksums` did on one interface, for the endpoint's `checksums:` line. */
export interface Finished {
  interface: string;
  /** True when this endpoint turned transmit checksum offload off (it stays off after the endpoint stops). */
  turnedOff: boolean;
}

/**
 * Has the stack finish checksums on `ifname` (I/O: `ethtool`). Throws with ethtool's message when
 * it cannot; the caller then keeps the packets off the kernel path.
 */
export function finishChecksums(ifname: string): Finished {
  const show = (): boolean | undefined =>
    txChecksumming(execFileSync('ethtool', ['-k', ifname], { encoding: 'utf8', stdio: 'pipe' }));
  if (show() === false) return { interface: ifname, turnedOff: false };
  execFileSync('ethtool', ['-K', ifname, 'tx', 'off'], { stdio: 'pipe' });
  if (show() !== false) throw new Error(`ethtool -K ${ifname} tx off left tx-checksumming on`);
  return { interface: ifname, turnedOff: true };
}
