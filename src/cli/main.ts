#!/usr/bin/env node
import { Argument, Command, Option } from 'commander';
import { ConfigError } from '../util/config.js';
import { parseAddress } from '../wire/address.js';
import { VERSION } from '../util/version.js';
import type { AtlasBenchFlags } from '../bench/atlas.js';
import type { LivenessBenchFlags } from '../bench/liveness.js';
import type { DataplaneMode } from '../router/dataplane-mode.js';
import { spreadFlagOptions } from './spread.js';

const program = new Command();
program
  .name('arrow')
  .description('ARROW transit as a service: routers, portals, endpoints and a lab for multi-ISP circuits')
  .version(VERSION)
  .showHelpAfterError()
  .addOption(
    new Option(
      '--ca <file>',
      "PEM file of a CA to trust for HTTPS (portals, atlas), besides the system's; `arrow lab up` writes ca.pem",
    ).env('ARROW_CA'),
  )
  .hook('preAction', async () => {
    const ca = program.opts<{ ca?: string }>().ca;
    if (ca) {
      const { trustCaFile } = await import('../util/http-client.js');
      trustCaFile(ca);
    }
  });

program
  .command('router')
  .description('run one ARROW router (data plane) until SIGINT/SIGTERM')
  .requiredOption('-c, --config <file>', 'router config (YAML); see docs/operations.md')
  .addOption(
    new Option(
      '--dataplane <mode>',
      'kernel: the eBPF/XDP fast path (on loopback: tc on lo), or fail at start; node: this process; auto: kernel where it can (root, BPF, the listen address on an interface other than loopback), else node and why (default: the config, else auto; docs/dataplane.md)',
    ).choices(['auto', 'kernel', 'node']),
  )
  .action(async (o: { config: string; dataplane?: DataplaneMode }) => {
    const { runRouter } = await import('../router/main.js');
    await runRouter(o.config, o.dataplane ? { dataplane: o.dataplane } : {});
  });

program
  .command('supervise')
  .description(
    'run routers under a failure detector: a hung (no heartbeat), stalled (event loop) or leaking (memory) router is SIGKILLed, and a dead one restarted with exponential backoff; one JSON line per action (docs/supervise.md)',
  )
  .requiredOption('--router <config>', 'a router config to run (repeatable)', collect)
  .option('--heartbeat-ms <ms>', 'how often each router reports (default 500)', (v) =>
    positiveInt(v, '--heartbeat-ms'),
  )
  .option('--missed <n>', 'heartbeats missed in a row before a router is hung (default 4)', (v) =>
    positiveInt(v, '--missed'),
  )
  .option('--max-loop-lag-ms <ms>', 'event-loop delay that makes a router stalled (default 2000)', (v) =>
    positiveInt(v, '--max-loop-lag-ms'),
  )
  .option('--max-rss-mb <mb>', 'resident memory that makes a router leaking (default 2048)', (v) =>
    positiveInt(v, '--max-rss-mb'),
  )
  .option('--backoff-initial-ms <ms>', 'first restart delay (default 100)', (v) =>
    positiveInt(v, '--backoff-initial-ms'),
  )
  .option('--backoff-max-ms <ms>', 'longest restart delay (default 30000); it doubles per quick death', (v) =>
    positiveInt(v, '--backoff-max-ms'),
  )
  .option(
    '--admin <ip:port>',
    'admin API (/metrics, /status, /log/level) address (default 127.0.0.1:0; its URL is printed as an `admin` event)',
    (v) => bindAddress(v, '--admin'),
  )
  .action(async (o: import('../supervisor/main.js').SuperviseFlags) => {
    const { runSupervise } = await import('../supervisor/main.js');
    await runSupervise(o);
  });

program
  .command('status')
  .description(
    "the state of a running lab or host from its daemons' admin APIs: each router's data path, circuits, dead neighbours, repairs and store revision; portals and the atlas. Exits 1 when a component does not answer (docs/operations.md)",
  )
  .option('--lab <name>', 'a running lab (arrow lab up, or a test lab with state)')
  .option('--admin <url>', 'an admin API base URL, e.g. http://127.0.0.1:9180 (repeatable)', collect)
  .option('--json', "print each component's /status answer (or why it did not answer) as JSON")
  .action(async (o: import('./status.js').StatusFlags) => {
    const { runStatus } = await import('./status.js');
    await runStatus(o);
  });

program
  .command('verify')
  .description(
    "check stitched paths without sending a packet (docs/verify.md): where every circuit's packets end, loops and black holes with a witness, the ISPs crossed, and what each single router failure does; exits 1 on a loop or black hole",
  )
  .option('--path <file>', 'a bought path (arrow connect --save): its portals, with their API keys')
  .option('--portal <url>', 'a portal you buy from (repeatable; pair each with --key)', collect)
  .option('--key <key>', 'your API key at the --portal in the same position (repeatable)', collect)
  .option('--store <file>', "an ISP's whole table: its portal config (isp and store)")
  .option('--no-failures', 'skip the single-router-failure analysis')
  .option(
    '--snat <isp...>',
    "ISPs whose egress routers source-NAT deliver-ip traffic (egress.snat) instead of routing the customer's addresses: their flow state is a NAT binding that a failure loses",
    collect,
  )
  .option('--json', 'print the verdict as JSON')
  .action(async (o: import('./verify.js').VerifyFlags) => {
    const { runVerify } = await import('./verify.js');
    await runVerify(o);
  });

program
  .command('dashboard')
  .description(
    'the live web dashboard: routers, links, failover timeline, customer view and charts, from the admin APIs of a running lab or host (docs/operations.md)',
  )
  .option('--lab <name>', 'a running lab (arrow lab up, or a test lab with state)')
  .option('--admin <url>', 'an admin API base URL, e.g. http://127.0.0.1:9180 (repeatable)', collect)
  .option(
    '--path <file>',
    "a customer's bought path (arrow connect --save): its circuits, SLA and traceroute",
  )
  .option('--listen <host:port>', 'where the page is served; loopback unless you mean it', '127.0.0.1:8080')
  .option('--interval <ms>', 'how often every admin API is asked', (v) => positiveInt(v, '--interval'), 500)
  .action(async (o: import('./dashboard.js').DashboardFlags) => {
    const { runDashboard } = await import('./dashboard.js');
    await runDashboard(o);
  });

