import { execFile } from 'node:child_process';

/**
 * Runs `nft ARGS` (with `input` on stdin, e.g. a script for `-f -`) and resolves with its stdout;
 * rejects with nft's own message, or says how to install nft when it is missing. Shared by the
 * egress router's source NAT and `arrow protect`.
 */
export function runNft(args: string[], input?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile('nft', args, (err, stdout, stderr) => {
      if (!err) return resolve(stdout);
      const missing = (err as NodeJS.ErrnoException).code === 'ENOENT';
      reject(
        new Error(missing ? 'nft not found (apt install nftables)' : stderr.trim() || err.message, {
          cause: err,
        }),
      );
    });
    // nft may exit before reading its stdin (an argument error, or no `-f -`): EPIPE then, and
    // the exit status above says what went wrong. Without input, stdin is closed unwritten.
    child.stdin?.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code !== 'EPIPE') reject(err);
    });
    if (input === undefined) child.stdin?.end();
    else child.stdin?.end(input);
  });
}
