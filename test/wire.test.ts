import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  check,
  decode,
  encode,
  FLAG_TAG,
  HEADER_LENGTH,
  PacketType,
  TAG_LENGTH,
  VERSION,
  type Packet,
} from '../src/wire/header.js';
import { parseAddress, formatAddress } from '../src/wire/address.js';
import { isAuthenticatorHex, newAuthenticator } from '../src/wire/authenticator.js';

const packetArb: fc.Arbitrary<Packet> = fc.record(
  {
    type: fc.constantFrom(
      PacketType.Data,
      PacketType.Probe,
      PacketType.ProbeAck,
      PacketType.Echo,
      PacketType.EchoReply,
      PacketType.Keepalive,
      PacketType.KeepaliveAck,
      PacketType.Trace,
      PacketType.TraceReply,
      PacketType.Relay,
      PacketType.RelayReply,
      PacketType.LastLeg,
      PacketType.LastLegReply,
    ),
    hopLimit: fc.integer({ min: 0, max: 255 }),
    authenticator: fc.uint8Array({ minLength: 16, maxLength: 16 }),
    sequence: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
    tags: fc.array(fc.uint8Array({ minLength: 16, maxLength: 16 }), { maxLength: 4 }),
    payload: fc.uint8Array({ maxLength: 2000 }),
  },
  { requiredKeys: ['type', 'hopLimit', 'authenticator', 'sequence', 'payload'] },
);

test('encode then decode returns the same packet (property)', () => {
  fc.assert(
    fc.property(packetArb, (p) => {
      const bytes = encode(p);
      assert.equal(bytes.length, HEADER_LENGTH + TAG_LENGTH * (p.tags?.length ?? 0) + p.payload.length);
      const r = decode(bytes);
      assert.ok(r.ok, 'valid packet must decode');
      assert.equal(r.packet.type, p.type);
      assert.equal(r.packet.hopLimit, p.hopLimit);
      assert.equal(r.packet.sequence, p.sequence);
      assert.deepEqual([...r.packet.authenticator], [...p.authenticator]);
      assert.deepEqual([...r.packet.payload], [...p.payload]);
      assert.deepEqual(
        (r.packet.tags ?? []).map((t) => [...t]),
        (p.tags ?? []).map((t) => [...t]),
      );
    }),
    { numRuns: 500 },
  );
});

test('decoding arbitrary bytes never throws and yields a packet or a typed error (property)', () => {
  const codes = new Set(['truncated', 'bad-version', 'unknown-type', 'reserved-flags']);
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => {
      const r = decode(bytes);
      if (r.ok) {
        assert.equal(bytes[0], VERSION);
        assert.ok(bytes.length >= HEADER_LENGTH);
      } else {
        assert.ok(codes.has(r.error.code), r.error.code);
        assert.equal(check(bytes), r.error.code);
        assert.ok(r.error.message.length > 0);
      }
    }),
    { numRuns: 5000 },
  );
});

test('garbage that looks almost like a header is classified precisely (property)', () => {
  // Start from valid packets and corrupt one header byte: the codec must name what is wrong.
  fc.assert(
    fc.property(
      packetArb,
      fc.integer({ min: 0, max: 3 }),
      fc.integer({ min: 0, max: 255 }),
      (p, at, value) => {
        const bytes = encode(p);
        bytes[at] = value;
        const r = decode(bytes);
        if (at === 0 && value !== VERSION) assert.equal(!r.ok && r.error.code, 'bad-version');
        if (at === 1 && (value < 1 || value > PacketType.LastLegReply))
          assert.equal(!r.ok && r.error.code, 'unknown-type');
        // Bits 1-3 are reserved; a tag count (bits 4-7) without T is too.
        if (at === 2 && ((value & 0x0e) !== 0 || ((value & FLAG_TAG) === 0 && value !== 0)))
          assert.equal(!r.ok && r.error.code, 'reserved-flags');
        if (at === 2 && (value & 0x0e) === 0 && (value & FLAG_TAG) !== 0) {
          // A tag count: well formed if the datagram is long enough for that many tags.
          const n = 1 + (value >> 4);
          if (bytes.length < HEADER_LENGTH + TAG_LENGTH * n) assert.equal(!r.ok && r.error.code, 'truncated');
          else assert.ok(r.ok && r.packet.tags?.length === n);
        }
        if (at === 3) assert.ok(r.ok && r.packet.hopLimit === value);
      },
    ),
    { numRuns: 2000 },
  );
});

