// Drive OHIF in Debian's headless Chromium (playwright-core) and report what a reader would see.
//
// Usage: node check-viewer.mjs '<json>' with
//   {baseUrl, studyUid, studyTexts, imageSeries, segSeries, scSeries, srSeries, outDir, timeoutMs,
//    segTimeoutMs, scColouredFraction, scMinColouredShare}
// (series are SeriesNumber values: OHIF's study browser tags thumbnails with data-series).
// Prints one JSON object on stdout: pixel statistics of the viewport after each step, whether the
// study list showed the study and the SR was listed, console errors, screenshot paths.
// Exits 0 when it could take every measurement; the test decides what they must be.
import path from 'node:path';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

// playwright-core lives in orthanc-test/.cache (install.sh); ESM ignores NODE_PATH, so resolve it there.
const cacheDir = process.env.HARNESS_CACHE ?? path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '.cache');
const { chromium } = createRequire(path.join(cacheDir, 'package.json'))('playwright-core');

const args = JSON.parse(process.argv[2]);
const timeout = args.timeoutMs ?? 60000;
const result = { steps: {}, consoleErrors: [], screenshots: [] };
fs.mkdirSync(args.outDir, { recursive: true });

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  // playwright gives every launch a fresh temporary profile (--user-data-dir) and removes it.
});

// Statistics of a PNG screenshot, decoded in the page (no npm image library needed).
async function pixelStats(page, png) {
  return page.evaluate(async (b64) => {
    const img = new Image();
    img.src = 'data:image/png;base64,' + b64;
    await img.decode();
    const c = document.createElement('canvas');
    c.width = img.width; c.height = img.height;
    const ctx = c.getContext('2d');
    ctx.drawImage(img, 0, 0);
    const d = ctx.getImageData(0, 0, c.width, c.height).data;
    let nonBlack = 0, coloured = 0, grey = 0, sum = 0;
    for (let i = 0; i < d.length; i += 4) {
      const r = d[i], g = d[i + 1], b = d[i + 2];
      const mx = Math.max(r, g, b), mn = Math.min(r, g, b);
      if (mx > 24) nonBlack++;
      if (mx - mn > 24) coloured++; else if (mx > 24) grey++;  // grey radiograph pixels have r = g = b
      sum += (r + g + b) / 3;
    }
    const n = d.length / 4;
    return { width: c.width, height: c.height, pixels: n, nonBlack, coloured, grey, mean: sum / n };
  }, png.toString('base64'));
}

// The first viewport's canvas: screenshot just its box so the UI chrome does not count
// (saved as `<name>.png` unless name is null).
async function viewportShot(page, name, waitMs = timeout) {
  const canvas = page.locator('[data-cy="viewport-pane"] canvas').first();
  await canvas.waitFor({ state: 'visible', timeout: waitMs });
  const box = await canvas.boundingBox();
  const png = await page.screenshot({ clip: box });
  if (name != null) {
    const file = path.join(args.outDir, `${name}.png`);
    fs.writeFileSync(file, png);
    if (!result.screenshots.includes(file)) result.screenshots.push(file);
  }
  return pixelStats(page, png);
}

async function pageShot(page, name) {
  const file = path.join(args.outDir, `${name}.png`);
  await page.screenshot({ path: file });
  result.screenshots.push(file);
}

// Poll the viewport until `ok(stats)` holds (rendering is asynchronous), return the last stats.
async function waitViewport(page, name, ok, waitMs = timeout) {
  const deadline = Date.now() + waitMs;
  let stats;
  for (;;) {
    stats = await viewportShot(page, name, Math.max(1000, deadline - Date.now()));
    if (ok(stats) || Date.now() > deadline) return { ...stats, satisfied: ok(stats) };
    await page.waitForTimeout(300);
  }
}

async function openSeries(page, seriesNumber) {
  const thumb = page.locator(`[data-series="${seriesNumber}"]`).first();
  await thumb.waitFor({ state: 'visible', timeout });
  await thumb.dblclick();
}

