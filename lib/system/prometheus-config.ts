/**
 * A Prometheus configuration that scrapes every component of a running system: one job per
 * component (the sidecars' own metrics live on their own path), labelled with the component's
 * name and role, so PromQL can ask for `vllm:time_to_first_token_seconds_bucket{role="decode"}`
 * or `kvwire_scheduler_decisions_total` without knowing ports.
 *
 * @packageDocumentation
 */
import { stringify } from 'yaml';
import type { LocalSystem } from './local-system.js';

/** The configuration as YAML, scraping every `intervalSeconds` (default 1). */
export function prometheusConfig(system: LocalSystem, intervalSeconds = 1): string {
  return stringify({
    global: { scrape_interval: `${intervalSeconds}s`, scrape_timeout: `${intervalSeconds}s` },
    scrape_configs: system.metricsTargets().map((t) => ({
      job_name: `kvwire-${t.name}`,
      metrics_path: t.path,
      static_configs: [{ targets: [t.address], labels: { component: t.name, role: t.role } }],
    })),
  });
}