const portal = program
  .command('portal')
  .description(
    "run an ISP's portal (HTTP/JSON control plane) until SIGINT/SIGTERM; HTTPS with `tls` in the config, plain HTTP on loopback only",
  )
  .option('-c, --config <file>', 'portal config (YAML); see docs/operations.md')
  .action(async (o: { config?: string }) => {
    if (!o.config) throw new Error("required option '-c, --config <file>' not specified");
    const { runPortal } = await import('../portal/main.js');
    await runPortal(o.config);
  });

portal
  .command('hash-key')
  .description(
    'print the apiKeyHash of an API key for a portal config (scrypt, random salt); without KEY, make a new key and print both',
  )
  .argument('[key]', "the account's API key (default: a new random one)")
  .action(async (key: string | undefined) => {
    const { hashApiKey, newApiKey } = await import('../portal/accounts.js');
    const apiKey = key ?? newApiKey();
    if (key !== undefined && key.length < 16) throw new Error('an API key needs at least 16 characters');
    const hash = await hashApiKey(apiKey);
    if (key === undefined) console.log(`apiKey: ${apiKey}   # give this to the customer; do not store it`);
    console.log(`apiKeyHash: ${hash}`);
  });

program
  .command('echo-server')
  .description('run a plain UDP echo server (knows nothing about ARROW)')
  .requiredOption('-l, --listen <host:port>', 'UDP address to listen on')
  .option(
    '--count <n>',
    'serve this many consecutive ports from the one given',
    (v) => positiveInt(v, '--count'),
    1,
  )
  .action(async (o: { listen: string; count: number }) => {
    const { startEchoServer } = await import('../lab/echo-server.js');
    const { announceReady } = await import('../util/ready.js');
    const { mustParseAddress } = await import('../wire/address.js');
    const at = mustParseAddress(o.listen, { bind: true });
    if (o.count > 1 && at.port === 0) throw new Error('--count needs a fixed --listen port');
    const servers = [];
    for (let i = 0; i < o.count; i++)
      servers.push(await startEchoServer(`${at.host}:${at.port === 0 ? 0 : at.port + i}`));
    const shutdown = async (): Promise<void> => process.exit(0);
    process.once('SIGTERM', () => void shutdown());
    process.once('SIGINT', () => void shutdown());
    announceReady({ address: servers[0]!.address }, shutdown);
    if (!process.send) console.log(`udp echo server on ${servers.map((s) => s.address).join(' ')}`);
  });

program
  .command('flood', { hidden: true })
  .description(
    'internal: the attacker of arrow lab experiment dos: random UDP datagrams at a bounded rate and time, lab addresses only',
  )
  .requiredOption(
    '--target <host:port>',
    'where to send (repeatable; 10.77.0.0/16 or 127.0.0.0/8 only)',
    collect,
  )
  .requiredOption('--pps <n>', 'datagrams per second per target', (v) => positiveInt(v, '--pps'))
  .requiredOption('--seconds <s>', 'how long', (v) => positiveNumber(v, '--seconds'))
  .option('--size <bytes>', 'datagram size', (v) => positiveInt(v, '--size'), 1000)
  .action(async (o: { target: string[]; pps: number; seconds: number; size: number }) => {
    const { flood } = await import('../lab/flood.js');
    // One JSON object a line: {"event":"flooding","at":ms} once sending, then the result.
    const r = await flood({
      targets: o.target,
      pps: o.pps,
      seconds: o.seconds,
      size: o.size,
      onStart: (at) => console.log(JSON.stringify({ event: 'flooding', at })),
    });
    console.log(JSON.stringify(r));
  });

program
  .command('udp-clients', { hidden: true })
  .description(
    'internal: N plain UDP clients echoing through ports base..base+N-1 (arrow lab experiment clients)',
  )
  .requiredOption('--target <host>', 'server address')
  .requiredOption('--base-port <port>', 'first server port', (v) => positiveInt(v, '--base-port'))
  .requiredOption('--count <n>', 'clients', (v) => positiveInt(v, '--count'))
  .option('--interval <ms>', 'between datagrams', (v) => positiveInt(v, '--interval'), 10)
  .option('--duration <ms>', 'how long to send', (v) => positiveInt(v, '--duration'), 4000)
  .action(
    async (o: { target: string; basePort: number; count: number; interval: number; duration: number }) => {
      const { runUdpClients } = await import('../lab/udp-clients.js');
      // One JSON object a line: progress events (UdpClientsEvent), then the result.
      const r = await runUdpClients({
        ...o,
        intervalMs: o.interval,
        durationMs: o.duration,
        onEvent: (e) => console.log(JSON.stringify(e)),
      });
      console.log(JSON.stringify(r));
    },
  );

program
  .command('demo')
  .description(
    'start a 3-ISP network of real processes, buy a circuit through all three, and send echoes through it',
  )
  .option('--once', 'run the scenario once and exit instead of running until Ctrl-C')
  .option('--json', 'print one JSON report instead of text (implies --once)')
  .option('--count <n>', 'echoes to send', (v) => positiveInt(v, '--count'), 100)
  .option('--topology <file>', 'topology YAML instead of the built-in one (see docs/lab.md)')
  .option(
    '--dashboard <host:port>',
    'serve the live dashboard here (default 127.0.0.1:8080 unless --once; a busy port falls back to a free one)',
  )
  .option('--no-dashboard', 'no dashboard')
  .action(
    async (o: {
      once?: boolean;
      json?: boolean;
      count: number;
      topology?: string;
      dashboard?: string | false;
    }) => {
      const { runDemoCommand } = await import('./demo.js');
      await runDemoCommand(o);
    },
  );

