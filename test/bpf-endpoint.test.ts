// The endpoint's kernel path (src/endpoint/bpf/endpoint.bpf.c), a first cut: two namespaces, each
// with a TUN interface and an underlay veth, the encapsulation on each TUN's egress and the
// decapsulation on each underlay's ingress. No process reads the TUNs and none listens on the UDP
// port, so only the programs can carry the traffic: ping and an iperf3 TCP run must cross, and the
// counters must show the kernel carried them.
//
// Needs root: fails (never skips) without it, like the other kernel tests. HEAVY (namespaces).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { TUN_GSO_MAX_SIZE } from '../src/endpoint/tun-kernel.js';

function run(cmd: string, ...args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8' });
}

test(
  'endpoint kernel path (needs root): TUN traffic crosses as ARROW DATA, encapsulated and decapsulated in tc',
  { timeout: 60_000 },
  async (t) => {
    if (process.getuid?.() !== 0)
      assert.fail('test/bpf-endpoint.test.ts makes network namespaces and attaches BPF: it needs root');
    const p = `arrowep${process.pid}`;
    const [A, B] = [`${p}a`, `${p}b`];
    for (const ns of [A, B]) run('ip', 'netns', 'add', ns);
    const helpers: ReturnType<typeof spawn>[] = [];
    t.after(() => {
      for (const h of helpers) h.kill('SIGKILL');
      for (const ns of [A, B]) run('ip', 'netns', 'del', ns);
    });
    run('ip', 'link', 'add', 'u0', 'netns', A, 'type', 'veth', 'peer', 'name', 'u0', 'netns', B);
    const side = { [A]: { u: '10.9.0.1', t: '10.99.0.1' }, [B]: { u: '10.9.0.2', t: '10.99.0.2' } };
    for (const ns of [A, B]) {
      run('ip', '-n', ns, 'link', 'set', 'lo', 'up');
      run('ip', '-n', ns, 'addr', 'add', `${side[ns]!.u}/24`, 'dev', 'u0');
      run('ip', '-n', ns, 'link', 'set', 'u0', 'up');
      run('ip', 'netns', 'exec', ns, 'ip', 'tuntap', 'add', 'dev', 't0', 'mode', 'tun');
      run('ip', '-n', ns, 'addr', 'add', `${side[ns]!.t}/24`, 'dev', 't0');
      run('ip', '-n', ns, 'link', 'set', 't0', 'up', 'mtu', '1444');
      // GSO super-packets into the encapsulation, within IPv4's length with the outer headers (as the endpoint sets it).
      run('ip', '-n', ns, 'link', 'set', 'dev', 't0', 'gso_max_size', String(TUN_GSO_MAX_SIZE));
    }
    run('ip', 'netns', 'exec', A, 'ping', '-c1', '-W1', side[B]!.u);
    const auth = { toA: 'a1'.repeat(16), toB: 'b2'.repeat(16) };
    const start = async (
      ns: string,
      peer: string,
      sendAuth: string,
      returnAuth: string,
    ): Promise<string[]> => {
      const h = spawn(
        'ip',
        [
          'netns',
          'exec',
          ns,
          process.execPath,
          new URL('./helpers/ep-kernel.js', import.meta.url).pathname,
          JSON.stringify({
            tun: 't0',
            underlay: 'u0',
            ip: side[ns]!.u,
            port: 7000,
            tx: {
              srcIp: side[ns]!.u,
              srcPort: 7000,
              dstIp: side[peer]!.u,
              dstPort: 7000,
              hopLimit: 8,
              auth: sendAuth,
            },
            returns: [returnAuth],
          }),
        ],
        { stdio: ['pipe', 'pipe', 'inherit'] },
      );
      helpers.push(h);
      const lines: string[] = [];
      createInterface({ input: h.stdout! }).on('line', (l) => lines.push(l));
      while (lines.length === 0) {
        if (h.exitCode !== null) assert.fail(`the helper in ${ns} exited ${h.exitCode}`);
        await new Promise((r) => setTimeout(r, 20));
      }
      assert.equal(lines[0], 'attached');
      return lines;
    };
    const outA = await start(A, B, auth.toB, auth.toA);
    const outB = await start(B, A, auth.toA, auth.toB);

    const ping = run('ip', 'netns', 'exec', A, 'ping', '-c', '5', '-i', '0.05', '-W', '1', side[B]!.t);
    assert.match(ping, / 0% packet loss/);
    const server = spawn('ip', ['netns', 'exec', B, 'iperf3', '-s', '-1', '-B', side[B]!.t], {
      stdio: 'ignore',
    });
    helpers.push(server);
    await new Promise((r) => setTimeout(r, 300));
    const iperf = JSON.parse(run('ip', 'netns', 'exec', A, 'iperf3', '-c', side[B]!.t, '-t', '2', '-J')) as {
      end?: { sum_received?: { bits_per_second?: number } };
      error?: string;
    };
    const bps = iperf.end?.sum_received?.bits_per_second ?? 0;
    assert.ok(bps > 1e6, `iperf3 through the kernel path: ${bps} b/s ${iperf.error ?? ''}`);

    const stats = async (h: ReturnType<typeof spawn>, lines: string[]) => {
      h.stdin!.end();
      while (lines.length < 2) await new Promise((r) => setTimeout(r, 20));
      return JSON.parse(lines[1]!) as {
        sent: { packets: number };
        received: { packets: number };
        passedUp: { packets: number };
        superPackets: { packets: number };
      };
    };
    const sa = await stats(helpers[0]!, outA);
    const sb = await stats(helpers[1]!, outB);
    console.log(`iperf3 ${Math.round(bps / 1e6)} Mb/s; A ${JSON.stringify(sa)}; B ${JSON.stringify(sb)}`);
    // Every packet A sent in the kernel, B received in the kernel (and the other way round).
    assert.ok(sa.sent.packets > 1000, JSON.stringify(sa));
    // TCP's super-packets crossed whole: encapsulated once each, segmented (if ever) below us.
    assert.ok(sa.superPackets.packets > 10, JSON.stringify(sa));
    assert.equal(sb.received.packets, sa.sent.packets, 'B decapsulated all that A encapsulated');
    assert.equal(sa.received.packets, sb.sent.packets, 'and A all that B did');
  },
);
