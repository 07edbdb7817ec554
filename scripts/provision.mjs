// Provisions the programs the test suite needs, so `npm test` works on a fresh machine.
// etcd: use $ETCD_BIN, `etcd` on PATH or /usr/bin/etcd; otherwise, as root, install
// Debian's etcd-server with apt-get. Anything else is a clear failure, never a skip.
import { execSync, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

function haveEtcd() {
  if (process.env.ETCD_BIN && existsSync(process.env.ETCD_BIN)) return true;
  return (
    spawnSync('sh', ['-c', 'command -v etcd || test -x /usr/bin/etcd'], { stdio: 'ignore' }).status === 0
  );
}

function onPath(binary) {
  return spawnSync('sh', ['-c', `command -v ${binary}`], { stdio: 'ignore' }).status === 0;
}

/**
 * Makes `binary` available: if it is not on PATH, installs Debian's `debianPackage` with apt-get
 * (as root; `apt-get update` once if the first try fails). Anything else is a clear failure, never a
 * skip. For the programs the tests run unmodified: ping, curl, iperf3, an HTTP server; and the
 * kernel fast path's tool chain, where `binary` is a file and `present` says whether it exists.
 */
export function ensurePackage(binary, debianPackage, present = onPath) {
  const have = () => present(binary);
  if (have()) return;
  const root = typeof process.getuid === 'function' && process.getuid() === 0;
  if (!root) {
    console.error(
      `npm test needs ${binary}.\n` +
        `Install it (Debian/Ubuntu: sudo apt-get install ${debianPackage}) and run npm test again.`,
    );
    process.exit(1);
  }
  console.error(`${binary} not found: installing Debian package ${debianPackage} with apt-get ...`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const install = () =>
    spawnSync('apt-get', ['install', '-y', '--no-install-recommends', debianPackage], {
      stdio: 'inherit',
      env,
    });
  if (install().status !== 0) {
    execSync('apt-get update', { stdio: 'inherit', env });
    if (install().status !== 0) {
      console.error(`apt-get could not install ${debianPackage}; see the output above.`);
      process.exit(1);
    }
  }
  if (!have()) {
    console.error(`${debianPackage} installed but no ${binary} on PATH`);
    process.exit(1);
  }
}

export function provision() {
  // The TUN tests ping across a circuit (test/tun.test.ts).
  ensurePackage('ping', 'iputils-ping');
  // The experiments (test/experiments.test.ts) run unmodified programs across the lab.
  ensurePackage('iperf3', 'iperf3');
  ensurePackage('curl', 'curl');
  ensurePackage('busybox', 'busybox');
  // The kernel fast path (docs/dataplane.md): clang compiles the XDP program, libbpf loads it,
  // bpftool inspects it; the differential tests (test/bpf-differential.test.ts) run it.
  ensurePackage('clang', 'clang');
  ensurePackage('llvm-strip', 'llvm');
  ensurePackage('bpftool', 'bpftool', (b) => onPath(b) || existsSync('/usr/sbin/bpftool'));
  ensurePackage('/usr/include/bpf/libbpf.h', 'libbpf-dev', existsSync);
  ensurePackage('/usr/include/linux/bpf.h', 'linux-libc-dev', existsSync);
  // IP transit's egress PoPs announce customer prefixes with BIRD 2 (test/ip-transit.test.ts).
  ensurePackage('bird', 'bird2', (b) => onPath(b) || existsSync('/usr/sbin/bird'));
  // The systemd units in deploy/ are checked with systemd-analyze verify (test/supervise.test.ts).
  ensurePackage('systemd-analyze', 'systemd');
  // The veth tests turn GRO on at the far end (test/bpf-forward.test.ts).
  ensurePackage('ethtool', 'ethtool', (b) => onPath(b) || existsSync('/usr/sbin/ethtool'));
  // The dashboard is tested in a real browser: Debian's Chromium, driven by playwright-core (test/dashboard.test.ts).
  ensurePackage('chromium', 'chromium', (b) => onPath(b) || existsSync('/usr/bin/chromium'));
  // An egress with source NAT installs an nftables rule (test/ip-transit.test.ts).
  ensurePackage('nft', 'nftables', (b) => onPath(b) || existsSync('/usr/sbin/nft'));
  // The plots are drawn in DejaVu Sans, which resvg is given as files (src/plot/chart.ts).
  ensurePackage('/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf', 'fonts-dejavu-core', existsSync);
  provisionEtcd();
}

function provisionEtcd() {
  if (haveEtcd()) return;
  const root = typeof process.getuid === 'function' && process.getuid() === 0;
  if (!root) {
    console.error(
      'npm test needs etcd (the etcd store tests start real clusters).\n' +
        'Install it (Debian/Ubuntu: sudo apt-get install etcd-server), or set ETCD_BIN, and run npm test again.',
    );
    process.exit(1);
  }
  console.error('etcd not found: installing Debian package etcd-server with apt-get ...');
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const install = () =>
    spawnSync('apt-get', ['install', '-y', '--no-install-recommends', 'etcd-server'], {
      stdio: 'inherit',
      env,
    });
  if (install().status !== 0) {
    execSync('apt-get update', { stdio: 'inherit', env });
    if (install().status !== 0) {
      console.error('apt-get could not install etcd-server; see the output above.');
      process.exit(1);
    }
  }
  // Debian's package may start a system etcd on 2379; the tests use their own ports and do not need it.
  spawnSync('sh', ['-c', 'service etcd stop 2>/dev/null || true'], { stdio: 'ignore' });
  if (!haveEtcd()) {
    console.error('etcd-server installed but no etcd binary found');
    process.exit(1);
  }
}
