// `npm test`: runs every compiled test file (dist/test/*.test.js) with Node's test runner.
// `pretest` has already built and linted. Tests that need programs provision them here.
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { provision } from './provision.mjs';

provision();

const files = readdirSync('dist/test')
  .filter((f) => f.endsWith('.test.js'))
  .sort()
  .map((f) => `dist/test/${f}`);
const args = ['--test', '--test-concurrency=2', '--test-timeout=300000', ...process.argv.slice(2), ...files];
const r = spawnSync(process.execPath, args, { stdio: 'inherit' });
process.exit(r.status ?? 1);
