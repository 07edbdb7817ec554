import { mustParseAddress } from '../wire/address.js';
import { Endpoint } from './endpoint.js';
import { LocalPort } from './local-port.js';
import { buyPath, releasePath, type BoughtPath, type PathSpec } from './path.js';

/**
 * A UDP port forward for unmodified clients over one bought path (`arrow forward`):
 * datagrams sent to `listen` travel the path; what the return path delivers goes back.
 */
export class Forwarder {
  private constructor(
    private readonly local: LocalPort,
    readonly endpoint: Endpoint,
    readonly path: BoughtPath,
  ) {
    local.attach(endpoint);
  }

  get listen(): string {
    return this.local.address;
  }

  get counters(): LocalPort['counters'] {
    return this.local.counters;
  }

  static async start(listen: string, spec: PathSpec, opts: { bind?: string } = {}): Promise<Forwarder> {
    const local = await LocalPort.bind(listen);
    const endpoint = await Endpoint.open(opts.bind ?? `${mustParseAddress(listen, { bind: true }).host}:0`);
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
    return new Forwarder(local, endpoint, path);
  }

  /** Relinquishes the circuits and closes the sockets. */
  async stop(): Promise<Error[]> {
    const failures = await releasePath(this.path);
    this.local.close();
    await this.endpoint.close();
    return failures;
  }
}
