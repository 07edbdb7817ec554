import { randomFillSync } from 'node:crypto';
import { decodeRelayRequest, encodeRelayReply } from '../wire/diagnostics.js';
import {
  AUTH_LENGTH,
  DEFAULT_HOP_LIMIT,
  encode,
  HEADER_LENGTH,
  headerLength,
  OFFSET_SEQUENCE,
  PacketType,
} from '../wire/header.js';
import type { DropReason } from './dataplane.js';
import type { Send } from './trace.js';

/** Relays outstanding at once. With RELAY_EXPIRY_MS this bounds the echoes sent to silent addresses. */
export const RELAY_RING = 256;
/** A relay's echo is forgotten (and its slot free) this long after it went out. */
export const RELAY_EXPIRY_MS = 1000;
const SLOT_BITS = 8n;
const SLOT_MASK = (1n << SLOT_BITS) - 1n;

const NO_AUTH = new Uint8Array(AUTH_LENGTH);

/**
 * The relayed echo (docs/diagnostics.md): a RELAY from a requester (the atlas) names a
 * router R2; this router (R1) sends R2 an ECHO and, when R2's ECHO_REPLY comes back,
 * reports the R1→R2 round trip to the requester. State is a fixed ring allocated once,
 * matched by an unguessable id in the echo's sequence, so R1 only ever acts on an
 * ECHO_REPLY it asked for (no open reflector) and never holds more than RELAY_RING relays.
 */
export class EchoRelay {
  /** Sequence of the slot's echo: 56 random bits and the slot index; 0 = free. */
  private readonly ids = new BigUint64Array(RELAY_RING);
  private readonly sentAt = new Float64Array(RELAY_RING);
  private readonly targetHost: string[] = new Array<string>(RELAY_RING).fill('');
  private readonly targetPort = new Uint16Array(RELAY_RING);
  private readonly requesterHost: string[] = new Array<string>(RELAY_RING).fill('');
  private readonly requesterPort = new Uint16Array(RELAY_RING);
  private readonly requesterSeq = new BigUint64Array(RELAY_RING);
  private cursor = 0;
  private readonly random = Buffer.alloc(8 * RELAY_RING);
  private randomAt = this.random.length;
  private readonly clock = (): number => performance.now();
  readonly counters = { relayed: 0, answered: 0 };

  constructor(private readonly send: Send) {}

  readonly request = (buf: Buffer, fromPort: number, fromHost: string): DropReason | undefined => {
    const target = decodeRelayRequest(buf.subarray(headerLength(buf)));
    if (!target) return 'bad-payload';
    const now = this.clock();
    // The oldest slot is next: if it is still waiting, every slot is.
    const i = this.cursor;
    if (this.ids[i] !== 0n && now - this.sentAt[i]! < RELAY_EXPIRY_MS) return 'relay-busy';
    this.cursor = (i + 1) % RELAY_RING;
    const id = (this.nonce() << SLOT_BITS) | BigInt(i);
    this.ids[i] = id;
    this.sentAt[i] = now;
    this.targetHost[i] = target.host;
    this.targetPort[i] = target.port;
    this.requesterHost[i] = fromHost;
    this.requesterPort[i] = fromPort;
    this.requesterSeq[i] = buf.readBigUInt64BE(OFFSET_SEQUENCE);
    this.counters.relayed++;
    // Our own small echo, never the requester's bytes: a relay cannot amplify.
    this.send(
      encode({
        type: PacketType.Echo,
        hopLimit: 1,
        authenticator: NO_AUTH,
        sequence: id,
        payload: new Uint8Array(0),
      }),
      target.port,
      target.host,
    );
    return undefined;
  };

  /** An ECHO_REPLY: the answer to one of our relays' echoes, from the router it went to, in time; else dropped. */
  readonly reply = (buf: Buffer, fromPort: number, fromHost: string): DropReason | undefined => {
    if (buf.length < HEADER_LENGTH) return 'unsolicited-reply';
    const id = buf.readBigUInt64BE(OFFSET_SEQUENCE);
    const i = Number(id & SLOT_MASK);
    if (
      id === 0n ||
      i >= RELAY_RING ||
      this.ids[i] !== id ||
      this.targetPort[i] !== fromPort ||
      this.targetHost[i] !== fromHost
    )
      return 'unsolicited-reply';
    const rttMs = this.clock() - this.sentAt[i]!;
    this.ids[i] = 0n;
    if (rttMs >= RELAY_EXPIRY_MS) return 'unsolicited-reply'; // too late: the slot was given up
    this.counters.answered++;
    this.send(
      encode({
        type: PacketType.RelayReply,
        hopLimit: DEFAULT_HOP_LIMIT,
        authenticator: NO_AUTH,
        sequence: this.requesterSeq[i]!,
        payload: encodeRelayReply({ rttMs, target: { host: fromHost, port: fromPort } }),
      }),
      this.requesterPort[i]!,
      this.requesterHost[i]!,
    );
    return undefined;
  };

  /** 56 random bits, nonzero, from a pool refilled from the CSPRNG every RELAY_RING relays. */
  private nonce(): bigint {
    if (this.randomAt >= this.random.length) {
      randomFillSync(this.random);
      this.randomAt = 0;
    }
    const n = this.random.readBigUInt64BE(this.randomAt) >> 8n;
    this.randomAt += 8;
    return n | 1n;
  }
}
