// Runs in a test's namespace: attaches the endpoint's kernel path to a TUN and an underlay
// interface, writes its maps from argv (JSON), prints "attached", and on stdin's end prints the
// programs' counters and exits (which detaches them).
import { KernelEndpoint, type KernelTx } from '../../src/endpoint/kernel-endpoint.js';
import { ifindexOf, nextHopTo } from '../../src/endpoint/next-hop.js';

interface Args {
  tun: string;
  underlay: string;
  ip: string;
  port: number;
  tx: Omit<KernelTx, 'ifindex' | 'auth' | 'srcMac' | 'dstMac'> & { auth: string };
  returns: string[];
}

const a = JSON.parse(process.argv[2]!) as Args;
const tun = ifindexOf(a.tun);
const underlay = ifindexOf(a.underlay);
const ep = KernelEndpoint.open({ tunIfindex: tun, underlayIfindex: underlay });
ep.setReceiver(a.ip, a.port, tun);
for (const r of a.returns) ep.addReturn(Buffer.from(r, 'hex'));
const hop = nextHopTo(a.tx.dstIp);
if (hop.dstMac === undefined) throw new Error(`the MAC of ${hop.via} is not resolved (ping it first)`);
ep.setTx({
  ...a.tx,
  ifindex: hop.ifindex,
  auth: Buffer.from(a.tx.auth, 'hex'),
  srcMac: hop.srcMac,
  dstMac: hop.dstMac,
});
console.log('attached');
process.stdin.resume();
process.stdin.on('end', () => {
  console.log(JSON.stringify(ep.stats()));
  ep.close();
  process.exit(0);
});
