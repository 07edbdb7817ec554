// The kernel rows' traffic generator (src/bench/udpgen.c) numbers and tags datagrams exactly as
// docs/wire.md says: checked against the TypeScript tag the routers' Node path verifies with.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { datagram, UDPGEN } from '../src/bench/forward-kernel.js';
import { OFFSET_SEQUENCE, OFFSET_TAG, TAG_LENGTH } from '../src/wire/header.js';
import { sipKey } from '../src/wire/siphash.js';
import { verifyTopTag } from '../src/wire/tag.js';

test('arrow-udpgen: sequences count up from 1 and every tag verifies with the key, for payloads of every length mod 8', () => {
  const key = Buffer.from('000102030405060708090a0b0c0d0e0f', 'hex');
  const auth = Buffer.from('aa'.repeat(16), 'hex');
  for (const size of [44, 45, 51, 52, 64, 1400]) {
    const template = datagram(size, auth, true);
    const out = execFileSync(UDPGEN, ['--dump', '3', template.toString('hex'), key.toString('hex')], {
      encoding: 'utf8',
    });
    const lines = out.trim().split('\n');
    assert.equal(lines.length, 3);
    for (const [i, line] of lines.entries()) {
      const d = Buffer.from(line, 'hex');
      assert.equal(d.length, size);
      assert.equal(d.readBigUInt64BE(OFFSET_SEQUENCE), BigInt(i + 1), `${size} B: sequence`);
      assert.ok(
        verifyTopTag(sipKey(key), d, OFFSET_TAG + TAG_LENGTH),
        `${size} B, datagram ${i + 1}: tag verifies`,
      );
      // And a tag made with another key does not: the check is not vacuous.
      const other = Buffer.from(key);
      other[0] = other[0]! ^ 1;
      assert.ok(!verifyTopTag(sipKey(other), d, OFFSET_TAG + TAG_LENGTH));
    }
  }
});

test('arrow-udpgen: bad arguments exit 2 with a usage line', () => {
  assert.throws(
    () => execFileSync(UDPGEN, ['127.0.0.1', '9', '0', 'zz'], { stdio: 'pipe' }),
    (err: Error & { status?: number; stderr?: Buffer }) =>
      err.status === 2 && /SECONDS must be > 0/.test(String(err.stderr)),
  );
});
