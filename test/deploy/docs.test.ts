// docs/deploy.md says what the manifests do: the files it names exist, every manifest is described,
// the ports it lists are the ports the manifests declare, and the metrics it tells a person to watch
// are metrics kvwire declares. (Its `kvwire ...` command lines are parsed in flags.test.ts.)
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import { DEPLOY_DIR, kvwireContainers, loadManifests, podSpecsOf, ROOT } from './manifests.js';

const doc = readFileSync(join(ROOT, 'docs/deploy.md'), 'utf8');
const manifests = loadManifests();

function filesUnder(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = join(dir, f);
    return statSync(p).isDirectory() ? filesUnder(p) : [relative(ROOT, p)];
  });
}

/** The text of the section under `## title`. */
function section(title: string): string {
  const start = doc.indexOf(`\n## ${title}\n`);
  if (start < 0) throw new Error(`docs/deploy.md has no section '## ${title}'`);
  const end = doc.indexOf('\n## ', start + 1);
  return doc.slice(start, end < 0 ? undefined : end);
}

/** Which layer of lib/ declares metrics with this prefix. */
const METRIC_LAYERS: [RegExp, string][] = [
  [/^vllm:|^kvwire_engine_/, 'lib/engine'],
  [/^kvwire_pd_/, 'lib/pd'],
  [/^kvwire_sidecar_/, 'lib/sidecar'],
  [/^kvwire_scheduler_/, 'lib/scheduler'],
];

describe('docs/deploy.md', () => {
  it('names only files that exist', () => {
    // In backquotes and in command lines (kubectl apply -f deploy/redis ...).
    const named = [...doc.matchAll(/(?<![\w/.-])(deploy\/[\w./-]*\w)/g)].map((m) => m[1]!);
    expect(named.length).toBeGreaterThan(10);
    for (const path of named) expect(existsSync(join(ROOT, path)), `docs/deploy.md names ${path}`).toBe(true);
  });

  it('describes every manifest and schema under deploy/', () => {
    for (const file of filesUnder(DEPLOY_DIR)) {
      const base = file.split('/').at(-1)!;
      expect(doc.includes(file) || doc.includes(`\`${base}\``), `docs/deploy.md does not mention ${file}`).toBe(true);
    }
  });

  it('lists the ports the manifests declare', () => {
    const declared = new Set<number>();
    for (const m of manifests) {
      for (const { spec } of podSpecsOf(m.object))
        for (const c of [...(spec.containers ?? []), ...(spec.initContainers ?? [])])
          for (const p of c.ports ?? []) declared.add(p.containerPort);
    }
    const ranges = new Set(
      kvwireContainers(manifests).flatMap((c) =>
        (c.container.env ?? []).filter((e) => e.name === 'UCX_TCP_PORT_RANGE').map((e) => e.value!),
      ),
    );
    const rows = section('Ports')
      .split('\n')
      .filter((l) => /^\| [a-z, ]+ \| [\d, -]+ \|/.test(l));
    expect(rows.length).toBeGreaterThan(5);
    const listed = new Set<number>();
    for (const row of rows) {
      const cell = row.split('|')[2]!.trim();
      if (cell.includes('-')) {
        expect(ranges, `Ports: ${cell}`).toContain(cell);
        continue;
      }
      for (const port of cell.split(',').map((p) => Number(p.trim()))) {
        expect(declared, `Ports lists ${port}, which no manifest declares`).toContain(port);
        listed.add(port);
      }
    }
    for (const port of declared) expect(listed, `port ${port} is declared but not in the Ports table`).toContain(port);
  });

  const metrics = [...new Set([...doc.matchAll(/`((?:vllm:|kvwire_)[a-z_:]+)`/g)].map((m) => m[1]!))];
  const layerOf = (name: string): string | undefined => METRIC_LAYERS.find(([re]) => re.test(name))?.[1];

  it('names only metrics kvwire declares, each in the layer its prefix says', () => {
    expect(metrics.length).toBeGreaterThan(10);
    const sources = (dir: string): string =>
      filesUnder(join(ROOT, dir))
        .filter((f) => f.endsWith('.ts'))
        .map((f) => readFileSync(join(ROOT, f), 'utf8'))
        .join('\n');
    for (const name of metrics) {
      const layer = layerOf(name);
      expect(layer, `${name}: no layer declares metrics with this prefix`).toBeDefined();
      expect(sources(layer!), `${name} is not declared in ${layer}`).toContain(`'${name}'`);
    }
  });
});
