import { Lab } from '../lab/lab.js';
import { withProgress } from '../util/progress.js';
import { TopologySchema } from '../lab/topology.js';
import { assertLabName } from '../lab/netns.js';
import {
  alive,
  FAIL_KINDS,
  labDown,
  readState,
  runDir,
  sendControl,
  serveControl,
  statePath,
  type ControlRequest,
  type FailKind,
} from '../lab/control.js';
import { ConfigError, loadConfig } from '../util/config.js';
import { join } from 'node:path';
import { dataplaneText, type DataplaneMode } from '../router/dataplane-mode.js';

export async function runLabUp(
  file: string,
  o: { dir?: string; store?: 'sqlite' | 'etcd'; netns?: boolean; tls?: boolean; dataplane?: DataplaneMode },
): Promise<void> {
  const topology = loadConfig(TopologySchema, file);
  if (o.store)
    for (const isp of topology.isps)
      isp.store = o.store === 'etcd' ? { kind: 'etcd', members: 3 } : { kind: 'sqlite' };
  if (o.netns) {
    try {
      assertLabName(topology.name);
    } catch (err) {
      throw new ConfigError(`${file}: name: ${(err as Error).message}`);
    }
    if (o.store === 'etcd') throw new ConfigError('--netns runs SQLite stores only; drop --store etcd');
  }
  if (process.getuid?.() !== 0 && o.netns)
    throw new ConfigError('--netns needs root (it makes network namespaces)');
  const running = readState(topology.name);
  if (running && alive(running.pid))
    throw new ConfigError(
      `a lab named ${topology.name} is up (pid ${running.pid}); \`arrow lab down ${topology.name}\``,
    );
  // The state file is named after the lab: only names that are safe file names get one.
  const state = o.netns === true || /^[A-Za-z0-9._-]+$/.test(topology.name);
  // A progress bar at a terminal (each component as it comes up); plain lines on stderr otherwise.
  const lab = await withProgress(false, (progress) =>
    Lab.start(topology, {
      ...(o.dir ? { dir: o.dir } : {}),
      netns: o.netns ?? false,
      state,
      tls: o.tls ?? true,
      ...(o.dataplane ? { dataplane: o.dataplane } : {}),
      ...(progress ? { onProgress: progress } : {}),
    }),
  );
  // fail/heal from other shells reach this process here (path recorded in the state file).
  const control = state ? await serveControl(lab, join(runDir(), `${topology.name}.sock`)) : undefined;
  if (state) {
    lab.control = join(runDir(), `${topology.name}.sock`);
    lab.saveState();
  }
  console.log(
    `lab ${topology.name} up; working dir ${lab.dir}${state ? `; state ${statePath(topology.name)}` : ''}`,
  );
  if (lab.ca) console.log(`HTTPS with the lab's own CA: clients take --ca ${lab.ca.path} (or ARROW_CA)`);
  for (const i of lab.isps) {
    console.log(
      `ISP ${i.name}: portal ${i.url}  (accounts: ${i.accounts.map((a) => `${a.name} key ${a.apiKey}`).join(', ')})`,
    );
    console.log(
      `  store: ${i.etcd ? `etcd cluster ${i.etcd.endpoints.join(',')}` : `sqlite ${i.storePath}`}`,
    );
    for (const p of i.pops)
      for (const r of p.routers)
        console.log(
          `  ${p.name.padEnd(6)} ${r.name.padEnd(16)} ${r.address.padEnd(21)} ${r.dataplane ? dataplaneText(r.dataplane) : ''}`,
        );
  }
  for (const s of lab.servers) console.log(`server ${s.name}: udp echo on ${s.address}`);
  if (lab.atlas) console.log(`atlas: ${lab.atlas.url}`);
  for (const h of lab.hosts) console.log(`host ${h.name}: ${h.address}  (ip netns exec ${h.ns} ...)`);
  if (lab.netns)
    console.log(
      `namespaces: arrow-${topology.name}-<node> (routers by name, portal-<isp>, server-<name>, atlas, host-<name>)`,
    );
  console.log('Ctrl-C stops every process.');
  let stopping = false;
  const stop = async (): Promise<void> => {
    if (stopping) return;
    stopping = true;
    control?.close();
    await lab.stop();
    process.exit(0);
  };
  process.once('SIGINT', () => void stop());
  process.once('SIGTERM', () => void stop());
  process.once('SIGHUP', () => void stop());
  await new Promise(() => {});
}

/** `arrow lab fail|heal`: one request to the running lab's control socket. */
export async function runLabControl(req: ControlRequest, lab: string | undefined): Promise<void> {
  if (req.op === 'fail' && !FAIL_KINDS.includes(req.kind))
    throw new ConfigError(`--kind must be one of ${FAIL_KINDS.join(', ')}`);
  const reply = await sendControl(lab, req);
  if (!reply.ok) {
    console.error(`arrow lab ${req.op}: ${reply.error}`);
    process.exitCode = 1;
    return;
  }
  console.log(reply.message);
}

export async function runLabFail(router: string, o: { kind: FailKind; lab?: string }): Promise<void> {
  await runLabControl({ op: 'fail', node: router, kind: o.kind }, o.lab);
}

export async function runLabHeal(router: string, o: { lab?: string }): Promise<void> {
  await runLabControl({ op: 'heal', node: router }, o.lab);
}

/** `arrow lab down [NAME]`: stops a lab or cleans up after a crashed one. */
export async function runLabDown(name: string | undefined): Promise<void> {
  const reports = await labDown(name);
  if (!reports.length) console.log(`no lab state in ${runDir()}; nothing to do`);
  for (const r of reports)
    console.log(
      `lab ${r.lab}: ${r.stoppedPid ? `stopped lab process ${r.stoppedPid}, ` : ''}` +
        `killed ${r.killed.length} process(es), removed ${r.namespaces.length} namespace(s)`,
    );
}
