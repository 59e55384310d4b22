/**
 * The serving system on one machine (`npm start`, `kvwire demo`): real router, sidecar and engine
 * processes, traffic from the openai client, the token-for-token check against a single worker,
 * the summary and the HTML report. Imported as `kvwire/system` (see docs/system.md).
 *
 * @packageDocumentation
 */
export { driveWorkload, loadOpenAi } from './client.js';
export type { ChatMessage, DriveOptions, RequestRecord } from './client.js';
export { Component, describeExit, packageRoot } from './component.js';
export type { ComponentCommand, ComponentExit, ComponentSpec } from './component.js';
export { measureCopyGbps, measureCopySpeeds, measureFreshCopyGbps, type CopySpeeds } from './copy-speed.js';
export { defaultModel, LocalSystem, startLocalSystem, unexpectedExits } from './local-system.js';
export type {
  ComponentRole,
  KilledComponent,
  LocalSystemOptions,
  MetricsTarget,
  SystemRuntime,
} from './local-system.js';
export { scrapeAll, sumBy, sumOf } from './metrics-scrape.js';
export type { ScrapedMetrics } from './metrics-scrape.js';
export { prometheusConfig } from './prometheus-config.js';
export { checkAgainstReference, compareWithReference } from './reference.js';
export type { ReferenceCheck, ReferenceOptions } from './reference.js';
export { renderReport } from './report/html.js';
export type { ReportComponent, ReportData } from './report/html.js';
export { parseDecision, pathOf, pullOf, stagesOf } from './request-path.js';
export type { ParsedDecision, PullTiming, RequestPath, Stage } from './request-path.js';
export { runSystemDemo } from './run.js';
export type { SystemDemoOptions, SystemDemoResult } from './run.js';
export { parseServerTiming, timingOf } from './server-timing.js';
export type { ServerTimingEntry } from './server-timing.js';
export { summaryRows, verdictLine } from './summary-rows.js';
export { handoffOf, mb } from './handoff-summary.js';
export type { HandoffSummary } from './handoff-summary.js';
export { summarizeRun } from './summary.js';
export type { DecisionCount, DemoSummary, DrillSummary, RunFacts } from './summary.js';
export { demoWorkload } from './workload.js';
export type { Session, Turn, Workload, WorkloadOptions } from './workload.js';