const lab = program.command('lab').description('emulated multi-ISP networks on this machine');
lab
  .command('up')
  .description('start every router, portal and server of a topology as real processes, until Ctrl-C')
  .argument('<file>', 'topology YAML (see docs/lab.md)')
  .option('--dir <dir>', 'keep configs, stores and logs here (default: a temp dir removed on exit)')
  .addOption(
    new Option(
      '--store <kind>',
      "override every ISP's store: sqlite, or etcd (a 3-member cluster per ISP)",
    ).choices(['sqlite', 'etcd']),
  )
  .option(
    '--netns',
    'every router, portal, server and the atlas in its own network namespace on 10.77.0.0/16 (root; see docs/lab.md)',
  )
  .option(
    '--no-tls',
    'serve portals and the atlas over plain HTTP (default: HTTPS with a CA made for the lab, <dir>/ca.pem; clients need --ca)',
  )
  .addOption(
    new Option(
      '--dataplane <mode>',
      "the routers' data plane (arrow router --dataplane); default auto: the kernel path with --netns where it loads, else node; kernel without --netns: tc on lo (root)",
    ).choices(['auto', 'kernel', 'node']),
  )
  .action(
    async (
      file: string,
      o: {
        dir?: string;
        store?: 'sqlite' | 'etcd';
        netns?: boolean;
        tls: boolean;
        dataplane?: DataplaneMode;
      },
    ) => {
      const { runLabUp } = await import('./lab.js');
      await runLabUp(file, o);
    },
  );
lab
  .command('down')
  .description(
    'stop a running lab, or clean up a crashed one: its processes, namespaces and links, and state file',
  )
  .argument('[name]', "the topology's name (default: every lab with a state file)")
  .action(async (name: string | undefined) => {
    const { runLabDown } = await import('./lab.js');
    await runLabDown(name);
  });
lab
  .command('fail')
  .description('inject a failure into a router of a running `arrow lab up` (undo with `arrow lab heal`)')
  .argument(
    '<router>',
    'router name, e.g. beta-fra-1, or a role: egress:ISP, the egress router that serves a customer now (IP transit)',
  )
  .addOption(
    new Option('--kind <kind>', 'kill: SIGKILL; hang: SIGSTOP; link-down: its interface down (--netns labs)')
      .choices(['kill', 'hang', 'link-down'])
      .makeOptionMandatory(),
  )
  .option('--lab <name>', 'which lab (default: the only one up)')
  .action(async (router: string, o: { kind: 'kill' | 'hang' | 'link-down'; lab?: string }) => {
    const { runLabFail } = await import('./lab.js');
    await runLabFail(router, o);
  });
lab
  .command('experiment')
  .description(
    "reproduce a seed's experiment on a netns lab with unmodified programs (root): hops, download, icmp-loss, clients, dos, cdn",
  )
  .addArgument(
    new Argument(
      '<name>',
      'hops (paper Table 1), download (thesis 5.2), icmp-loss (thesis 5.1), clients (seed 000), dos (ARROW §3.5: spreading over K = 4 ingress points against a flood, and arrow protect), cdn (paper 4.4: arrow cdn, nearest cache by RTT)',
    ).choices(['hops', 'download', 'icmp-loss', 'clients', 'dos', 'cdn']),
  )
  .option('--out <dir>', 'where the Markdown report, the plot (SVG and PNG) and JSON go', './experiments')
  .option('--json', 'print the result as JSON (progress goes to stderr)')
  .option(
    '--runs <n>',
    'hops: iperf3 runs per path (5); download: runs with and without failure per size (10); cdn: requests per client, through the CDN and from the origin each (10)',
    (v) => positiveInt(v, '--runs'),
  )
  .option(
    '--seconds <s>',
    'hops: seconds per iperf3 run; dos: seconds per measured window',
    (v) => positiveInt(v, '--seconds'),
    10,
  )
  .option('--pings <n>', 'hops: pings per path', (v) => positiveInt(v, '--pings'), 100)
  .option('--sizes <list>', 'download: file sizes in MB (63,625); cdn: the one file size in MB (10)')
  .option('--trials <n>', 'icmp-loss: kill trials', (v) => positiveInt(v, '--trials'), 20)
  .option('--pps <n>', 'icmp-loss: pings per second', (v) => positiveInt(v, '--pps'), 100)
  .option('--counts <list>', 'clients: client counts', '5,20,40')
  .addOption(
    new Option(
      '--dataplane <mode>',
      "the lab routers' data plane (arrow router --dataplane); default auto: the kernel path where it loads",
    ).choices(['auto', 'kernel', 'node']),
  )
  .addOption(
    new Option(
      '--mode <mode>',
      'download, icmp-loss: peer (TUN endpoints at both ends) or gateway (a customer gateway to a web host that runs nothing of ours, through deliver-ip; the egress router is killed)',
    )
      .choices(['peer', 'gateway'])
      .default('peer'),
  )
  .action(async (name: string, o: import('./experiment.js').ExperimentFlags) => {
    const { runExperimentCommand } = await import('./experiment.js');
    await runExperimentCommand(name, o);
  });
lab
  .command('heal')
  .description(
    'undo `arrow lab fail`: restart a killed router on its address, SIGCONT a hung one, or bring its link up',
  )
  .argument('<router>', 'router name')
  .option('--lab <name>', 'which lab (default: the only one up)')
  .action(async (router: string, o: { lab?: string }) => {
    const { runLabHeal } = await import('./lab.js');
    await runLabHeal(router, o);
  });

program
  .command('protect')
  .description(
    "DoS protection at the destination's host: an nftables table of its own that lets in only ARROW deliveries from the given egress routers (and replies to the host's own connections), dropping and counting everything else; prints the counters; Ctrl-C removes it (docs/services.md)",
  )
  .requiredOption(
    '--egress <addr...>',
    'IPv4 address of an egress router that delivers your circuits (repeat or comma-separate)',
    (v: string, prev: string[] = []) => [...prev, ...v.split(',').filter(Boolean)],
  )
  .option(
    '--port <port>',
    'accept from the egress routers only UDP to this port (repeatable; default: any)',
    (v: string, prev: number[] = []) => [...prev, positiveInt(v, '--port')],
  )
  .option(
    '--tun <name>',
    'also accept what arrives on this TUN interface: the inner packets your own `arrow endpoint --tun` decapsulated from its circuits (repeatable)',
    (v: string, prev: string[] = []) => [...prev, v],
  )
  .option('--name <name>', 'names the table arrow_protect_NAME (letters, digits, _), default "default"')
  .option('--interval <ms>', 'how often the counters are printed', (v) => positiveInt(v, '--interval'), 1000)
  .option('--json', 'one JSON object a line: installed, counters, removed')
  .action(async (o: import('./protect.js').ProtectFlags) => {
    const { runProtect } = await import('./protect.js');
    await runProtect(o);
  });

