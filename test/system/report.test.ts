/**
 * The demo's HTML report, from a real run (the tiny model, the fault drill on), opened in headless
 * Chromium (Debian's, through playwright-core; never a browser download): the verdict, every plot
 * with its data elements, and coloured pixels in every plot area of a screenshot.
 *
 * Set KVWIRE_REPORT_SCREENSHOT=/path/shot.png to keep the full-page screenshot.
 */
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { chromium, type BrowserContext } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compareWithReference } from '../../lib/system/reference.js';
import { runSystemDemo, type SystemDemoResult } from '../../lib/system/run.js';
import { verdictLine } from '../../lib/system/summary-rows.js';
import { summarizeRun } from '../../lib/system/summary.js';
import { decodePng, inkPixels } from './png.js';

const CHROMIUM = '/usr/bin/chromium';
const REQUESTS = 20;
const dir = mkdtempSync(join(tmpdir(), 'kvwire-report-'));
const reportPath = join(dir, 'report.html');
let result: SystemDemoResult;

beforeAll(async () => {
  result = await runSystemDemo({
    model: 'tiny',
    requests: REQUESTS,
    concurrency: 3,
    killPrefillAfter: 6,
    routerListen: { host: '127.0.0.1', port: 0 },
    reportPath,
  });
}, 600_000);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A saturated colour (the plots' data), not the greys of text, axes and grid lines. */
const coloured = (r: number, g: number, b: number): boolean => Math.max(r, g, b) - Math.min(r, g, b) > 60;

describe('the demo run behind the report', () => {
  it('every request succeeded and matched the single worker token for token; the drill recovered', () => {
    const s = result.summary;
    expect(s.problems).toEqual([]);
    expect(s.requests).toEqual({ total: REQUESTS, ok: REQUESTS, failed: 0 });
    expect(s.reference).toEqual({ matched: REQUESTS, checked: REQUESTS, by: 'token ids' });
    expect(s.ok).toBe(true);
    expect(s.decisions.map((d) => d.kind).sort()).toEqual(['decode_only', 'disaggregated']);
    expect(s.handoff.handoffs).toBeGreaterThan(0);
    expect(s.handoff.bytes).toBeGreaterThan(0);
    expect(s.handoff.bytes % s.handoff.bytesPerBlock).toBe(0);
    expect(s.prefixCache.hitRate).toBeGreaterThan(0);
    // The decode engines' KV events reached the router's index over ZMQ, and it picked every request.
    expect(s.kvIndex.batches).toBeGreaterThan(0);
    expect(s.kvIndex.events['stored']).toBeGreaterThan(0);
    expect(s.kvIndex.keys).toBeGreaterThan(0);
    expect(Object.values(s.kvIndex.picksWonBy).reduce((a, b) => a + b, 0)).toBe(REQUESTS);
    const d = s.drill!;
    expect(d.killed.name).toBe('prefill-1');
    expect(d.afterRequests).toBe(6);
    expect(d.failedAfter).toBe(0);
    expect(d.recovered).toBe(true);
    // Someone noticed the dead worker: a sidecar fell back, a decode recomputed, or the router ejected it.
    expect(d.fellBack + d.recomputed + (d.ejected ? 1 : 0)).toBeGreaterThan(0);
    expect(result.components.find((c) => c.name === 'prefill-1')!.ended).toBe('killed by SIGKILL');
    expect(result.components.filter((c) => c.name !== 'prefill-1').map((c) => c.ended)).toEqual(
      new Array(7).fill('exit code 0'),
    );
    // What the killed worker had in /dev/shm is gone with it.
    for (const files of result.sharedMemory.values()) for (const f of files) expect(existsSync(f), f).toBe(false);
  });

  it('fails, with the request named, when one token differs from the reference or a request failed', () => {
    // Negative control on the run's own data: the reference's answers as checked, one P/D output changed.
    const victim = result.records.find((r) => (r.tokenIds?.length ?? 0) > 2)!;
    const changed = { ...victim, tokenIds: victim.tokenIds!.map((t, i) => (i === 2 ? t + 1 : t)) };
    const refIds = result.checks.find((c) => c.id === victim.id)!.referenceTokenIds!;
    const check = compareWithReference(changed, { choices: [{ message: { content: '' }, token_ids: [...refIds] }] });
    expect(check.matched).toBe(false);
    expect(check.detail).toMatch(/^token 2 differs/);
    const facts = {
      runtime: result.summary.runtime,
      model: result.summary.model,
      metrics: result.metrics,
      copyGbps: 10,
    };
    const mismatched = summarizeRun({
      ...facts,
      records: result.records.map((r) => (r.id === victim.id ? changed : r)),
      checks: result.checks.map((c) => (c.id === victim.id ? check : c)),
    });
    expect(mismatched.ok).toBe(false);
    expect(verdictLine(mismatched)).toBe(
      `${REQUESTS - 1}/${REQUESTS} outputs matched the single-worker reference, token for token`,
    );
    expect(mismatched.problems.join('\n')).toContain(victim.id);
    const failed = summarizeRun({
      ...facts,
      records: result.records.map((r) => (r.id === victim.id ? { ...r, error: 'HTTP 503' } : r)),
      checks: result.checks,
    });
    expect(failed.ok).toBe(false);
    expect(failed.requests).toEqual({ total: REQUESTS, ok: REQUESTS - 1, failed: 1 });
  });

  it('is one self-contained file: no script, no external asset', () => {
    const html = readFileSync(reportPath, 'utf8');
    expect(html).not.toMatch(/<script|<link|<img|@import|url\(|src=/i);
    expect(html).not.toMatch(/https?:\/\/(?!127\.0\.0\.1|www\.w3\.org\/2000\/svg)/);
  });
});

describe.skipIf(!existsSync(CHROMIUM))('the report in headless Chromium', () => {
  let context: BrowserContext;
  beforeAll(async () => {
    context = await chromium.launchPersistentContext(mkdtempSync(join(dir, 'profile-')), {
      executablePath: CHROMIUM,
      headless: true,
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        '--no-first-run',
      ],
    });
  }, 120_000);
  afterAll(async () => {
    await context?.close();
  });

  it('shows the verdict and draws every plot with its data', async () => {
    const page = await context.newPage();
    await page.setViewportSize({ width: 1000, height: 900 });
    const requests: string[] = [];
    page.on('request', (r) => requests.push(r.url()));
    await page.goto(pathToFileURL(reportPath).href);
    expect(requests.filter((u) => !u.startsWith('file:'))).toEqual([]); // nothing fetched from anywhere
    expect(await page.locator('#verdict').innerText()).toContain(
      `OK: ${REQUESTS}/${REQUESTS} outputs matched the single-worker reference, token for token`,
    );
    const count = (selector: string): Promise<number> => page.locator(selector).count();
    expect(await count('#ttft-plot rect.bar')).toBeGreaterThan(0);
    const barTotal = await page
      .locator('#ttft-plot rect.bar')
      .evaluateAll((els) => els.reduce((n, e) => n + Number(e.getAttribute('data-count')), 0));
    expect(barTotal).toBe(REQUESTS);
    expect(await count('#requests-plot g.req')).toBe(REQUESTS);
    expect(await count('#requests-plot g.kill')).toBe(1);
    expect(await count('#stages-plot rect.stage[data-lane="transfer"]')).toBeGreaterThan(0);
    expect(await count('#stages-plot rect.stage[data-lane="prefill"]')).toBeGreaterThan(0);
    expect(await count('#stages-plot rect.stage[data-lane="router"]')).toBe(REQUESTS);
    expect(await count('#handoff-plot circle.point')).toBeGreaterThan(0);
    expect(await count('#cache-plot circle.point')).toBe(REQUESTS);
    expect(await count('#cache-plot path.line')).toBe(1);

    const shot = join(dir, 'report.png');
    await page.screenshot({ path: shot, fullPage: true });
    const full = decodePng(readFileSync(shot));
    expect(full.width).toBeGreaterThanOrEqual(900);
    if (process.env['KVWIRE_REPORT_SCREENSHOT']) copyFileSync(shot, process.env['KVWIRE_REPORT_SCREENSHOT']);
    for (const [id, data] of [
      ['ttft-plot', 'rect.bar'],
      ['requests-plot', 'g.req'],
      ['stages-plot', 'rect.stage'],
      ['handoff-plot', 'circle.point'],
      ['cache-plot', 'circle.point'],
    ] as const) {
      const plot = decodePng(await page.locator(`#${id}`).screenshot());
      expect(plot.width * plot.height, id).toBeGreaterThan(10_000);
      // Drawn data: coloured pixels (a point is ~35 of them), not only grey axes and text.
      const elements = await count(`#${id} ${data}`);
      expect(inkPixels(plot, coloured), id).toBeGreaterThan(Math.min(400, 20 * elements));
    }
    await page.close();
  }, 120_000);
});
