import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { progressReporter } from '../src/util/progress.js';

// Progress bars appear only at a terminal, never in a pipe, in CI or with --json (issue 13).

function stream(isTTY: boolean): { s: NodeJS.WriteStream; text: () => string } {
  const p = new PassThrough();
  let out = '';
  p.on('data', (d: Buffer) => (out += d.toString()));
  Object.assign(p, {
    isTTY,
    columns: 100,
    rows: 30,
    cursorTo: () => true,
    clearLine: () => true,
    moveCursor: () => true,
  });
  return { s: p as unknown as NodeJS.WriteStream, text: () => out };
}

const LINES = [
  'making a 63 MB file of random bytes...',
  'trial 1/3: lost 5',
  'trial 2/3: lost 4',
  'trial 3/3: lost 6',
];

test('progress: plain lines without a terminal, in CI, or for an experiment with --json; nothing for a benchmark with --json', () => {
  for (const [o, why] of [
    [{ stdoutIsTTY: false }, 'stderr not a terminal'],
    [{ stdoutIsTTY: true, env: { CI: 'true' } }, 'CI'],
    [{ stdoutIsTTY: true, noBar: true }, 'an experiment with --json'],
  ] as const) {
    const { s, text } = stream(why !== 'stderr not a terminal');
    const r = progressReporter({ ...o, stream: s, env: 'env' in o ? o.env : {} });
    for (const l of LINES) r.say(l);
    r.done();
    assert.equal(text(), LINES.map((l) => `${l}\n`).join(''), why);
  }
  const { s, text } = stream(true);
  const silent = progressReporter({ silent: true, stream: s, stdoutIsTTY: true, env: {} });
  for (const l of LINES) silent.say(l);
  silent.done();
  assert.equal(text(), '');
});

test('progress: at a terminal, i/N lines drive a bar that ends at N/N, and every line is still shown', () => {
  const { s, text } = stream(true);
  const r = progressReporter({ stream: s, stdoutIsTTY: true, env: {} });
  for (const l of LINES) r.say(l);
  r.done();
  const out = text();
  assert.match(out, /3\/3/, 'the bar reached the last step');
  assert.match(out, /[\u2588\u2591]/, 'a bar was drawn');
  for (const l of LINES) assert.ok(out.includes(l), l);
});