test('truncated packets are reported as truncated, including missing tags', () => {
  const p: Packet = {
    type: PacketType.Data,
    hopLimit: 9,
    authenticator: new Uint8Array(16).fill(7),
    sequence: 5n,
    tags: [new Uint8Array(16).fill(1), new Uint8Array(16).fill(2)],
    payload: new Uint8Array(0),
  };
  const full = encode(p);
  for (let n = 0; n < full.length; n++) {
    const r = decode(full.subarray(0, n));
    assert.equal(r.ok, false);
    if (!r.ok) assert.equal(r.error.code, 'truncated', `length ${n}`);
  }
  assert.equal(decode(full).ok, true);
});

test('header layout is as documented in docs/wire.md', () => {
  const bytes = encode({
    type: PacketType.Echo,
    hopLimit: 64,
    authenticator: Uint8Array.from({ length: 16 }, (_, i) => i),
    sequence: 0x0102030405060708n,
    payload: Uint8Array.of(0xaa, 0xbb),
  });
  assert.equal(
    bytes.toString('hex'),
    '01' + '04' + '00' + '40' + '000102030405060708090a0b0c0d0e0f' + '0102030405060708' + 'aabb',
  );
});

test('the tag stack: T, the count in bits 4-7, tags in order after the sequence (docs/wire.md)', () => {
  const tags = [new Uint8Array(16).fill(0x11), new Uint8Array(16).fill(0x22), new Uint8Array(16).fill(0x33)];
  const bytes = encode({
    type: PacketType.Data,
    hopLimit: 64,
    authenticator: new Uint8Array(16),
    sequence: 1n,
    tags,
    payload: Uint8Array.of(0xaa),
  });
  assert.equal(bytes[2], 0x21, 'T with 3 tags: 0x01 | (3 - 1) << 4');
  assert.equal(bytes.subarray(28, 44).toString('hex'), '11'.repeat(16));
  assert.equal(bytes.subarray(60, 76).toString('hex'), '33'.repeat(16));
  assert.equal(bytes[76], 0xaa);
  // One tag is exactly the old T layout (flags 0x01, tag at 28, payload at 44).
  const one = encode({ ...decodeOk(bytes), tags: [tags[0]!] });
  assert.equal(one[2], 0x01);
  assert.equal(one[44], 0xaa);
  assert.throws(() => encode({ ...decodeOk(bytes), tags: Array.from({ length: 17 }, () => tags[0]!) }));
});

function decodeOk(b: Uint8Array): Packet {
  const r = decode(b);
  assert.ok(r.ok);
  return r.packet;
}

test('addresses parse and format, and bad ones are refused with a message', () => {
  assert.deepEqual(parseAddress('127.0.0.1:4000'), { ok: true, address: { host: '127.0.0.1', port: 4000 } });
  assert.deepEqual(parseAddress('[::1]:53'), { ok: true, address: { host: '::1', port: 53 } });
  assert.equal(formatAddress({ host: '::1', port: 53 }), '[::1]:53');
  for (const bad of ['127.0.0.1', ':80', '1.2.3.4:99999', 'a b:1', ''])
    assert.equal(parseAddress(bad).ok, false, bad);
});

test('authenticators are 128-bit random hex', () => {
  const a = newAuthenticator();
  const b = newAuthenticator();
  assert.ok(isAuthenticatorHex(a));
  assert.notEqual(a, b);
  assert.equal(isAuthenticatorHex('A'.repeat(32)), false);
});