program
  .command('mailboxes')
  .description(
    "DoS protection, the destination's side (Phalanx's mailboxes): buy K ingress paths converging on this destination for one client, with return paths to the client's ARROW socket; write the client's bundle (circuits and authenticators, no API keys) for `arrow forward --mailboxes`; hold them until Ctrl-C, which relinquishes them and removes the bundle (docs/services.md)",
  )
  .requiredOption(
    '-p, --path <file>',
    'path file (YAML, as for arrow forward) from an ingress PoP to this destination, bought with your keys; repeat: one per ingress point',
    collect,
  )
  .requiredOption('--client <host:port>', "the client's ARROW socket: the return paths deliver there")
  .requiredOption('-o, --out <file>', "the client's bundle (YAML, mode 0600)")
  .action(async (o: import('./mailboxes.js').MailboxesFlags) => {
    const { runMailboxes } = await import('./mailboxes.js');
    await runMailboxes(o);
  });

const forwardCommand = program
  .command('forward')
  .description(
    'UDP port forward with failover: buy the path(s) in path files and carry an unmodified UDP client over them; prints a timestamped line per failover event',
  )
  .requiredOption('-l, --listen <host:port>', 'local UDP address for the client to send to')
  .option(
    '-p, --path <file>',
    'path file (YAML): segments and target; repeat for standbys (the first is the primary, the others are bought and kept warm; all are re-buy candidates); see docs/endpoint.md',
    collect,
  )
  .option(
    '--mailboxes <file>',
    "instead of --path: a destination's mailbox bundle (arrow mailboxes); spreads over its ingress points, binds the ARROW socket its return paths deliver to, buys and relinquishes nothing (docs/services.md)",
  )
  .option(
    '--detect-timeout <ms>',
    'failure detector: silence after sending that means failing (default 50)',
    (v) => positiveInt(v, '--detect-timeout'),
  )
  .option('--probe-interval <ms>', 'failure detector: probe interval while failing (default 20)', (v) =>
    positiveInt(v, '--probe-interval'),
  )
  .option(
    '--spread',
    'DoS protection: every --path is an ingress point, and each datagram takes one chosen by a keyed PRF of its sequence number, instead of a primary and standbys (docs/services.md)',
  );
spreadFlagOptions(forwardCommand).action(async (o: import('./forward.js').ForwardFlags) => {
  const { runForward } = await import('./forward.js');
  await runForward(o);
});

const endpointCommand = program
  .command('endpoint')
  .description(
    'TUN mode (root): carry every IP packet routed into a TUN interface through bought circuits to a peer endpoint, or as a gateway to hosts that run nothing of ours (a path target of kind ip), with failover; see docs/endpoint.md and docs/egress.md',
  )
  .requiredOption('--tun <name>', 'TUN interface to create (at most 15 characters)')
  .requiredOption('--address <cidr>', 'address of the TUN, e.g. 10.200.0.1/24 (repeatable)', collect)
  .option(
    '--route <cidr>',
    "more destinations to route into the TUN (repeatable); a gateway's default target prefixes",
    collect,
  )
  .option('--netns <name>', 'move the TUN into this existing network namespace (the ARROW socket stays here)')
  .option(
    '--underlay-mtu <bytes>',
    'MTU towards the routers; TUN MTU = this - 56 (IPv4 20 + UDP 8 + ARROW 28)',
    (v) => positiveInt(v, '--underlay-mtu'),
    1500,
  )
  .option(
    '-l, --listen <host:port>',
    'UDP address of the ARROW socket (default 127.0.0.1:0; with --peer-file, the address in it)',
  )
  .option(
    '-p, --path <file>',
    'buyer: path file(s) to buy, primary first, then standbys; each bought with its return path',
    collect,
  )
  .option(
    '--peer <host:port>',
    "buyer: the other endpoint's ARROW address (overrides the path files' target)",
  )
  .option('--write-peer <file>', 'buyer: write the circuits the other side needs here (JSON)')
  .option('--peer-file <file>', 'answerer: the file the buyer wrote; use its circuits instead of buying')
  .option(
    '--wait <seconds>',
    'answerer: how long to wait for --peer-file to appear',
    (v) => positiveNumber(v, '--wait'),
    30,
  )
  .option(
    '--detect-timeout <ms>',
    'failure detector: silence after sending that means failing (default 50)',
    (v) => positiveInt(v, '--detect-timeout'),
  )
  .option('--probe-interval <ms>', 'failure detector: probe interval while failing (default 20)', (v) =>
    positiveInt(v, '--probe-interval'),
  )
  .option(
    '--stats <seconds>',
    'print counters as a JSON line this often (also on SIGUSR1 and at exit)',
    (v) => positiveNumber(v, '--stats'),
  )
  .addOption(
    new Option(
      '--dataplane <mode>',
      'who carries the IP packets: kernel: tc-BPF programs encapsulate and decapsulate (this process keeps probes and failover), or fail at start; node: this process; auto: kernel where it can (root, BPF, --listen on an IPv4 address of a real interface, no --netns), else node and why (default auto; docs/dataplane.md)',
    ).choices(['auto', 'kernel', 'node']),
  )
  .addOption(
    new Option(
      '--underlay-checksums <mode>',
      "kernel path: who finishes TCP's checksums and cuts its super-packets on the interface the packets leave by. finish: the stack (turns the interface's tx checksum offload off, as ethtool -K IF tx off; it stays off), so that a router or endpoint on the Node path on this host (behind a veth) reads finished packets; keep: the device (a NIC does; a veth leaves them to the kernel that receives them); auto: finish on a virtual interface, keep on a NIC (default auto; docs/endpoint.md)",
    ).choices(['auto', 'finish', 'keep']),
  )
  .option(
    '--spread',
    "DoS protection: every path (--path, or the peer file's) is an ingress point, and each IP packet takes one chosen by a keyed PRF of its sequence number, instead of a primary and standbys (the Node data path; docs/services.md)",
  );
