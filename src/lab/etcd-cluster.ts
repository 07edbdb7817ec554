import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, openSync, closeSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { hasCode, noteUnexpected } from '../util/errors.js';

export interface EtcdMember {
  name: string;
  clientUrl: string;
  peerUrl: string;
  dataDir: string;
  logPath: string;
  proc: ChildProcess | undefined;
}

export interface EtcdClusterOptions {
  members?: number;
  /** Loopback address to bind; default 127.0.0.1. */
  host?: string;
  /** Where data dirs and logs go; default a fresh temp dir, removed on stop. */
  dir?: string;
}

/** The etcd binary: $ETCD_BIN, else `etcd` on PATH, else Debian's /usr/bin/etcd. */
export function findEtcd(): string | undefined {
  if (process.env.ETCD_BIN && existsSync(process.env.ETCD_BIN)) return process.env.ETCD_BIN;
  const which = spawnSync('sh', ['-c', 'command -v etcd'], { encoding: 'utf8' });
  if (which.status === 0 && which.stdout.trim()) return which.stdout.trim();
  return existsSync('/usr/bin/etcd') ? '/usr/bin/etcd' : undefined;
}

/** A TCP port that was free a moment ago. etcd needs explicit ports, so we ask the kernel for one. */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, host, () => {
      const a = srv.address();
      const port = typeof a === 'object' && a ? a.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

/**
 * A real etcd cluster of N members on loopback ports with temporary data dirs, for
 * tests, benches and `arrow lab up`. Each member is an OS process that can be killed,
 * stopped and restarted individually.
 */
export class EtcdCluster {
  private stopped = false;

  private constructor(
    readonly binary: string,
    readonly members: EtcdMember[],
    readonly dir: string,
    private readonly ownDir: boolean,
  ) {}

  get endpoints(): string[] {
    return this.members.map((m) => m.clientUrl);
  }

  static async start(opts: EtcdClusterOptions = {}): Promise<EtcdCluster> {
    const binary = findEtcd();
    if (!binary)
      throw new Error(
        'etcd not found: install it (Debian: apt-get install etcd-server) or set ETCD_BIN; `npm test` installs it when run as root',
      );
    const n = opts.members ?? 1;
    const host = opts.host ?? '127.0.0.1';
    const dir = opts.dir ?? mkdtempSync(join(tmpdir(), 'arrow-etcd-'));
    const members: EtcdMember[] = [];
    for (let i = 0; i < n; i++) {
      const name = `m${i + 1}`;
      members.push({
        name,
        clientUrl: `http://${host}:${await freePort(host)}`,
        peerUrl: `http://${host}:${await freePort(host)}`,
        dataDir: join(dir, name),
        logPath: join(dir, `${name}.log`),
        proc: undefined,
      });
    }
    const cluster = new EtcdCluster(binary, members, dir, opts.dir === undefined);
    process.once('exit', () => cluster.killAllSync());
    try {
      for (const m of members) cluster.spawnMember(m, 'new');
      await cluster.waitHealthy();
    } catch (err) {
      await cluster.stop();
      throw err;
    }
    return cluster;
  }

  private spawnMember(m: EtcdMember, state: 'new' | 'existing'): void {
    mkdirSync(m.dataDir, { recursive: true });
    const initialCluster = this.members.map((x) => `${x.name}=${x.peerUrl}`).join(',');
    const fd = openSync(m.logPath, 'a');
    m.proc = spawn(
      this.binary,
      [
        '--name',
        m.name,
        '--data-dir',
        m.dataDir,
        '--listen-client-urls',
        m.clientUrl,
        '--advertise-client-urls',
        m.clientUrl,
        '--listen-peer-urls',
        m.peerUrl,
        '--initial-advertise-peer-urls',
        m.peerUrl,
        '--initial-cluster',
        initialCluster,
        '--initial-cluster-state',
        state,
        '--initial-cluster-token',
        `arrow-${process.pid}`,
        // Loopback RTTs are microseconds: elect a new leader in about half a second, not seconds.
        '--heartbeat-interval',
        '50',
        '--election-timeout',
        '500',
        '--logger',
        'zap',
        '--log-level',
        'warn',
      ],
      { stdio: ['ignore', fd, fd] },
    );
    closeSync(fd);
  }

  /** Waits until every running member answers /health with a leader. */
  async waitHealthy(timeoutMs = 20_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (const m of this.members) {
      if (!m.proc || m.proc.exitCode !== null || m.proc.signalCode !== null) continue;
      for (;;) {
        try {
          const res = await fetch(`${m.clientUrl}/health`, { signal: AbortSignal.timeout(1000) });
          const body = (await res.json()) as { health?: string };
          if (body.health === 'true') break;
        } catch (err) {
          // Refused, reset or slow: not up yet. Anything else is noted, and the wait goes on.
          if (!hasCode(err, 'ECONNREFUSED', 'ECONNRESET', 'TimeoutError', 'UND_ERR_SOCKET'))
            noteUnexpected(`etcd member ${m.name} health check`, err);
        }
        if (m.proc.exitCode !== null)
          throw new Error(`etcd member ${m.name} exited (${m.proc.exitCode}); see ${m.logPath}`);
        if (Date.now() > deadline)
          throw new Error(`etcd member ${m.name} not healthy within ${timeoutMs} ms; see ${m.logPath}`);
        await sleep(50);
      }
    }
  }

  /** The member that is leader now, by asking each member's status. */
  async leader(): Promise<EtcdMember | undefined> {
    for (const m of this.members) {
      try {
        const res = await fetch(`${m.clientUrl}/v3/maintenance/status`, {
          method: 'POST',
          body: '{}',
          signal: AbortSignal.timeout(1000),
        });
        const s = (await res.json()) as { header?: { member_id?: string }; leader?: string };
        if (s.leader && s.header?.member_id === s.leader) return m;
      } catch (err) {
        // Refused, reset or slow: down or busy, ask the next. Anything else is noted.
        if (!hasCode(err, 'ECONNREFUSED', 'ECONNRESET', 'TimeoutError', 'UND_ERR_SOCKET'))
          noteUnexpected(`etcd member ${m.name} status`, err);
      }
    }
    return undefined;
  }

  /** Fault injection: SIGKILL (crash), SIGSTOP (hang) or SIGTERM (clean stop) one member. */
  async kill(name: string, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const m = this.member(name);
    // A member that already exited has no exit left to wait for.
    if (!m.proc || m.proc.exitCode !== null || m.proc.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => m.proc!.once('exit', () => resolve()));
    m.proc.kill(signal);
    if (signal !== 'SIGSTOP') await exited;
  }

  /** Starts a stopped member again on its data dir; it rejoins the cluster. */
  async restart(name: string): Promise<void> {
    const m = this.member(name);
    if (m.proc && m.proc.exitCode === null && m.proc.signalCode === null) {
      m.proc.kill('SIGCONT');
      return;
    }
    this.spawnMember(m, 'existing');
  }

  member(name: string): EtcdMember {
    const m = this.members.find((x) => x.name === name);
    if (!m) throw new Error(`no etcd member ${name}`);
    return m;
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    await Promise.all(
      this.members.map(async (m) => {
        const p = m.proc;
        if (!p || p.exitCode !== null || p.signalCode !== null) return;
        const exited = new Promise<void>((resolve) => p.once('exit', () => resolve()));
        p.kill('SIGCONT');
        p.kill('SIGTERM');
        const t = setTimeout(() => p.kill('SIGKILL'), 3000);
        await exited;
        clearTimeout(t);
      }),
    );
    if (this.ownDir) rmSync(this.dir, { recursive: true, force: true });
  }

  private killAllSync(): void {
    for (const m of this.members) m.proc?.kill('SIGKILL');
  }
}
