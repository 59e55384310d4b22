/**
 * Prometheus metrics shared by every layer (prom-client).
 *
 * Every component takes an optional `registry`; by default metrics go to prom-client's global
 * registry. Metrics are looked up by name before being created, so several instances (two
 * coordinators, two indexes) can share one registry without "already registered" errors; they then
 * share the series too, told apart by labels.
 *
 * All names are prefixed `kvwire_`.
 *
 * @packageDocumentation
 */
import client from 'prom-client';

/** A prom-client registry. */
export type MetricsRegistry = client.Registry;

/** prom-client's global registry, the default for every kvwire component. */
export function defaultRegistry(): MetricsRegistry {
  return client.register;
}

/** Creates a fresh, empty registry (tests, or one registry per tenant). */
export function createRegistry(): MetricsRegistry {
  return new client.Registry();
}

function existing<T>(registry: MetricsRegistry, name: string, kind: string): T | undefined {
  const m = registry.getSingleMetric(name) as unknown as { constructor: { name: string } } | undefined;
  if (m === undefined) return undefined;
  if (m.constructor.name !== kind) {
    throw new TypeError(`metric ${name} is already registered as a ${m.constructor.name}, not a ${kind}`);
  }
  return m as unknown as T;
}

/** Gets or creates a counter named `name` on `registry`. */
export function counter<L extends string>(
  registry: MetricsRegistry,
  name: string,
  help: string,
  labelNames: readonly L[] = [],
): client.Counter<L> {
  return (
    existing<client.Counter<L>>(registry, name, 'Counter') ??
    new client.Counter<L>({ name, help, labelNames, registers: [registry] })
  );
}

/** Gets or creates a gauge named `name` on `registry`. */
export function gauge<L extends string>(
  registry: MetricsRegistry,
  name: string,
  help: string,
  labelNames: readonly L[] = [],
): client.Gauge<L> {
  return (
    existing<client.Gauge<L>>(registry, name, 'Gauge') ??
    new client.Gauge<L>({ name, help, labelNames, registers: [registry] })
  );
}

/** Gets or creates a histogram named `name` on `registry`. */
export function histogram<L extends string>(
  registry: MetricsRegistry,
  name: string,
  help: string,
  buckets: number[],
  labelNames: readonly L[] = [],
): client.Histogram<L> {
  return (
    existing<client.Histogram<L>>(registry, name, 'Histogram') ??
    new client.Histogram<L>({ name, help, buckets, labelNames, registers: [registry] })
  );
}

/** Latency buckets in seconds, from 50 µs to 30 s: KV transfers span that whole range. */
export const LATENCY_BUCKETS_S = [
  0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30,
];
