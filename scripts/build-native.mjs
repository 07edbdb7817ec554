// Builds the TUN addon (src/endpoint/tun-native.c -> dist/native/arrow-tun.node) with the C compiler
// against Node's own headers; part of `npm run build`. Only `arrow endpoint --tun` needs it, so a
// machine without a compiler gets a warning here and a clear error from that command, not a broken build.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';

const source = 'src/endpoint/tun-native.c';
const out = 'dist/native/arrow-tun.node';

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

if (process.platform !== 'linux') process.exit(0); // TUN mode is Linux only
if (existsSync(out) && statSync(out).mtimeMs >= statSync(source).mtimeMs) process.exit(0);
const headers = nodeHeaders();
if (!headers) {
  console.warn(
    `warning: Node's headers (node_api.h, uv.h) not found: ${out} not built; arrow endpoint --tun will not work`,
  );
  process.exit(0);
}
mkdirSync(dirname(out), { recursive: true });
const cc = process.env.CC ?? 'cc';
const r = spawnSync(
  cc,
  ['-O2', '-Wall', '-Wextra', '-Wno-unused-parameter', '-shared', '-fPIC', `-I${headers}`, '-o', out, source],
  { stdio: 'inherit' },
);
if (r.status !== 0)
  console.warn(`warning: ${cc} could not build ${out}; arrow endpoint --tun will not work (see above)`);