// Run one step; a failure is recorded on the step and the next steps still run.
async function step(name, fn) {
  try {
    result.steps[name] = await fn();
  } catch (err) {
    result.steps[name] = { ...(result.steps[name] ?? {}), error: String(err && err.stack || err) };
  }
}

// Open the study and wait until the hanging protocol's first image (the radiograph) is drawn.
// Only then is the viewer ready for a reader's double-click: OHIF 3.13 leaves a viewport black
// (overlay text and W/L of the clicked series, no pixels) when a thumbnail is double-clicked
// before the initial display set has started loading. Thumbnails show before that; with
// full-size images a reload takes seconds, so clicking as soon as they show hit the race.
async function openViewer(page) {
  await page.goto(`${args.baseUrl}/viewer?StudyInstanceUIDs=${args.studyUid}`, { timeout });
  await page.locator(`[data-series="${args.imageSeries}"]`).first().waitFor({ state: 'visible', timeout });
  const first = await waitViewport(page, null, (s) => s.nonBlack > 0.2 * s.pixels);
  if (!first.satisfied) throw new Error(`the study's first image did not render: ${JSON.stringify(first)}`);
}

try {
  const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
  const page = await context.newPage();
  page.on('console', (msg) => { if (msg.type() === 'error') result.consoleErrors.push(msg.text()); });
  page.on('pageerror', (err) => result.consoleErrors.push(String(err)));

  // 1. Study list: a row for each expected study (by its description text).
  await step('studyList', async () => {
    await page.goto(args.baseUrl + '/', { timeout });
    const found = [];
    for (const text of args.studyTexts) {
      await page.getByText(text, { exact: true }).first().waitFor({ state: 'visible', timeout });
      found.push(text);
    }
    await pageShot(page, 'study-list');
    return { found };
  });

  // 2. The study in the viewer: the radiograph renders (non-black viewport).
  await step('radiograph', async () => {
    await openViewer(page);
    await waitViewport(page, 'radiograph', (s) => s.nonBlack > 0.2 * s.pixels);
    await page.waitForLoadState('networkidle', { timeout }).catch(() => {});
    return waitViewport(page, 'radiograph', (s) => s.nonBlack > 0.2 * s.pixels);
  });

  // 3. The SR is listed in the study browser.
  await step('sr', async () => {
    const sr = page.locator(`[data-series="${args.srSeries}"]`).first();
    await sr.waitFor({ state: 'visible', timeout });
    return { listed: true, text: (await sr.innerText()).replace(/\s+/g, ' ').trim() };
  });

  // 4. The SEG overlay: coloured pixels appear over the radiograph.
  if (args.segSeries != null) {
    await step('seg', async () => {
      await openSeries(page, args.segSeries);
      const before = result.steps.radiograph.coloured ?? 0;
      const ok = (s) => s.coloured > before + 0.03 * s.pixels && s.nonBlack > 0.2 * s.pixels;
      const segWait = args.segTimeoutMs ?? timeout;  // a SEG the viewer cannot read fails sooner
      await waitViewport(page, 'seg-overlay', ok, segWait);
      await page.waitForTimeout(500);
      const stats = await waitViewport(page, 'seg-overlay', ok, segWait);  // re-read: the overlay stays
      await pageShot(page, 'viewer-seg');
      return stats;
    });
  }

  // 5. The colour SC (difference map) renders in colour; a fresh viewer, whatever the SEG did.
  //    A difference map is mostly grey: wait for the share of colour the file has
  //    (scColouredFraction, scaled by scMinColouredShare), not for a fixed one.
  if (args.scSeries != null) {
    await step('sc', async () => {
      await openViewer(page);
      await openSeries(page, args.scSeries);
      const minShare = (args.scMinColouredShare ?? 0.25) * (args.scColouredFraction ?? 0.3);
      const ok = (s) => s.nonBlack > 0.3 * s.pixels && s.coloured >= minShare * s.nonBlack;
      const stats = await waitViewport(page, 'colour-map', ok);
      await pageShot(page, 'viewer-colour-map');
      return stats;
    });
  }
} catch (err) {
  result.error = String(err && err.stack || err);
} finally {
  await browser.close().catch(() => {});
}
process.stdout.write(JSON.stringify(result) + '\n');
