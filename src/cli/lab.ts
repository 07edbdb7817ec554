import { Lab } from '../lab/lab.js';
import { TopologySchema } from '../lab/topology.js';
import { loadConfig } from '../util/config.js';

export async function runLabUp(file: string, o: { dir?: string; store?: 'sqlite' | 'etcd' }): Promise<void> {
  const topology = loadConfig(TopologySchema, file);
  if (o.store)
    for (const isp of topology.isps)
      isp.store = o.store === 'etcd' ? { kind: 'etcd', members: 3 } : { kind: 'sqlite' };
  const lab = await Lab.start(topology, o.dir ? { dir: o.dir } : {});
  console.log(`lab ${topology.name} up; working dir ${lab.dir}`);
  for (const i of lab.isps) {
    console.log(
      `ISP ${i.name}: portal ${i.url}  (accounts: ${i.accounts.map((a) => `${a.name} key ${a.apiKey}`).join(', ')})`,
    );
    console.log(
      `  store: ${i.etcd ? `etcd cluster ${i.etcd.endpoints.join(',')}` : `sqlite ${i.storePath}`}`,
    );
    for (const p of i.pops)
      for (const r of p.routers) console.log(`  ${p.name.padEnd(6)} ${r.name.padEnd(16)} ${r.address}`);
  }
  for (const s of lab.servers) console.log(`server ${s.name}: udp echo on ${s.address}`);
  console.log('Ctrl-C stops every process.');
  const stop = async (): Promise<void> => {
    await lab.stop();
    process.exit(0);
  };
  process.once('SIGINT', () => void stop());
  process.once('SIGTERM', () => void stop());
  await new Promise(() => {});
}
