// Checks what a packaged .vsix holds: the bundles and the manifest, no sources, no
// node_modules, no source maps, no test output. Usage: node scripts/check-vsix.mjs FILE
import { execFileSync } from 'node:child_process';

const file = process.argv[2];
if (!file) throw new Error('usage: node scripts/check-vsix.mjs FILE.vsix');
// A .vsix is a zip; Python's zipfile lists it without extra dependencies.
const listing = execFileSync(process.env.PYGENT_PYTHON ?? 'python3', ['-c', 'import sys, zipfile; print("\\n".join(zipfile.ZipFile(sys.argv[1]).namelist()))', file], { encoding: 'utf8' });
const names = listing.trim().split('\n').map((n) => n.replace(/^extension\//, ''));
const required = ['package.json', 'readme.md', 'LICENSE.txt', 'dist/extension.js', 'media/chat.js', 'media/chat.css', 'media/pygent.svg'];
const missing = required.filter((r) => !names.some((n) => n.toLowerCase() === r.toLowerCase()));
const forbidden = names.filter((n) => /^(src|webview|test|out|scripts|node_modules)\/|\.map$|\.ts$|tsconfig/.test(n));
if (missing.length || forbidden.length) {
  console.error(`bad .vsix ${file}\n  missing: ${missing.join(', ') || '-'}\n  unexpected: ${forbidden.join(', ') || '-'}`);
  process.exit(1);
}
console.error(`${file}: ${names.length} files, contents as expected`);
