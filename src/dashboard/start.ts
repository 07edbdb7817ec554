import { mustParseAddress } from '../wire/address.js';
import { createLogger } from '../util/log.js';
import { Collector, type CollectorOptions } from './collector.js';
import type { CustomerWatch } from './customer.js';
import { startDashboardServer, type DashboardServer } from './server.js';

export interface Dashboard {
  collector: Collector;
  server: DashboardServer;
  customer: CustomerWatch | undefined;
  /** Shows a customer's view from now on (the demo, once it has bought its path). */
  watchCustomer(c: CustomerWatch): void;
  stop(): Promise<void>;
}

/** The collector, the customer's view if any, and the page: `arrow dashboard` and `arrow demo`. */
export async function startDashboard(
  o: CollectorOptions & { listen: string; customer?: CustomerWatch },
): Promise<Dashboard> {
  const at = mustParseAddress(o.listen, { bind: true });
  const collector = new Collector(o);
  let customer = o.customer;
  if (customer) collector.customer = () => customer!.view();
  const server = await startDashboardServer(collector, {
    host: at.host,
    port: at.port,
    logger: createLogger('dashboard', process.env.ARROW_LOG_LEVEL ?? 'warn'),
  });
  customer?.start();
  collector.start();
  return {
    collector,
    server,
    get customer() {
      return customer;
    },
    watchCustomer(c) {
      customer?.stop();
      customer = c;
      collector.customer = () => c.view();
      c.start();
    },
    async stop() {
      collector.stop();
      customer?.stop();
      await server.close();
    },
  };
}
