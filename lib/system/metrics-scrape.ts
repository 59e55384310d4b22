/**
 * One scrape of every live component's metrics at the end of a run (what Prometheus would have
 * stored last), and the few sums and series the summary reads from them. A component that does not
 * answer (killed in the drill) is left out.
 *
 * @packageDocumentation
 */
import { readSamples, type PromSample } from '../scheduler/prom-text.js';
import type { ComponentRole, LocalSystem } from './local-system.js';

/** One component's exposition. */
export interface ScrapedMetrics {
  /** Component name. */
  readonly name: string;
  /** Its role. */
  readonly role: ComponentRole;
  /** Every sample. */
  readonly samples: readonly PromSample[];
}

/** Scrapes every live component (5 s deadline each). */
export async function scrapeAll(system: LocalSystem): Promise<ScrapedMetrics[]> {
  const out = await Promise.all(
    system.metricsTargets().map(async (t): Promise<ScrapedMetrics | undefined> => {
      try {
        const res = await fetch(`http://${t.address}${t.path}`, { signal: AbortSignal.timeout(5_000) });
        if (!res.ok) return undefined;
        return { name: t.name, role: t.role, samples: readSamples(await res.text()) };
      } catch {
        return undefined;
      }
    }),
  );
  return out.filter((x): x is ScrapedMetrics => x !== undefined);
}

/**
 * The sum of metric `name` over the components with one of `roles`, over the series whose labels
 * include `match`.
 */
export function sumOf(
  scraped: readonly ScrapedMetrics[],
  roles: readonly ComponentRole[],
  name: string,
  match: Readonly<Record<string, string>> = {},
): number {
  let total = 0;
  for (const s of scraped) {
    if (!roles.includes(s.role)) continue;
    for (const x of s.samples) {
      if (x.name !== name || !Number.isFinite(x.value)) continue;
      if (Object.entries(match).every(([k, v]) => x.labels[k] === v)) total += x.value;
    }
  }
  return total;
}

/** The values of metric `name` on components with `roles`, summed by the value of label `by`. */
export function sumBy(
  scraped: readonly ScrapedMetrics[],
  roles: readonly ComponentRole[],
  name: string,
  by: string,
): Map<string, number> {
  const out = new Map<string, number>();
  for (const s of scraped) {
    if (!roles.includes(s.role)) continue;
    for (const x of s.samples) {
      if (x.name !== name || !Number.isFinite(x.value)) continue;
      const key = x.labels[by] ?? '';
      out.set(key, (out.get(key) ?? 0) + x.value);
    }
  }
  return out;
}
