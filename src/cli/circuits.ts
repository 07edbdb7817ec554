import { PortalClient } from '../endpoint/portal-client.js';
import { authPrefix } from '../wire/authenticator.js';

export async function runCircuits(o: { portal: string; key: string; json?: boolean }): Promise<void> {
  const client = new PortalClient(o.portal, o.key);
  const { circuits } = await client.circuits();
  if (o.json) {
    console.log(JSON.stringify({ circuits }, null, 2));
    return;
  }
  if (circuits.length === 0) return console.log('no circuits');
  console.log(
    `${'auth'.padEnd(10)}${'from->to'.padEnd(14)}${'Mb/s'.padEnd(8)}${'packets'.padEnd(10)}${'bytes'.padEnd(12)}next`,
  );
  for (const c of circuits) {
    const s = await client.stats(c.auth);
    const next = c.next
      ? `${c.next.addresses[0]} auth ${authPrefix(c.next.auth)}`
      : c.deliver?.kind === 'udp'
        ? `udp ${c.deliver.target}`
        : `endpoint ${c.deliver?.addresses[0]}`;
    console.log(
      `${authPrefix(c.auth).padEnd(10)}${(c.ingressPop + '->' + c.egressPop).padEnd(14)}${String(c.bandwidthMbps).padEnd(8)}${String(s.packets).padEnd(10)}${String(s.bytes).padEnd(12)}${next}`,
    );
  }
}