spreadFlagOptions(endpointCommand).action(async (o: import('./endpoint.js').EndpointFlags) => {
  const { runEndpoint } = await import('./endpoint.js');
  await runEndpoint(o);
});

program
  .command('circuits')
  .description(
    "list your circuits at one ISP's portal: DATA in/out, drops by reason, and whether the SLA held (ok / VIOLATED), or REJECTED and why when a router could not compile the circuit",
  )
  .addOption(new Option('--portal <url>', 'portal base URL').env('ARROW_PORTAL').makeOptionMandatory())
  .addOption(new Option('--key <apiKey>', 'API key').env('ARROW_API_KEY').makeOptionMandatory())
  .option('--json', 'print JSON: each circuit with its `stats` (GET /circuits/{auth}/stats)')
  .action(async (o: { portal: string; key: string; json?: boolean }) => {
    const { runCircuits } = await import('./circuits.js');
    await runCircuits(o);
  });

program
  .command('atlas')
  .description('run the atlas: learn offers from portals, measure PoP pairs, answer path queries over HTTP')
  .requiredOption('-c, --config <file>', 'atlas config (YAML): portals, peerings, targets; see docs/atlas.md')
  .action(async (o: { config: string }) => {
    const { runAtlas } = await import('../atlas/main.js');
    await runAtlas(o.config);
  });

const cdn = program
  .command('cdn')
  .description(
    "a simple CDN (the ARROW paper's §4.4): cache nodes at PoPs, and a controller that sends each request to the cache with the lowest RTT to the client, measured by the caches at request time (docs/services.md)",
  );
/** --listen, HTTPS, plain HTTP: what both CDN daemons take. */
function serveOptions(c: Command, what: string): Command {
  return c
    .requiredOption('--listen <host:port>', `where the ${what} serves HTTP (port 0 picks one)`, (v) =>
      bindAddress(v, '--listen'),
    )
    .option('--tls-cert <file>', 'serve HTTPS with this PEM certificate (with --tls-key)')
    .option('--tls-key <file>', 'the PEM private key of --tls-cert')
    .option('--allow-plain-http', 'serve plain HTTP on an address that is not loopback')
    .addOption(
      new Option(
        '--token <secret>',
        'a secret the controller and the caches share: the controller sends it with each measurement request, a cache refuses POST /rtt without it (401)',
      ).env('ARROW_CDN_TOKEN'),
    );
}
serveOptions(
  cdn
    .command('cache')
    .description(
      'a cache node: GET /files/NAME from its store, filled from the origin on a miss; POST /rtt measures its RTT to a client with ICMP echoes (the system ping); OpenAPI at /openapi.json',
    )
    .requiredOption('--name <name>', "this cache's name, as the controller knows it")
    .requiredOption('--origin <url>', 'base URL of the origin: a miss for NAME is filled from URL/NAME')
    .requiredOption('--store <dir>', 'directory of stored files (made if missing)')
    .option(
      '--pings <n>',
      'ICMP echoes per RTT measurement (the lowest RTT counts)',
      (v) => positiveInt(v, '--pings'),
      3,
    )
    .option(
      '--ping-interval <s>',
      'seconds between the echoes (at least 0.002)',
      (v) => positiveNumber(v, '--ping-interval'),
      0.005,
    )
    .option(
      '--ping-deadline-ms <ms>',
      "a measurement gives up after this long (keep it under the controller's --measure-timeout-ms)",
      (v) => positiveInt(v, '--ping-deadline-ms'),
      800,
    ),
  'cache',
).action(async (o: import('./cdn.js').CacheFlags) => {
  const { runCdnCache } = await import('./cdn.js');
  await runCdnCache(o);
});
serveOptions(
  cdn
    .command('controller')
    .description(
      'the controller: GET /files/NAME asks every cache in use for its RTT to the caller now and redirects (302) to the lowest; a cache that does not answer in time is skipped for --skip-ms; GET /choose?client=IP, GET /caches, /metrics; OpenAPI at /openapi.json',
    )
    .requiredOption(
      '--cache <name=url[@isp/pop]>',
      'a cache (repeatable): its name, base URL, and optionally its PoP for the atlas fallback',
      collect,
    )
    .option(
      '--measure-timeout-ms <ms>',
      'how long the caches have to answer a measurement; a cache silent longer is skipped',
      (v) => positiveInt(v, '--measure-timeout-ms'),
      1500,
    )
    .option(
      '--skip-ms <ms>',
      'how long a failed cache is skipped before it is asked again',
      (v) => positiveInt(v, '--skip-ms'),
      10_000,
    )
    .option(
      '--atlas <url>',
      "when no cache can measure the client: choose by the atlas's path latency from each cache's PoP to the client's address (its targets)",
    ),
  'controller',
).action(async (o: import('./cdn.js').ControllerFlags) => {
  const { runCdnController } = await import('./cdn.js');
  await runCdnController(o);
});

