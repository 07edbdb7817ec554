// Bundles the dashboard page (web/dashboard -> dist/dashboard) with esbuild; part of `npm run build`.
// preact and uPlot are bundled in: the page loads nothing from elsewhere and works offline.
// The page's TypeScript is type-checked first (web/dashboard/tsconfig.json: the DOM's types).
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const web = join(root, 'web', 'dashboard');
const out = join(root, 'dist', 'dashboard');

const check = spawnSync(
  process.execPath,
  [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', web],
  {
    stdio: 'inherit',
  },
);
if (check.status !== 0) {
  console.error('dashboard page: type errors (above)');
  process.exit(1);
}
mkdirSync(out, { recursive: true });
await build({
  entryPoints: [join(web, 'app.tsx')],
  outdir: out,
  bundle: true,
  format: 'esm',
  target: 'es2022',
  jsx: 'automatic',
  jsxImportSource: 'preact',
  minify: true,
  sourcemap: true,
  legalComments: 'linked',
  logLevel: 'warning',
});
copyFileSync(join(web, 'index.html'), join(out, 'index.html'));
