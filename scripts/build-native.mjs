// Builds the native parts; part of `npm run build`:
// - the TUN addon (src/endpoint/tun-native.c -> dist/native/arrow-tun.node), for `arrow endpoint --tun`;
// - sd_notify (src/util/sd-notify.c -> dist/native/arrow-notify.node), for routers under systemd;
// - the router's kernel fast path: the XDP program (src/router/bpf/arrow.bpf.c -> dist/native/arrow.bpf.o,
//   with clang) and its libbpf addon (src/router/bpf-native.c -> dist/native/arrow-bpf.node, -lbpf);
// - the TUN endpoint's kernel path (src/endpoint/bpf/endpoint.bpf.c -> dist/native/endpoint.bpf.o);
// - `arrow bench forward`'s kernel rows: their XDP sink and plain forwarder (src/bench/bpf/bench.bpf.c ->
//   dist/native/bench.bpf.o) and their traffic generator (src/bench/udpgen.c -> dist/native/arrow-udpgen).
// Each is optional: a machine without a compiler, clang or libbpf gets a warning and a clear error from
// the feature that needs it (the routers use the Node data plane), never a broken build.
// scripts/test.mjs calls buildNative() again after provisioning, as `pretest` builds before it.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Node's headers: beside the node binary (official and Debian layouts), or npm's nodedir. */
function nodeHeaders() {
  const candidates = [
    process.env.npm_config_nodedir && join(process.env.npm_config_nodedir, 'include', 'node'),
    resolve(dirname(process.execPath), '..', 'include', 'node'),
    '/usr/include/node',
    '/usr/local/include/node',
  ].filter(Boolean);
  return candidates.find((d) => existsSync(join(d, 'node_api.h')) && existsSync(join(d, 'uv.h')));
}

function upToDate(out, sources) {
  if (!existsSync(out)) return false;
  const built = statSync(out).mtimeMs;
  return sources.every((s) => statSync(s).mtimeMs <= built);
}

function have(binary) {
  return spawnSync('sh', ['-c', `command -v ${binary}`], { stdio: 'ignore' }).status === 0;
}

/** Runs a compiler; false (with a warning naming what will not work) when it fails. */
function compile(cmd, args, out, consequence) {
  mkdirSync(dirname(out), { recursive: true });
  const r = spawnSync(cmd, args, { stdio: 'inherit' });
  if (r.status === 0) return true;
  console.warn(`warning: ${cmd} could not build ${out}; ${consequence} (see above)`);
  return false;
}

function buildTun(headers) {
  const source = 'src/endpoint/tun-native.c';
  const out = 'dist/native/arrow-tun.node';
  if (upToDate(out, [source])) return;
  if (!headers) {
    console.warn(
      `warning: Node's headers (node_api.h, uv.h) not found: ${out} not built; arrow endpoint --tun will not work`,
    );
    return;
  }
  compileAddon(source, out, headers, [], 'arrow endpoint --tun will not work');
}

/** sd_notify for routers under systemd (src/util/sd-notify.c -> dist/native/arrow-notify.node). */
function buildNotify(headers) {
  const source = 'src/util/sd-notify.c';
  const out = 'dist/native/arrow-notify.node';
  if (upToDate(out, [source]) || !headers) return;
  compileAddon(
    source,
    out,
    headers,
    [],
    'routers under systemd cannot notify it (Type=notify, WatchdogSec=)',
  );
}

/** A Node-API addon: a shared object built against Node's headers, linked with `libs`. */
function compileAddon(source, out, headers, libs, consequence) {
  const cc = process.env.CC ?? 'cc';
  const flags = ['-O2', '-Wall', '-Wextra', '-Wno-unused-parameter', '-shared', '-fPIC'];
  return compile(cc, [...flags, `-I${headers}`, '-o', out, source, ...libs], out, consequence);
}

const KERNEL_PATH_OFF = 'the routers will use the Node data plane only';
/** The ARROW header and tag, included by both BPF objects. */
const TAG_HEADER = 'src/router/bpf/arrow-tag.bpf.h';

/** Where Debian keeps <asm/types.h> for the host (the BPF target has no multiarch dir of its own). */
function asmIncludes() {
  const r = spawnSync(
    'sh',
    ['-c', 'gcc -print-multiarch 2>/dev/null || dpkg-architecture -qDEB_HOST_MULTIARCH'],
    {
      encoding: 'utf8',
    },
  );
  const triple = (r.stdout ?? '').trim() || `${process.arch === 'arm64' ? 'aarch64' : 'x86_64'}-linux-gnu`;
  return existsSync(`/usr/include/${triple}/asm`) ? [`-I/usr/include/${triple}`] : [];
}

function buildBpfObject(source, out, consequence) {
  if (upToDate(out, [source, TAG_HEADER])) return;
  if (
    !have('clang') ||
    !existsSync('/usr/include/linux/bpf.h') ||
    !existsSync('/usr/include/bpf/bpf_helpers.h')
  ) {
    console.warn(
      `warning: clang, linux-libc-dev or libbpf-dev missing: ${out} not built; ${consequence}` +
        ' (Debian: apt-get install clang llvm libbpf-dev linux-libc-dev)',
    );
    return;
  }
  compile(
    'clang',
    ['-O2', '-g', '-target', 'bpf', '-Wall', ...asmIncludes(), '-Isrc/router/bpf', '-c', source, '-o', out],
    out,
    consequence,
  );
}

function buildBpfAddon(headers) {
  const source = 'src/router/bpf-native.c';
  const out = 'dist/native/arrow-bpf.node';
  if (upToDate(out, [source])) return;
  if (!headers || !existsSync('/usr/include/bpf/libbpf.h')) {
    console.warn(`warning: Node's headers or libbpf-dev missing: ${out} not built; ${KERNEL_PATH_OFF}`);
    return;
  }
  compileAddon(source, out, headers, ['-lbpf'], KERNEL_PATH_OFF);
}

const KERNEL_ROWS_OFF = 'arrow bench forward will report no kernel rows';

function buildUdpgen() {
  const source = 'src/bench/udpgen.c';
  const out = 'dist/native/arrow-udpgen';
  if (upToDate(out, [source])) return;
  if (!existsSync('/usr/include/bpf/libbpf.h')) {
    console.warn(`warning: libbpf-dev missing: ${out} not built; ${KERNEL_ROWS_OFF}`);
    return;
  }
  const cc = process.env.CC ?? 'cc';
  compile(cc, ['-O2', '-Wall', '-Wextra', '-o', out, source, '-lbpf'], out, KERNEL_ROWS_OFF);
}

export function buildNative() {
  if (process.platform !== 'linux') return; // TUN mode and XDP are Linux only
  const headers = nodeHeaders();
  buildTun(headers);
  buildNotify(headers);
  buildBpfObject('src/router/bpf/arrow.bpf.c', 'dist/native/arrow.bpf.o', KERNEL_PATH_OFF);
  buildBpfAddon(headers);
  buildBpfObject('src/bench/bpf/bench.bpf.c', 'dist/native/bench.bpf.o', KERNEL_ROWS_OFF);
  buildBpfObject(
    'src/endpoint/bpf/endpoint.bpf.c',
    'dist/native/endpoint.bpf.o',
    'TUN endpoints will carry every packet in Node',
  );
  buildUdpgen();
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) buildNative();