/** The path-query flags `arrow paths` and `arrow connect` share (docs/atlas.md). */
function pathQueryOptions(c: Command): Command {
  const list = (v: string, prev: string[] = []): string[] => [...prev, ...v.split(',').filter(Boolean)];
  return c
    .addOption(new Option('--atlas <url>', 'atlas base URL').env('ARROW_ATLAS').makeOptionMandatory())
    .requiredOption('--from <isp[/pop]>', 'where you enter: an ISP, or one PoP of it')
    .option('--max-latency <ms>', 'one-way latency bound', (v) => positiveNumber(v, '--max-latency'))
    .option('--max-loss <pct>', 'path loss bound, percent', (v) => nonNegativeNumber(v, '--max-loss'))
    .option('--min-bandwidth <mbps>', 'available bandwidth every segment must have', (v) =>
      positiveNumber(v, '--min-bandwidth'),
    )
    .option('--max-price <n>', 'total monthly price bound', (v) => nonNegativeNumber(v, '--max-price'))
    .option('--avoid <isp...>', 'ISPs the path must not cross (repeat or comma-separate)', list)
    .option('--require <isp...>', 'ISPs the path must cross', list)
    .option('--max-isps <n>', 'at most this many ARROW ISPs (segments)', (v) => positiveInt(v, '--max-isps'))
    .option('--k <n>', 'alternatives, disjoint from each other', (v) => positiveInt(v, '--k'))
    .addOption(new Option('--disjoint <kind>', 'what alternatives must not share').choices(['isp', 'router']))
    .addOption(new Option('--sort <order>', 'best first by').choices(['latency', 'price', 'hops']))
    .addOption(
      new Option(
        '--latency <basis>',
        'measured figures (default; SLA where unmeasured) or SLA bounds only',
      ).choices(['measured', 'sla']),
    )
    .option('--json', 'print JSON');
}

pathQueryOptions(
  program
    .command('paths')
    .description('ask the atlas for paths under constraints, and print the candidates and near misses')
    .requiredOption('--to <target>', 'an egress PoP (isp/pop) or a destination address (host or host:port)'),
).action(async (o: import('./atlas.js').PathFlags) => {
  const { runPaths } = await import('./atlas.js');
  await runPaths(o);
});

spreadFlagOptions(
  pathQueryOptions(
    program
      .command('connect')
      .description(
        'find the best path with the atlas, buy it (and with --k 2 a disjoint standby), and forward a local UDP port over it with failover',
      )
      .requiredOption('--to <host:port>', 'the UDP server to reach; the last ISP delivers to it')
      .requiredOption('-l, --listen <host:port>', 'local UDP address for unmodified clients to send to')
      .option('--keys <file>', 'YAML or JSON mapping each ISP name to your API key there')
      .option(
        '--key <isp=key...>',
        'an API key for one ISP (repeatable)',
        (v: string, prev: string[] = []) => [...prev, v],
      )
      .option('--bandwidth <mbps>', 'bandwidth to buy on every segment', (v) =>
        positiveNumber(v, '--bandwidth'),
      )
      .option('--save <file>', 'write the bought primary path as JSON, for arrow ping/traceroute --path')
      .option(
        '--spread <k>',
        'DoS protection: buy K disjoint paths (ingress points) and spread every datagram over them by a keyed PRF of its sequence number; an overloaded or dead one leaves the sequence (docs/services.md)',
        (v) => positiveInt(v, '--spread'),
      ),
  ),
).action(async (o: Parameters<typeof import('./atlas.js').runConnect>[0]) => {
  const { runConnect } = await import('./atlas.js');
  await runConnect(o);
});

/** How `arrow ping` and `arrow traceroute` name a circuit (docs/diagnostics.md). */
function circuitOptions(c: Command): Command {
  return c
    .argument('[circuit]', 'AUTH@HOST:PORT: the circuit authenticator at its first ingress router')
    .option('--via <host:port>', 'the first ingress router (with --auth; with --path, overrides its ingress)')
    .option('--auth <hex>', "the circuit's customer authenticator, as `arrow circuits` shows it")
    .option('--path <file>', 'a bought path as JSON (`arrow connect --save`): its first circuit')
    .option(
      '--bind <host:port>',
      'local IPv4 address for the replies (default: the one that reaches the router)',
    )
    .option('--json', 'print JSON');
}

circuitOptions(
  program
    .command('ping')
    .description(
      'echo through a whole circuit (and its return path), with RTT, loss and statistics like ping; --last-leg pings the server from the egress router',
    ),
)
  .option('-c, --count <n>', 'pings to send', (v) => positiveInt(v, '--count'), 4)
  .option(
    '-i, --interval <seconds>',
    'between pings (at least 0.05: the probe rate limit)',
    (v) => positiveNumber(v, '--interval'),
    1,
  )
  .option('-W, --timeout <seconds>', 'wait per ping', (v) => positiveNumber(v, '--timeout'), 2)
  .option('-s, --size <bytes>', 'request size in bytes (at least 16)', (v) => positiveInt(v, '--size'), 56)
  .option(
    '--last-leg',
    "ask the circuit's egress router to ping the circuit's own UDP target and report that RTT",
  )
  .option('--payload <text>', 'with --last-leg: the datagram sent to the server (default "arrow ping")')
  .action(async (circuit: string | undefined, o: import('./diagnostics.js').PingFlags) => {
    const { runPing } = await import('./diagnostics.js');
    await runPing(circuit, o);
  });

circuitOptions(
  program
    .command('traceroute')
    .description(
      'every router along a circuit (and its return path) answers: ISP, PoP, router, RTT, action and loss; --integrity names the first hop where the payload was modified',
    ),
)
  .option('-q, --queries <n>', 'traces per run', (v) => positiveInt(v, '--queries'), 3)
  .option('-w, --wait <seconds>', 'how long to wait for answers', (v) => positiveNumber(v, '--wait'), 2)
  .option('-m, --max-hops <n>', 'hop limit the traces start with', (v) => positiveInt(v, '--max-hops'), 64)
  .option(
    '--integrity',
    'every router reports a digest of the payload as it arrived (tracebox): the first hop whose digest differs shows where the payload was modified; exits 2 when it was',
  )
  .action(async (circuit: string | undefined, o: import('./diagnostics.js').TracerouteFlags) => {
    const { runTraceroute } = await import('./diagnostics.js');
    await runTraceroute(circuit, o);
  });

const bench = program
  .command('bench')
  .description('benchmarks, each against a baseline measured in the same run');
