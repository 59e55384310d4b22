/**
 * The benchmarks' sample summaries: one percentile function for the whole project, declared in
 * lib/util/stats.ts (the system demo's summary uses it too) and re-exported here for bench/.
 *
 * @packageDocumentation
 */
export * from '../lib/util/stats.js';
