import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import type { LabHost } from '../src/lab/lab.js';
import {
  CUSTOMER,
  egressStats,
  esrMovedTo,
  esrNextHop,
  hostOf,
  startGateway,
  startGatewayLab,
  type Gateway,
  type GatewayLab,
} from '../src/lab/experiments/gateway.js';
import type { RouterStats } from '../src/store/circuit.js';
import type { DataplaneMode } from '../src/router/dataplane-mode.js';
import { eventually } from './helpers/network.js';

// Issue 12: IP transit to a host that runs nothing of ours. A customer's `arrow endpoint --tun`
// gateway sends IP packets through a 2-ISP path whose last circuit is deliver-ip; beta's egress
// router strips the envelope and its host routes the packet to an unmodified server (busybox
// httpd, ping's echo). The egress router that serves the customer announces its prefix through
// BIRD to the PoP's edge router (the ESR, BIRD too), which the web host routes the answers to;
// they come back through the egress TUN into the return path. Everything runs in namespaces this
// test makes and removes.

const run = promisify(execFile);

function requireRoot(): void {
  if (process.getuid?.() !== 0)
    assert.fail('IP transit tests need root (namespaces, TUN): run `npm test` as root');
}

const sum = (xs: RouterStats[], f: (s: RouterStats) => number): number => xs.reduce((n, s) => n + f(s), 0);

interface Transit extends GatewayLab {
  dir: string;
  gateway: Gateway;
  file: Buffer;
  /** TEST-NET-2, routed into the gateway's TUN but outside the path's prefixes. */
  outside: string;
}

