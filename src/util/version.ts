import { readFileSync } from 'node:fs';

/** This package's version (package.json), for `arrow --version` and every daemon's `/status`. */
export const VERSION: string = (
  JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string }
).version;
