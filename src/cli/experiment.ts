import { resolve } from 'node:path';
import type { DataplaneMode } from '../router/dataplane-mode.js';
import { progressReporter } from '../util/progress.js';

export interface ExperimentFlags {
  out: string;
  json?: boolean;
  runs?: number;
  seconds: number;
  pings: number;
  sizes?: string;
  trials: number;
  pps: number;
  counts: string;
  dataplane?: DataplaneMode;
  mode: 'peer' | 'gateway';
}

function list(v: string, flag: string): number[] {
  const xs = v.split(',').map((x) => Number(x.trim()));
  if (xs.length === 0 || xs.some((x) => !Number.isInteger(x) || x <= 0))
    throw new Error(`${flag} must be a comma-separated list of positive integers, got ${JSON.stringify(v)}`);
  return xs;
}

/** `arrow lab experiment NAME`: runs it, writes NAME.md / NAME.svg / NAME.png / NAME.json to --out, prints a summary or JSON. */
export async function runExperimentCommand(name: string, o: ExperimentFlags): Promise<void> {
  const out = resolve(o.out);
  const reporter = progressReporter({ noBar: o.json });
  const progress = (l: string): void => reporter.say(l);
  let result: unknown;
  if (o.mode === 'gateway' && name !== 'download' && name !== 'icmp-loss')
    throw new Error(`--mode gateway: only download and icmp-loss have it, not ${name}`);
  if (o.mode === 'gateway' && o.dataplane)
    throw new Error(
      '--mode gateway: --dataplane is not supported (the gateway lab runs its routers on the default data path: the kernel where it loads)',
    );
  try {
    switch (name) {
      case 'hops': {
        const { runHops } = await import('../lab/experiments/hops.js');
        result = await runHops({
          runs: o.runs ?? 5,
          seconds: o.seconds,
          pings: o.pings,
          out,
          progress,
          ...(o.dataplane ? { dataplane: o.dataplane } : {}),
        });
        break;
      }
      case 'download': {
        if (o.mode === 'gateway') {
          const { runDownloadGateway } = await import('../lab/experiments/download-gateway.js');
          const r = await runDownloadGateway({
            sizesMB: list(o.sizes ?? '63,625', '--sizes'),
            runs: o.runs ?? 10,
            out,
            progress,
          });
          result = { ...r, runs: r.runs.map(({ takeovers: _, ...run }) => run) };
          break;
        }
        const { runDownload } = await import('../lab/experiments/download.js');
        result = await runDownload({
          sizesMB: list(o.sizes ?? '63,625', '--sizes'),
          runs: o.runs ?? 10,
          out,
          progress,
        });
        break;
      }
      case 'icmp-loss': {
        if (o.mode === 'gateway') {
          const { runIcmpLossGateway } = await import('../lab/experiments/icmp-loss-gateway.js');
          const r = await runIcmpLossGateway({ trials: o.trials, pps: o.pps, out, progress });
          result = {
            mode: r.mode,
            pps: r.pps,
            trials: r.trials,
            lost: r.lost,
            takeoverMs: r.takeoverMs,
            routeMs: r.routeMs,
          };
          break;
        }
        const { runIcmpLoss } = await import('../lab/experiments/icmp-loss.js');
        const r = await runIcmpLoss({ trials: o.trials, pps: o.pps, out, progress });
        result = { pps: r.pps, trials: r.trials, lost: r.lost, endpointDataplane: r.endpointDataplane };
        break;
      }
      case 'clients': {
        const { runClients } = await import('../lab/experiments/clients.js');
        result = await runClients({ counts: list(o.counts, '--counts'), out, progress });
        break;
      }
      case 'dos': {
        const { runDos } = await import('../lab/experiments/dos.js');
        result = await runDos({
          seconds: o.seconds,
          out,
          progress,
          ...(o.dataplane ? { dataplane: o.dataplane } : {}),
        });
        break;
      }
      case 'cdn': {
        const sizes = list(o.sizes ?? '10', '--sizes');
        if (sizes.length !== 1) throw new Error('cdn: --sizes takes one file size (MB)');
        const { runCdn } = await import('../lab/experiments/cdn.js');
        const r = await runCdn({ runs: o.runs ?? 10, sizeMB: sizes[0]!, out, progress });
        // The summary; every download is in cdn.json.
        const { downloads: _, ...summary } = r;
        result = summary;
        break;
      }
      default:
        throw new Error(`unknown experiment ${name}: hops, download, icmp-loss, clients, dos or cdn`);
    }
  } finally {
    // The bar's line is finished and the cursor shown again, whatever happened.
    reporter.done();
  }
  if (o.json) console.log(JSON.stringify(result, null, 2));
  else console.log(`${name}: report, plot and JSON in ${out}/${name}.{md,svg,png,json}`);
  // The lab's processes are gone; nothing else should keep us.
  process.exit(0);
}
