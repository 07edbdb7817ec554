import { Forwarder } from '../endpoint/forwarder.js';
import { PathFileSchema } from '../endpoint/spec.js';
import { loadConfig } from '../util/config.js';
import { authPrefix } from '../wire/authenticator.js';

export async function runForward(o: { listen: string; path: string }): Promise<void> {
  const spec = loadConfig(PathFileSchema, o.path);
  const fwd = await Forwarder.start(o.listen, spec);
  console.log(`forwarding UDP ${fwd.listen} over ${fwd.path.forward.length} circuit(s):`);
  for (const b of fwd.path.forward)
    console.log(
      `  ${b.segment.isp ?? b.segment.portal} ${b.circuit.ingressPop}->${b.circuit.egressPop} auth ${authPrefix(b.circuit.auth)}`,
    );
  const stop = async (): Promise<void> => {
    const failures = await fwd.stop();
    for (const f of failures) console.error(`could not relinquish: ${f.message}`);
    process.exit(failures.length ? 1 : 0);
  };
  process.once('SIGINT', () => void stop());
  process.once('SIGTERM', () => void stop());
}
