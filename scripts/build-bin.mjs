// Makes the `arrow` bin (dist/src/cli/main.js, package.json "bin") executable; part of `npm run build`.
// tsc writes it 0644, and npm sets a bin's mode only when it links an installed package: without
// this, `npx arrow` in a fresh checkout fails with "Permission denied" (test/cli.test.ts).
import { chmodSync } from 'node:fs';
import { fileURLToPath, URL } from 'node:url';

chmodSync(fileURLToPath(new URL('../dist/src/cli/main.js', import.meta.url)), 0o755);
