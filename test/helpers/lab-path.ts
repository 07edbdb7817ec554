import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Endpoint } from '../../src/endpoint/endpoint.js';
import { buyPath, type BoughtPath } from '../../src/endpoint/path.js';
import { throughSegments } from '../../src/lab/demo.js';
import type { Lab } from '../../src/lab/lab.js';

/**
 * A customer's path through every ISP of a lab to its first UDP server, with the return path to
 * `endpoint`, saved in `dir` as `arrow connect --save` saves one (for `--path FILE` commands).
 */
export async function buySavedPath(
  lab: Lab,
  endpoint: Endpoint,
  dir: string,
): Promise<{ path: BoughtPath; file: string; server: string }> {
  const server = lab.servers[0]!.address;
  const path = await buyPath(
    { segments: throughSegments(lab), target: { kind: 'udp', address: server } },
    { replyTo: endpoint.replyTo },
  );
  const file = join(dir, 'path.json');
  writeFileSync(file, JSON.stringify(path));
  return { path, file, server };
}