bench
  .command('forward')
  .description(
    'packets/s and Mb/s through 1 and 2 ARROW hops vs a plain Node UDP relay, at 64 and 1400 bytes; as root, also the kernel rows (routers in XDP vs a plain XDP forwarder, on veth between namespaces): docs/performance.md',
  )
  .option('--json', 'print JSON')
  .option('--duration <seconds>', 'measurement window per run', (v) => positiveNumber(v, '--duration'), 2)
  .option('--runs <n>', 'runs per configuration; the median is reported', (v) => positiveInt(v, '--runs'), 3)
  .option('--sizes <list>', 'datagram sizes in bytes (UDP payload)', '64,1400')
  .option('--out <dir>', 'where forward.svg and forward.png (the plot) are written', './bench-out')
  .addOption(
    new Option(
      '--kernel <when>',
      'the kernel rows: auto (where root and the BPF build allow; else the report says why not), on (fail without them), off',
    )
      .choices(['auto', 'on', 'off'])
      .default('auto'),
  )
  .action(async (o: import('../bench/forward.js').ForwardBenchFlags) => {
    const { runForwardBenchCommand } = await import('../bench/forward.js');
    await runForwardBenchCommand(o);
  });

bench
  .command('propagation')
  .description(
    "time from the portal's 201 until every router has the circuit, and creates/s, with SQLite and a 3-member etcd cluster",
  )
  .addOption(
    new Option('--store <kind>', 'measure only this store (default: both)').choices(['sqlite', 'etcd']),
  )
  .option('--json', 'print JSON')
  .option('--circuits <n>', 'measured creates per store', (v) => positiveInt(v, '--circuits'), 1000)
  .option('--concurrency <n>', 'creates in flight', (v) => positiveInt(v, '--concurrency'), 32)
  .option('--out <dir>', 'where propagation.svg and propagation.png (the plot) are written', './bench-out')
  .action(
    async (o: {
      store?: 'sqlite' | 'etcd';
      json?: boolean;
      circuits: number;
      concurrency: number;
      out: string;
    }) => {
      const { runPropagationBenchCommand } = await import('../bench/propagation.js');
      await runPropagationBenchCommand(o);
    },
  );

bench
  .command('failover')
  .description(
    "failover time vs number of clients: N clients' circuits cross one middle-ISP router, SIGKILL it, per-client outage and repair",
  )
  .option('--clients <list>', 'client counts to run, one fresh lab each', '5,20,40,1000')
  .addOption(
    new Option('--liveness <mode>', 'router BFD-style liveness: on, off, or both (one run each)')
      .choices(['on', 'off', 'both'])
      .default('both'),
  )
  .option('--json', 'print JSON')
  .option('--out <dir>', 'where failover.svg and failover.png (the plot) are written', './bench-out')
  .option(
    '--fraction <share>',
    "share of the calibrated capacity (the failure-free echoes/s this machine carries, measured first) each run's clients echo at",
    (v) => positiveNumber(v, '--fraction'),
    0.5,
  )
  .option(
    '--attempts <n>',
    'tries per run, each in a fresh lab, while its pre-kill checks say INVALID',
    (v) => positiveInt(v, '--attempts'),
    2,
  )
  .option(
    '--probe-interval <ms>',
    "each client's probe interval while failing (default: its echo interval, so probes keep to the calibrated rate)",
    (v) => positiveInt(v, '--probe-interval'),
  )
  .option(
    '--liveness-interval <ms>',
    "keepalive interval of the runs with liveness on, × 3 (default: the routers' own, 200 ms; 10 shows the lower bound)",
    (v) => positiveInt(v, '--liveness-interval'),
  )
  .addOption(
    new Option(
      '--dataplane <mode>',
      "the routers' data plane (arrow router --dataplane): the lab is on loopback, where auto is the Node path and kernel the tc program on lo (root)",
    )
      .choices(['auto', 'kernel', 'node'])
      .default('auto'),
  )
  .action(
    async (o: {
      clients: string;
      liveness: 'on' | 'off' | 'both';
      dataplane: DataplaneMode;
      json?: boolean;
      out: string;
      fraction: number;
      attempts: number;
      probeInterval?: number;
      livenessInterval?: number;
    }) => {
      const { runFailoverBenchCommand } = await import('../bench/failover.js');
      await runFailoverBenchCommand(o);
    },
  );

bench
  .command('liveness')
  .description(
    "soak of the routers' BFD-style neighbour liveness on a quiet lab: nothing fails, so every dead verdict is false; counts them, revivals and keepalive waits from the routers' published counters",
  )
  .option('--minutes <n>', 'soak length', (v) => positiveNumber(v, '--minutes'), 10)
  .option('--seconds <n>', 'soak length in seconds (short runs, tests); overrides --minutes', (v) =>
    positiveNumber(v, '--seconds'),
  )
  .option('--json', 'print JSON')
  .option(
    '--paths <n>',
    'paths bought through every ISP (neighbours in use)',
    (v) => positiveInt(v, '--paths'),
    4,
  )
  .option(
    '--fraction <f>',
    'echo load as a share of the capacity measured first on this machine',
    (v) => positiveNumber(v, '--fraction'),
    0.1,
  )
  .option('--interval <ms>', 'keepalive interval (default: the router default)', (v) =>
    positiveInt(v, '--interval'),
  )
  .option('--multiplier <n>', 'missed intervals before a verdict (default: the router default)', (v) =>
    positiveInt(v, '--multiplier'),
  )
  .addOption(
    new Option('--liveness <mode>', 'liveness on or off (default: the router default)').choices([
      'on',
      'off',
    ]),
  )
  .option('--out <dir>', 'where liveness.svg and liveness.png (the plot) are written', './bench-out')
  .action(async (o: LivenessBenchFlags) => {
    const { runLivenessBenchCommand } = await import('../bench/liveness.js');
    await runLivenessBenchCommand(o);
  });

program
  .command('bench-xdp', { hidden: true })
  .description("internal: holds one of arrow bench forward's XDP programs (sink or forward) on interfaces")
  .requiredOption('--program <name>', 'sink | forward')
  .requiredOption('--interfaces <list>', 'comma-separated interface names in this namespace')
  .action(async (o: { program: string; interfaces: string }) => {
    const { runXdpHolder } = await import('../bench/xdp-holder.js');
    runXdpHolder(o.program, o.interfaces.split(','), 'native');
  });

