// Bundles the extension (dist/extension.js), the chat page (media/chat.js) and the
// `pygent ui` page with its host (media/ui.js) with
// esbuild; with --tests also the unit and browser tests (out/test/...).
// Usage: node scripts/build.mjs [--tests] [--production]
import { build } from 'esbuild';
import { readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const args = new Set(process.argv.slice(2));
const production = args.has('--production');

const common = {
  absWorkingDir: root,
  bundle: true,
  sourcemap: production ? false : 'linked',
  minify: production,
  logLevel: 'warning',
  legalComments: 'none',
};

await Promise.all([
  build({
    ...common,
    entryPoints: ['src/extension.ts'],
    outfile: 'dist/extension.js',
    platform: 'node',
    format: 'cjs',
    target: 'node20',
    external: ['vscode'],
  }),
  build({
    ...common,
    entryPoints: ['webview/main.ts'],
    outfile: 'media/chat.js',
    platform: 'browser',
    format: 'iife',
    // VS Code 1.91's webviews run Chromium 124.
    target: ['chrome114', 'firefox115', 'safari16'],
  }),
  build({
    ...common,
    // `pygent ui`: the same page with the extension's chat controller as its host.
    entryPoints: ['webview/host/main.ts'],
    outfile: 'media/ui.js',
    platform: 'browser',
    format: 'iife',
    target: ['chrome114', 'firefox115', 'safari16'],
  }),
]);

if (args.has('--tests')) {
  const testFiles = (dir) =>
    readdirSync(join(root, dir))
      .filter((f) => f.endsWith('.test.ts'))
      .map((f) => `${dir}/${f}`);
  await build({
    ...common,
    sourcemap: 'inline',
    minify: false,
    entryPoints: [...testFiles('test/unit'), ...testFiles('test/browser'), ...testFiles('test/integration')],
    outdir: 'out/test',
    outbase: 'test',
    platform: 'node',
    format: 'cjs',
    target: 'node20',
    // `vscode` is resolved to test/fake-vscode.js at run time; playwright stays a package.
    external: ['vscode', 'playwright-core'],
  });
}
