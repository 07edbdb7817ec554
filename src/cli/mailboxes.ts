import { renameSync, rmSync, writeFileSync } from 'node:fs';
import { stringify } from 'yaml';
import { buyMailboxes, mailboxBundle } from '../endpoint/mailboxes.js';
import { releasePath } from '../endpoint/path.js';
import { PathFileSchema, pathSpecOf } from '../endpoint/spec.js';
import { ConfigError, loadConfig } from '../util/config.js';
import { mustParseAddress } from '../wire/address.js';
import { authPrefix } from '../wire/authenticator.js';

export interface MailboxesFlags {
  path: string[];
  client: string;
  out: string;
}

/**
 * `arrow mailboxes`: the destination buys K ingress paths for one client, writes the client's
 * bundle (no API keys in it), holds the circuits, and relinquishes them and removes the bundle on
 * Ctrl-C or SIGTERM.
 */
export async function runMailboxes(o: MailboxesFlags): Promise<void> {
  // Everything is checked before anything is bought.
  let client: string;
  try {
    // The parser refuses port 0 in a destination; 0.0.0.0 is an address to bind, not to deliver to.
    const a = mustParseAddress(o.client);
    if (a.host === '0.0.0.0') throw new Error('the return paths need a host and a port to deliver to');
    client = `${a.host}:${a.port}`;
  } catch (err) {
    throw new ConfigError(`--client ${o.client}: ${(err as Error).message}`);
  }
  const specs = o.path.map((f) => {
    try {
      return pathSpecOf(loadConfig(PathFileSchema, f));
    } catch (err) {
      if (err instanceof ConfigError) throw err;
      throw new ConfigError(`--path ${f}: ${(err as Error).message}`);
    }
  });
  const paths = await buyMailboxes(specs, client);
  const release = async (): Promise<number> => {
    let failed = 0;
    for (const p of paths)
      for (const f of await releasePath(p)) {
        failed++;
        console.error(`could not relinquish: ${f.message}`);
      }
    return failed;
  };
  // Written whole or not at all: a client never reads half a bundle.
  const tmp = `${o.out}.${process.pid}.tmp`;
  try {
    writeFileSync(tmp, stringify(mailboxBundle(paths, client)), { mode: 0o600 });
    renameSync(tmp, o.out);
  } catch (err) {
    rmSync(tmp, { force: true });
    await release();
    throw new ConfigError(`--out ${o.out}: ${(err as Error).message}; the mailboxes were relinquished`);
  }
  console.log(
    `${paths.length} mailbox(es) for client ${client}, bundle in ${o.out} (circuits and authenticators; no API keys). Ctrl-C relinquishes them.`,
  );
  paths.forEach((p, i) => {
    console.log(`  ingress ${i}:`);
    for (const b of p.forward)
      console.log(
        `    ${b.segment.isp ?? b.segment.portal} ${b.circuit.ingressPop}->${b.circuit.egressPop} auth ${authPrefix(b.circuit.auth)} via ${b.circuit.ingress.join(', ')}`,
      );
  });
  // Nothing else keeps the process up: the circuits live at the portals, held until a signal.
  const hold = setInterval(() => undefined, 3_600_000);
  let stopping = false;
  const stop = async (): Promise<void> => {
    if (stopping) return;
    stopping = true;
    clearInterval(hold);
    const failed = await release();
    rmSync(o.out, { force: true });
    console.log(`relinquished ${paths.length} mailbox(es); removed ${o.out}`);
    process.exit(failed ? 1 : 0);
  };
  process.once('SIGINT', () => void stop());
  process.once('SIGTERM', () => void stop());
}
