import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { LabHost } from '../src/lab/lab.js';
import { randomFile } from '../src/lab/experiments/download.js';
import { ONE_ISP, startExperimentLab, startTunPair } from '../src/lab/experiments/setup.js';

// TCP between two `arrow endpoint --tun` processes on the kernel path, through routers on the
// Node path. The endpoints' tc program sees TCP's packets before their checksums are finished
// (CHECKSUM_PARTIAL), and a veth carries them so into the router's namespace, where the router
// reads the bytes through a UDP socket: unless the endpoint has them finished on the way out, the
// far end gets segments whose TCP checksum covers only the pseudo-header, and drops them (ping
// passes: ICMP's checksum is done in software). docs/endpoint.md, "Checksums and super-packets".

const PORT = 8000;

function requireRoot(): void {
  if (process.getuid?.() !== 0) assert.fail('this test needs root (namespaces, TUN, BPF): run it as root');
}

/** A counter of the host's kernel (`nstat`), absolute: the namespace is the test's own. */
async function nstat(host: LabHost, name: string): Promise<number> {
  const r = await host.run(['nstat', '-saz', name], { timeoutMs: 5000 });
  const m = new RegExp(`^${name}\\s+(\\d+)`, 'm').exec(r.stdout);
  if (!m) throw new Error(`nstat printed no ${name}: ${r.stdout}${r.stderr}`);
  return Number(m[1]);
}

test('TCP through routers on the Node path between two TUN endpoints on the kernel path: curl downloads a file intact from python3 -m http.server', async () => {
  requireRoot();
  const x = await startExperimentLab('tcpk', { dataplane: 'node' });
  try {
    for (const r of x.lab.routers)
      assert.equal(r.dataplane?.mode, 'node', `${r.name}: ${JSON.stringify(r.dataplane)}`);
    const pair = await startTunPair(x, { subnet: 7, hops: ONE_ISP, dataplane: 'kernel' });
    const www = join(x.lab.dir, 'www');
    mkdirSync(www, { recursive: true });
    // 3 MB: TCP's window opens far enough for the stack to hand the TUN super-packets too.
    const sha = await randomFile(x.server, join(www, 'file.bin'), 3);
    const httpd = x.server.exec(['python3', '-m', 'http.server', '--bind', pair.serverIp, String(PORT)], {
      cwd: www,
      stdio: 'ignore',
    });
    try {
      assert.match(pair.dataplane.client, /^kernel/);
      assert.match(pair.dataplane.server, /^kernel/);
      // Each endpoint says who finishes its checksums: the stack, on its host's veth (auto).
      for (const who of ['client', 'server'])
        assert.match(
          readFileSync(join(x.lab.dir, 'logs', `tun-7-${who}.log`), 'utf8'),
          /^checksums: finished by the stack on \S+ \(auto: a virtual interface; /m,
        );
      let up = false;
      for (let i = 0; i < 50 && !up; i++) {
        up =
          (
            await x.client.run([
              'curl',
              '-sS',
              '-o',
              '/dev/null',
              '--max-time',
              '2',
              `http://${pair.serverIp}:${PORT}/`,
            ])
          ).code === 0;
        if (!up) await sleep(100);
      }
      const dest = join(x.lab.dir, 'got.bin');
      const r = await x.client.run(
        [
          'curl',
          '-sS',
          '--fail',
          '--max-time',
          '60',
          '-o',
          dest,
          '-w',
          '%{size_download}',
          `http://${pair.serverIp}:${PORT}/file.bin`,
        ],
        { timeoutMs: 70_000 },
      );
      assert.equal(r.code, 0, `curl failed: ${r.stderr}`);
      assert.equal(Number(r.stdout.trim()), 3_000_000);
      const got = await x.client.run(['sha256sum', dest], { timeoutMs: 30_000 });
      assert.equal(got.stdout.split(' ')[0], sha, "the download's SHA-256 differs from the file's");
      // No segment arrived with a bad TCP checksum at either end.
      assert.equal(
        await nstat(x.server, 'TcpInCsumErrors'),
        0,
        'the server host received TCP segments with bad checksums',
      );
      assert.equal(
        await nstat(x.client, 'TcpInCsumErrors'),
        0,
        'the client host received TCP segments with bad checksums',
      );
      // The kernel carried it: the server's kernel path sent the file's segments, its process almost nothing.
      const s = await pair.stats();
      assert.ok(s.server.kernel, 'the server endpoint is on the kernel path');
      assert.ok(
        s.server.kernel.sent >= 2000,
        `the server's kernel path sent ${s.server.kernel.sent} packets`,
      );
      assert.ok(s.server.node.fromTun < 100, `the server's process carried ${s.server.node.fromTun} packets`);
    } finally {
      httpd.kill('SIGTERM');
      await pair.stop();
    }
  } finally {
    await x.lab.stop();
  }
});
