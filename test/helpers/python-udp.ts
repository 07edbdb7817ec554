import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mustParseAddress } from '../../src/wire/address.js';

/**
 * A foreign UDP client (python3): `n` numbered datagrams at `pps` to `target`, then, after a second
 * for stragglers, the count of distinct datagrams that came back.
 */
export async function pythonUdpEchoes(target: string, n: number, pps: number): Promise<number> {
  const { host, port } = mustParseAddress(target);
  const p = spawn('python3', [
    '-c',
    `
import socket, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setblocking(False)
got = set()
for i in range(${n}):
    s.sendto(b'hello %d' % i, ('${host}', ${port}))
    time.sleep(${1 / pps})
    try:
        while True:
            got.add(s.recv(2048))
    except BlockingIOError:
        pass
end = time.time() + 1
while time.time() < end:
    try:
        got.add(s.recv(2048))
    except BlockingIOError:
        time.sleep(0.01)
print(len(got))
`,
  ]);
  let out = '';
  let err = '';
  p.stdout.on('data', (d: Buffer) => (out += d.toString()));
  p.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const [code] = (await once(p, 'exit')) as [number | null];
  assert.equal(code, 0, err);
  return Number(out.trim());
}
