import { createSocket, type Socket } from 'node:dgram';
import type { AddressInfo } from 'node:net';
import { formatAddress, mustParseAddress, type UdpAddress } from '../wire/address.js';
import { Endpoint } from './endpoint.js';
import { buyPath, releasePath, type BoughtPath, type PathSpec } from './path.js';

/**
 * A UDP port forward for unmodified clients: datagrams sent to `listen` travel the
 * bought path; whatever the return path delivers goes back to the client that
 * spoke last. One client at a time: a second client would need its own circuit.
 */
export class Forwarder {
  private client: UdpAddress | undefined;
  readonly counters = { fromClient: 0, toClient: 0 };

  private constructor(
    private readonly local: Socket,
    readonly listen: string,
    readonly endpoint: Endpoint,
    readonly path: BoughtPath,
  ) {
    local.on('message', (msg, rinfo) => {
      this.client = { host: rinfo.address, port: rinfo.port };
      this.counters.fromClient++;
      endpoint.send(msg);
    });
    endpoint.on('data', (payload) => {
      if (!this.client) return;
      this.counters.toClient++;
      local.send(payload, this.client.port, this.client.host);
    });
  }

  static async start(listen: string, spec: PathSpec, opts: { bind?: string } = {}): Promise<Forwarder> {
    const at = mustParseAddress(listen);
    const local = createSocket('udp4');
    await new Promise<void>((resolve, reject) => {
      local.once('error', reject);
      local.bind(at.port, at.host, () => resolve());
    });
    const endpoint = await Endpoint.open(opts.bind ?? `${at.host}:0`);
    let path: BoughtPath;
    try {
      path = await buyPath(spec, { replyTo: endpoint.replyTo });
    } catch (err) {
      local.close();
      await endpoint.close();
      throw err;
    }
    endpoint.use(path);
    await endpoint.waitReady().catch(() => {
      // Not fatal: the circuit may still come up; the client will see loss until then.
    });
    const a = local.address() as AddressInfo;
    return new Forwarder(local, formatAddress({ host: a.address, port: a.port }), endpoint, path);
  }

  /** Relinquishes the circuits and closes the sockets. */
  async stop(): Promise<Error[]> {
    const failures = await releasePath(this.path);
    this.local.close();
    await this.endpoint.close();
    return failures;
  }
}
