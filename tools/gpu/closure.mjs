// Prints the node_modules folders that the package's runtime dependencies and the named packages
// (e.g. vitest) need, following dependencies, optional and peer dependencies as Node resolves them.
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';

const root = process.cwd();
const seen = new Set();

function resolvePackage(name, from) {
  for (let d = from; ; d = dirname(d)) {
    const p = join(d, 'node_modules', name);
    if (existsSync(join(p, 'package.json'))) return p;
    if (dirname(d) === d) return undefined;
  }
}

function walk(dir) {
  if (dir === undefined || seen.has(dir)) return;
  seen.add(dir);
  const pj = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
  const deps = { ...pj.dependencies, ...pj.optionalDependencies, ...(dir === root ? {} : pj.peerDependencies) };
  for (const name of Object.keys(deps)) walk(resolvePackage(name, dir));
}

const pj = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
for (const name of [...Object.keys(pj.dependencies ?? {}), ...process.argv.slice(2)]) walk(resolvePackage(name, root));
const dirs = [...seen].map((d) => relative(root, d));
console.log(dirs.filter((d) => !dirs.some((o) => o !== d && d.startsWith(`${o}/`))).join('\n'));