/** The lab (src/lab/experiments/gateway.ts), an unmodified web server, and a customer gateway up. */
async function startTransit(
  name: string,
  fileBytes: number,
  o: { snat?: boolean; dataplane?: DataplaneMode } = {},
): Promise<Transit> {
  requireRoot();
  const g = await startGatewayLab(name, o);
  const dir = mkdtempSync(join(tmpdir(), 'arrow-ip-transit-'));
  try {
    const file = randomBytes(fileBytes);
    writeFileSync(join(dir, 'file.bin'), file);
    const httpd = g.web.exec(['busybox', 'httpd', '-f', '-p', '8080', '-h', dir]);
    httpd.stdout!.resume();
    httpd.stderr!.resume();
    const outside = '198.51.100.1';
    const gateway = await startGateway(g, {
      tag: 'test',
      prefixes: [`${g.web.address}/32`],
      routes: [`${g.web.address}/32`, `${outside}/32`],
    });
    return { ...g, dir, gateway, file, outside };
  } catch (err) {
    await g.lab.stop();
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
}

async function stopTransit(t: Transit): Promise<void> {
  await t.gateway.stop();
  await t.lab.stop();
  rmSync(t.dir, { recursive: true, force: true });
}

/** 20 pings at 20/s from the tunnel address to the web host. */
function ping20(t: Transit): ReturnType<LabHost['run']> {
  return t.client.run(['ping', '-c', '20', '-i', '0.05', '-W', '2', '-I', CUSTOMER, t.web.address]);
}

/** curl, from the tunnel address, of the web host's file into `out`; prints bytes and connections. */
function download(t: Transit, out: string, extra: string[] = []): ReturnType<LabHost['run']> {
  return t.client.run(
    [
      'curl',
      '-sS',
      '--max-time',
      '120',
      ...extra,
      '--interface',
      CUSTOMER,
      `http://${t.web.address}:8080/file.bin`,
      '-o',
      out,
      '-w',
      '%{size_download} %{num_connects}',
    ],
    { timeoutMs: 150_000 },
  );
}

// Both data paths: the kernel's decapsulates (tc: strip and redirect into the TUN) once the
// router serves the customer; the Node path writes to the TUN.
for (const dataplane of ['kernel', 'node'] as const)
  test(`IP transit, routers on the ${dataplane} path: curl and ping from a customer gateway through 2 ISPs to an unmodified server; outside prefixes are dropped and counted`, async () => {
    const t = await startTransit(`iptransit${dataplane[0]}`, 3 * 1024 * 1024 + 17, { dataplane });
    const { lab, client, esr } = t;
    try {
      // ping: ICMP through the path and back, from the tunnel address.
      const ping = await ping20(t);
      const received = Number(/(\d+) received/.exec(ping.stdout)?.[1] ?? -1);
      assert.ok(received >= 18, `ping: ${ping.stdout}${ping.stderr}`);

      // The egress router that decapsulated took the customer over and announced it: the edge
      // router routes the customer's prefix to it.
      const serving = await eventually(async () => {
        const s = (await egressStats(lab)).filter((x) => x.egress?.serving?.[`${CUSTOMER}/32`]);
        return s.length > 0 ? s : undefined;
      }, 5000);
      assert.ok(serving, 'an egress router serves the customer');
      const via = await eventually(() => esrNextHop(esr), 10_000);
      assert.ok(
        serving.some((s) => hostOf(s.address) === via),
        `edge router routes ${CUSTOMER} via ${via}; serving: ${serving.map((s) => s.router).join(', ')}`,
      );

      // curl: a TCP download, checked byte for byte.
      const got = join(t.dir, 'got.bin');
      const curl = await download(t, got);
      assert.equal(curl.code, 0, curl.stderr);
      assert.equal(sha256(readFileSync(got)), sha256(t.file));
      assert.equal(curl.stdout.trim(), `${t.file.length} 1`, 'one TCP connection carried the whole file');

      // Outside the circuit's prefixes: never leaves the ISP, counted at the egress.
      const before = sum(await egressStats(lab), (s) => s.drops['outside-prefixes'] ?? 0);
      const lost = await client.run(['ping', '-c', '5', '-i', '0.05', '-W', '1', '-I', CUSTOMER, t.outside]);
      assert.match(lost.stdout, / 0 received/, lost.stdout);
      const dropped = await eventually(async () => {
        const n = sum(await egressStats(lab), (s) => s.drops['outside-prefixes'] ?? 0) - before;
        return n >= 5 ? n : 0;
      }, 5000);
      assert.ok(dropped >= 5, `outside-prefixes drops at the egress: ${dropped}`);

      // The egress routers report what crossed their TUNs and whose prefix each answers for.
      const stats = await eventually(async () => {
        const s = await egressStats(lab);
        return sum(s, (x) => x.egress?.returned ?? 0) >= 20 ? s : undefined;
      }, 5000);
      assert.ok(stats, 'egress stats');
      assert.ok(sum(stats, (s) => s.egress?.delivered ?? 0) >= 20);
      for (const s of stats) {
        assert.equal(s.egress?.interface, 'arrow-egress');
        assert.ok(
          Object.keys(s.egress?.customers ?? {}).includes(`${CUSTOMER}/32`),
          JSON.stringify(s.egress),
        );
        assert.equal(s.dataplane?.mode, dataplane);
      }
      if (dataplane === 'kernel') {
        // After the first packet (which made the router take the customer over, in Node), the
        // serving router's kernel decapsulated the download's packets and dropped the outside ones.
        const k = sum(stats, (s) => s.dataplane?.kernel?.decap ?? 0);
        const delivered = sum(stats, (s) => s.egress?.delivered ?? 0);
        const outside = sum(stats, (s) => s.dataplane?.kernel?.dropOutsidePrefixes ?? 0);
        // The download's upstream is its ACKs (hundreds); only a customer's first packets go through Node.
        assert.ok(k >= 300 && k >= 0.9 * delivered, `decapsulated in the kernel: ${k} of ${delivered}`);
        assert.ok(outside >= 5, `outside-prefixes drops in the kernel: ${outside}`);
      }

      // The mapping stays small: the gateway relinquishes its circuits when it stops, and every
      // egress router drops the customer's routes (TUN route, standby, claim); the edge router forgets it.
      await t.gateway.stop();
      const forgotten = await eventually(async () => {
        const s = await egressStats(lab);
        const held = s.filter(
          (x) =>
            x.egress?.customers?.[`${CUSTOMER}/32`] !== undefined || x.egress?.serving?.[`${CUSTOMER}/32`],
        );
        return held.length === 0 && (await esrNextHop(esr)) === undefined ? s : undefined;
      }, 10_000);
      assert.ok(
        forgotten,
        `after relinquishing, the customer is still routed: ESR via ${await esrNextHop(esr)}`,
      );
      for (const r of forgotten) {
        const ns = lab.router(r.router).ns!;
        const routes = await run('ip', ['netns', 'exec', ns, 'ip', 'route', 'show', 'table', 'all']);
        assert.ok(
          !routes.stdout.includes(CUSTOMER),
          `${r.router} still routes ${CUSTOMER}:\n${routes.stdout}`,
        );
      }
    } finally {
      await stopTransit(t);
    }
  });

test('reliable decapsulation: the active egress router is killed mid-download; a sibling takes over on its first DATA packet or probe, the edge router follows, the same TCP connection completes, and the healed router does not take the customer back', async () => {
  const t = await startTransit('ipfailover', 8 * 1024 * 1024);
  const { lab, client, web, esr } = t;
  try {
    const warm = await client.run(['ping', '-c', '5', '-i', '0.1', '-W', '2', '-I', CUSTOMER, web.address]);
    assert.match(warm.stdout, / [45] received/, warm.stdout);
    const active = await eventually(async () => {
      const via = await esrNextHop(esr);
      return (await egressStats(lab)).find(
        (s) => hostOf(s.address) === via && s.egress?.serving?.[`${CUSTOMER}/32`],
      );
    }, 10_000);
    assert.ok(active, 'the edge router routes the customer to the egress router serving it');
    const sibling = (await egressStats(lab)).find((s) => s.router !== active.router)!;

    // A download of about 5 s (curl limits its rate), with the serving router killed at ~40%.
    const got = join(t.dir, 'got.bin');
    const downloading = download(t, got, ['--limit-rate', '1600K']);
    await sleep(2000);
    // By role, as `arrow lab fail egress:beta --kind kill` does: the router serving the customer now.
    assert.equal(await lab.resolveRole('egress:beta'), active.router);
    const killedAt = Date.now();
    await lab.fail(active.router, 'kill');
    // The edge router's route follows the takeover: poll it as it happens.
    const movedAt = await esrMovedTo(esr, hostOf(sibling.address), 30_000);
    if (!movedAt) {
      const now = (await egressStats(lab)).map((x) => `${x.router} ${x.address} ${JSON.stringify(x.egress)}`);
      assert.fail(
        `the edge router never routed ${CUSTOMER} via ${sibling.router} (it routes via ${await esrNextHop(esr)}); egress routers:\n${now.join('\n')}`,
      );
    }
    const curl = await downloading;
    assert.equal(curl.code, 0, curl.stderr);
    assert.equal(curl.stdout.trim(), `${t.file.length} 1`, 'the same TCP connection completed: no reconnect');
    assert.equal(sha256(readFileSync(got)), sha256(t.file));

    // Routers publish their stats every interval: the sibling's claim shows in the next one.
    const claim = await eventually(
      async () =>
        (await egressStats(lab)).find((s) => s.router === sibling.router)?.egress?.serving?.[
          `${CUSTOMER}/32`
        ],
      10_000,
      100,
    );
    if (!claim) {
      const now = (await egressStats(lab)).map(
        (x) => `${x.router} ${x.updatedAt} ${JSON.stringify(x.egress)}`,
      );
      assert.fail(`${sibling.router} does not serve the customer; egress routers:\n${now.join('\n')}`);
    }
    const takeoverAt = Date.parse(claim.since);
    // The edge router falls back to the sibling's standby announcement as soon as the dead router's
    // claim is withdrawn; the takeover (the customer's failover reaching the sibling) may come
    // before or after. A busy machine's false verdict may even have sent the customer's packets to
    // the sibling before the kill: its older claim then stood behind the newer one (docs/egress.md).
    console.log(
      `# killed ${active.router}; the edge router routed the customer via ${sibling.router} ${movedAt - killedAt} ms later (its route withdrawn, the sibling's standby or claim left); ` +
        (takeoverAt >= killedAt
          ? `${sibling.router} took the customer over ${takeoverAt - killedAt} ms after the kill (its first DATA packet or probe)`
          : `${sibling.router} had claimed the customer ${killedAt - takeoverAt} ms before the kill (an earlier move)`),
    );

    // No flapping: the old router comes back and carries nothing of the customer's, so it claims nothing.
    await lab.heal(active.router);
    const after = await ping20(t);
    assert.match(after.stdout, / (1[89]|20) received/, after.stdout);
    await sleep(1000);
    assert.equal(
      await esrNextHop(esr),
      hostOf(sibling.address),
      'the edge router still routes to the sibling',
    );
    const healed = (await egressStats(lab)).find((s) => s.router === active.router);
    assert.deepEqual(healed?.egress?.serving ?? {}, {}, `${active.router} claims nothing after it healed`);
  } finally {
    await stopTransit(t);
  }
});

test('source NAT at the egress: the web host answers the egress router and needs no route to customers; a move to the sibling breaks the TCP connection (the documented limit), and a new one works', async () => {
  const t = await startTransit('ipsnat', 8 * 1024 * 1024, { snat: true });
  const { lab, web, esr } = t;
  try {
    // The web host has no route to customer addresses: only NAT can make its answers come back.
    const route = await web.run(['ip', 'route', 'get', CUSTOMER]);
    assert.notEqual(route.code, 0, `the web host routes ${CUSTOMER}: ${route.stdout}`);
    const ping = await ping20(t);
    assert.match(ping.stdout, / (1[89]|20) received/, ping.stdout);
    const got = join(t.dir, 'got.bin');
    const curl = await download(t, got);
    assert.equal(curl.code, 0, curl.stderr);
    assert.equal(sha256(readFileSync(got)), sha256(t.file));

    // The router that decapsulates holds the customer (EN-DN mapping), its nftables rule is in
    // place, and nothing is announced: the edge router has no route to the customer.
    const serving = await lab.resolveRole('egress:beta');
    const rule = await run('ip', [
      'netns',
      'exec',
      lab.router(serving).ns!,
      'nft',
      'list',
      'table',
      'ip',
      'arrow_snat_arrow_egress',
    ]);
    assert.match(rule.stdout, /iifname "arrow-egress" masquerade/, rule.stdout);
    assert.equal(await esrNextHop(esr), undefined, 'no announcement with source NAT');

    // The limit: the sibling NATs to its own address, which the web server never talked to.
    const downloading = download(t, got, ['--limit-rate', '1600K']);
    // Killed: the router whose address the web server is talking to, which NATs this connection
    // (the newest claim, or the delivered counts, can name a router the flow has left or not
    // yet reached on a busy machine; the web host's socket cannot).
    await sleep(1000);
    // Its socket on the web host: the one with bytes still to deliver (busybox may have written the
    // whole file and closed, so it is not ESTABLISHED; the first download's is in TIME-WAIT).
    let sockets = '';
    const peer = await eventually(async () => {
      const ss = await web.run(['ss', '-tnH', 'exclude', 'time-wait', '( sport = :8080 )']);
      sockets = ss.stdout + ss.stderr;
      for (const line of ss.stdout.split('\n')) {
        // State, Recv-Q, Send-Q (a listener's is its backlog: skipped), local, peer.
        const [state, , sendQ, , peerAt] = line.trim().split(/\s+/);
        // busybox listens dual-stack: peers show as [::ffff:a.b.c.d]:port.
        const host = /^\[?(?:::ffff:)?(\d+\.\d+\.\d+\.\d+)\]?:\d+$/.exec(peerAt ?? '')?.[1];
        if (state !== 'LISTEN' && Number(sendQ) > 0 && host !== undefined) return host;
      }
      return undefined;
    }, 10_000);
    assert.ok(peer, `the web server sees the download; its sockets:\n${sockets}`);
    const owners = await Promise.all(
      (await egressStats(lab)).map(async (s) => {
        const a = await run('ip', [
          'netns',
          'exec',
          lab.router(s.router).ns!,
          'ip',
          '-4',
          '-o',
          'addr',
          'show',
        ]);
        return a.stdout.includes(` ${peer}/`) ? s.router : undefined;
      }),
    );
    const carrier = owners.find((r) => r !== undefined);
    assert.ok(carrier, `no egress router has the address ${peer} the web server talks to`);
    await lab.fail(carrier, 'kill');
    const broken = await downloading;
    assert.notEqual(broken.code, 0, `the connection survived a change of NAT address: ${broken.stdout}`);
    // A new connection goes out through the sibling, from its address.
    const again = await download(t, got);
    assert.equal(again.code, 0, again.stderr);
    assert.equal(sha256(readFileSync(got)), sha256(t.file));
    const sibling = await lab.resolveRole('egress:beta');
    assert.notEqual(sibling, carrier);
    console.log(
      `# source NAT: killing ${carrier} broke the download (curl: ${broken.stderr.trim()}); a new one went out via ${sibling}`,
    );
  } finally {
    await stopTransit(t);
  }
});

function sha256(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}
