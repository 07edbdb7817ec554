// `npm test`: runs every compiled test file (dist/test/*.test.js) with Node's test runner.
// `pretest` has already built and linted. Tests that need programs provision them here.
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { buildNative } from './build-native.mjs';
import { provision } from './provision.mjs';

provision();
// `pretest` built before provisioning could install clang and libbpf: build what is still missing.
buildNative();

const files = readdirSync('dist/test')
  .filter((f) => f.endsWith('.test.js'))
  .sort()
  .map((f) => `dist/test/${f}`);
// One test file at a time: the network tests each run a lab of 10-30 real processes and assert
// protocol timing at the millisecond scale (15 ms link timeouts). Two such labs on a 2-core machine
// test the scheduler, not Arrow: a neighbour descheduled for 20 ms is, correctly, declared dead.
const args = ['--test', '--test-concurrency=1', '--test-timeout=300000', ...process.argv.slice(2), ...files];
const r = spawnSync(process.execPath, args, { stdio: 'inherit' });
process.exit(r.status ?? 1);