program
  .command('bench-worker', { hidden: true })
  .description('internal: a sender, sink or plain relay process driven by `arrow bench forward` over IPC')
  .argument('<role>', 'sender | sink | relay')
  .requiredOption('-l, --listen <host:port>', 'UDP address to bind')
  .option('-t, --target <host:port>', 'relay only: where every datagram goes')
  .action(async (role: string, o: { listen: string; target?: string }) => {
    const { runBenchWorker } = await import('../bench/worker.js');
    await runBenchWorker(role, o);
  });

bench
  .command('dataplane')
  .description("the data plane's own cost per packet (check, lookup, rewrite), without sockets")
  .option('--json', 'print JSON')
  .option('--circuits <n>', 'circuits in the forwarding table', (v) => positiveInt(v, '--circuits'), 10_000)
  .option('--packets <n>', 'packets per run', (v) => positiveInt(v, '--packets'), 2_000_000)
  .option('--runs <n>', 'runs; the median is reported', (v) => positiveInt(v, '--runs'), 5)
  .option('--out <dir>', 'where dataplane.svg and dataplane.png (the plot) are written', './bench-out')
  .action(async (o: { json?: boolean; circuits: number; packets: number; runs: number; out: string }) => {
    const { runDataPlaneBenchCommand } = await import('../bench/dataplane.js');
    await runDataPlaneBenchCommand(o);
  });

bench
  .command('store-thread')
  .description(
    'what store work costs the forwarding thread: one router, its store client on the forwarding thread (baseline) vs on its own thread, under route churn and stats publishing',
  )
  .option('--json', 'print JSON')
  .option('--circuits <n>', 'circuits in the store', (v) => positiveInt(v, '--circuits'), 2000)
  .option('--pps <n>', 'DATA packets per second forwarded', (v) => positiveInt(v, '--pps'), 2000)
  .option(
    '--changes <n>',
    'route changes per second written to the store',
    (v) => positiveInt(v, '--changes'),
    400,
  )
  .option('--seconds <n>', 'seconds per mode (at most 60)', (v) => positiveInt(v, '--seconds'), 10)
  .option('--out <dir>', 'where store-thread.svg and store-thread.png (the plot) are written', './bench-out')
  .action(
    async (o: {
      json?: boolean;
      circuits: number;
      pps: number;
      changes: number;
      seconds: number;
      out: string;
    }) => {
      const { runStoreThreadBenchCommand } = await import('../bench/store-thread.js');
      await runStoreThreadBenchCommand(o);
    },
  );

bench
  .command('atlas')
  .description(
    'path-query latency over a generated atlas, per query shape, vs plain Dijkstra on the same graph (target: p50 < 100 ms at 200 ISPs / 1000 PoPs)',
  )
  .option('--json', 'print JSON')
  .option('--isps <n>', 'ISPs in the generated topology', (v) => positiveInt(v, '--isps'), 200)
  .option('--pops <n>', 'PoPs in the topology (>= 2 per ISP)', (v) => positiveInt(v, '--pops'), 1000)
  .option('--queries <n>', 'queries per shape per run', (v) => positiveInt(v, '--queries'), 100)
  .option('--runs <n>', 'runs; medians of the percentiles are reported', (v) => positiveInt(v, '--runs'), 5)
  .option('--seed <n>', 'seed of the generated topology and queries', (v) => positiveInt(v, '--seed'), 1)
  .option('--out <dir>', 'where atlas.svg and atlas.png (the plot) are written', './bench-out')
  .action(async (o: AtlasBenchFlags) => {
    const { runAtlasBenchCommand } = await import('../bench/atlas.js');
    await runAtlasBenchCommand(o);
  });

bench
  .command('verify')
  .description(
    "arrow verify on a generated network of stitched paths, vs one packet per circuit through the routers' DataPlane.process (target: 10,000 circuits over 200 routers in under 1 s)",
  )
  .option('--json', 'print JSON')
  .option('--circuits <n>', 'circuits in the network', (v) => positiveInt(v, '--circuits'), 10_000)
  .option('--routers <n>', 'routers (5 PoPs per ISP)', (v) => positiveInt(v, '--routers'), 200)
  .option('--isps <n>', 'ISPs', (v) => positiveInt(v, '--isps'), 20)
  .option('--runs <n>', 'runs; the median is reported', (v) => positiveInt(v, '--runs'), 5)
  .option('--seed <n>', 'seed of the generated network', (v) => positiveInt(v, '--seed'), 1)
  .option('--out <dir>', 'where verify.svg and verify.png (the plot) are written', './bench-out')
  .action(async (o: import('../bench/verify.js').VerifyBenchFlags) => {
    const { runVerifyBenchCommand } = await import('../bench/verify.js');
    await runVerifyBenchCommand(o);
  });

/** An address to bind (IP:PORT, port 0 allowed), checked by the one address parser. */
function bindAddress(v: string, flag: string): string {
  const r = parseAddress(v, { bind: true });
  if (!r.ok) throw new Error(`${flag}: ${r.message}`);
  return v;
}
/** A repeatable flag: every occurrence appended. */
function collect(v: string, prev: string[] = []): string[] {
  return [...prev, v];
}
function positiveInt(v: string, flag: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n <= 0)
    throw new Error(`${flag} must be a positive integer, got ${JSON.stringify(v)}`);
  return n;
}
function nonNegativeNumber(v: string, flag: string): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0)
    throw new Error(`${flag} must be a number >= 0, got ${JSON.stringify(v)}`);
  return n;
}
function positiveNumber(v: string, flag: string): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0)
    throw new Error(`${flag} must be a positive number, got ${JSON.stringify(v)}`);
  return n;
}

program.parseAsync(process.argv).catch((err: unknown) => {
  const e = err as Error;
  console.error(`arrow: ${err instanceof ConfigError ? e.message : e.message || String(err)}`);
  if (process.env.ARROW_DEBUG) console.error(e.stack);
  process.exit(1);
});
