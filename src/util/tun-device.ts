// A Linux TUN interface: the native addon (src/endpoint/tun-native.c) opens it and reads batches of
// packets on readiness; addresses, MTU and routes are set with iproute2's `ip`.
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);

interface TunNative {
  open(name: string): [fd: number, name: string];
  startReader(
    fd: number,
    buffer: Buffer,
    slot: number,
    lengths: Int32Array,
    onPackets: (count: number) => void,
  ): object;
  stopReader(handle: object): void;
  write(fd: number, bytes: Uint8Array): number;
  close(fd: number): void;
}

/** A TUN-mode failure the user can act on: no root, no /dev/net/tun, no addon. Printed without a stack. */
export class TunError extends Error {
  override name = 'TunError';
}

const ADDON = fileURLToPath(new URL('../../native/arrow-tun.node', import.meta.url));
let native: TunNative | undefined;

function loadNative(): TunNative {
  if (native) return native;
  if (process.platform !== 'linux') throw new TunError('TUN mode needs Linux');
  if (!existsSync(ADDON))
    throw new TunError(
      `the TUN addon ${ADDON} is not built: run npm run build (it needs a C compiler and Node's headers)`,
    );
  native = createRequire(import.meta.url)(ADDON) as TunNative;
  return native;
}

const CAP_NET_ADMIN = 12;
const NEEDS_ROOT = 'needs root (CAP_NET_ADMIN): run arrow endpoint --tun as root, e.g. with sudo';

/** Whether this process may create and configure interfaces (its effective capabilities, not its uid). */
export function hasNetAdmin(): boolean {
  try {
    const m = /^CapEff:\s*([0-9a-f]+)$/m.exec(readFileSync('/proc/self/status', 'utf8'));
    return m ? (BigInt(`0x${m[1]}`) >> BigInt(CAP_NET_ADMIN)) % 2n === 1n : false;
  } catch {
    return false;
  }
}

/** Fails early, before waiting for or buying anything, when TUN mode cannot work here. */
export function assertTunPossible(name: string): void {
  if (process.platform !== 'linux') throw new TunError('TUN mode needs Linux');
  if (!hasNetAdmin()) throw new TunError(`creating TUN interface ${name} ${NEEDS_ROOT}`);
  loadNative();
}

/** Packets per read batch, and the slot each is read into: any IP packet fits a 64 KiB slot whole. */
const BATCH = 32;
const SLOT = 65536;

/** Where `ip` runs: in the root namespace, or in the namespace the interface was moved to. */
function ipArgs(netns: string | undefined, args: string[]): string[] {
  return netns ? ['-n', netns, ...args] : args;
}

async function ip(netns: string | undefined, args: string[]): Promise<void> {
  try {
    await run('ip', ipArgs(netns, args));
  } catch (err) {
    const e = err as Error & { stderr?: string; code?: string };
    if (e.code === 'ENOENT') throw new TunError('the `ip` command (iproute2) is not installed');
    throw new TunError(`ip ${ipArgs(netns, args).join(' ')}: ${(e.stderr ?? e.message).trim()}`);
  }
}

export interface TunConfig {
  /** Interface addresses in CIDR notation (IPv4 or IPv6). */
  addresses: string[];
  mtu: number;
  /** Extra destinations (CIDR) routed into the TUN. */
  routes?: string[];
  /** Move the interface into this network namespace first; the process keeps its fd and sockets where they are. */
  netns?: string;
}

/**
 * An open TUN interface. Packets the kernel routes into it arrive in batches through `onPackets`,
 * each a view of a fixed slot valid only during the call; `write` hands one IP packet to the kernel.
 * Closing the fd removes the interface, wherever it lives.
 */
export class TunDevice {
  private readonly buffer = Buffer.alloc(BATCH * SLOT);
  private readonly lengths = new Int32Array(BATCH);
  private reader: object | undefined;
  private closed = false;
  /** The namespace the interface lives in, when moved. */
  netns: string | undefined;

  private constructor(
    private readonly native: TunNative,
    private readonly fd: number,
    readonly name: string,
  ) {}

  /** Creates the interface (needs CAP_NET_ADMIN). */
  static open(name: string): TunDevice {
    const n = loadNative();
    let opened: [number, string];
    try {
      opened = n.open(name);
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (code === 'EPERM' || code === 'EACCES')
        throw new TunError(`creating TUN interface ${name} ${NEEDS_ROOT}`);
      if (code === 'ENOENT' || code === 'ENODEV')
        throw new TunError('/dev/net/tun is missing: load the tun kernel module (modprobe tun)');
      if (code === 'EBUSY') throw new TunError(`interface ${name} exists and is in use`);
      throw new TunError(`cannot create TUN interface ${name}: ${(err as Error).message}`);
    }
    return new TunDevice(n, opened[0], opened[1]);
  }

  /** Moves the interface (optionally), sets addresses and MTU, brings it up, adds routes. */
  async configure(c: TunConfig): Promise<void> {
    if (c.netns) {
      await ip(undefined, ['link', 'set', 'dev', this.name, 'netns', c.netns]);
      this.netns = c.netns;
    }
    for (const a of c.addresses) await ip(this.netns, ['addr', 'add', a, 'dev', this.name]);
    await ip(this.netns, ['link', 'set', 'dev', this.name, 'mtu', String(c.mtu), 'up']);
    for (const r of c.routes ?? []) await ip(this.netns, ['route', 'replace', r, 'dev', this.name]);
  }

  /** Sets the interface's MTU (once the paths are known: their tags make it smaller). */
  async setMtu(mtu: number): Promise<void> {
    await ip(this.netns, ['link', 'set', 'dev', this.name, 'mtu', String(mtu)]);
  }

  /**
   * Starts reading: `onPacket(packet)` for each packet, `onError(errno)` if the device fails.
   * `packet` is a view of a reused slot: copy what must outlive the call.
   */
  start(onPacket: (packet: Buffer) => void, onError: (errno: number) => void): void {
    if (this.reader) return;
    const { buffer, lengths } = this;
    this.reader = this.native.startReader(this.fd, buffer, SLOT, lengths, (count) => {
      if (count < 0) return onError(-count);
      for (let i = 0; i < count; i++) onPacket(buffer.subarray(i * SLOT, i * SLOT + lengths[i]!));
    });
  }

  /** Hands one IP packet to the kernel. Returns bytes written, or -errno. Synchronous: `p` may be reused at once. */
  write(p: Uint8Array): number {
    return this.native.write(this.fd, p);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.reader) this.native.stopReader(this.reader);
    this.native.close(this.fd);
  }
}
