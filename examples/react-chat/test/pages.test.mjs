// The built example (dist/, from `vite build`) in headless Chromium against the real `natter`
// binary and the fake upstream: each of the three pages gets a reply, logs no console error,
// and its screenshot (test/artifacts/<page>.png) shows more than a blank page.
//
// Chromium is Debian's (`/usr/bin/chromium`, or $NATTER_CHROMIUM). Without it these tests skip
// loudly, except under CI=true, where they fail.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createReadStream, existsSync, mkdirSync, readFileSync, statSync } from "node:fs";
import http from "node:http";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { startFakeUpstream, startNatter, tempDir, uid } from "../../../tests/interop/lib/harness.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const DIST = path.join(here, "..", "dist");
const ARTIFACTS = path.join(here, "artifacts");
const CHROMIUM = process.env.NATTER_CHROMIUM ?? "/usr/bin/chromium";
const haveChromium = existsSync(CHROMIUM);

if (!haveChromium) {
  const msg = `Chromium not found at ${CHROMIUM} (install it: apt-get install -y chromium, or set NATTER_CHROMIUM)`;
  if (process.env.CI === "true") test("chromium is installed", () => assert.fail(msg));
  else console.error(`\n*** SKIPPING the react-chat example browser tests: ${msg} ***\n`);
}
const browserTest = haveChromium ? test : test.skip;

const LAUNCH = {
  executablePath: CHROMIUM,
  headless: true,
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
};

const TYPES = { ".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".map": "application/json" };

/** Serves dist/ (what `vite build` made) on a free port, as a static host would. */
function serveDist() {
  assert.ok(existsSync(path.join(DIST, "index.html")), "dist/index.html is missing: run `npm run build` first");
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, "http://x");
    const file = path.join(DIST, url.pathname === "/" ? "index.html" : decodeURIComponent(url.pathname));
    if (!file.startsWith(DIST) || !existsSync(file) || !statSync(file).isFile()) {
      res.writeHead(404).end("not found");
      return;
    }
    res.writeHead(200, { "Content-Type": TYPES[path.extname(file)] ?? "application/octet-stream" });
    createReadStream(file).pipe(res);
  });
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve({ server, url: `http://127.0.0.1:${server.address().port}` })));
}

/** Distinct colours and the share of pixels that are not the most common colour, measured in the browser. */
async function pictureStats(browser, file) {
  const page = await browser.newPage();
  try {
    const b64 = readFileSync(file).toString("base64");
    return await page.evaluate(async (data) => {
      const img = new Image();
      img.src = `data:image/png;base64,${data}`;
      await img.decode();
      const canvas = document.createElement("canvas");
      canvas.width = img.width;
      canvas.height = img.height;
      const ctx = canvas.getContext("2d");
      ctx.drawImage(img, 0, 0);
      const px = ctx.getImageData(0, 0, img.width, img.height).data;
      const counts = new Map();
      for (let i = 0; i < px.length; i += 4) {
        const key = (px[i] << 16) | (px[i + 1] << 8) | px[i + 2];
        counts.set(key, (counts.get(key) ?? 0) + 1);
      }
      const total = px.length / 4;
      const top = Math.max(...counts.values());
      return { colours: counts.size, notBackground: (total - top) / total, width: img.width, height: img.height };
    }, b64);
  } finally {
    await page.close();
  }
}

describe("examples/react-chat in headless Chromium", () => {
  let upstream, natter, tmp, site, browser;
  before(async () => {
    if (!haveChromium) return;
    mkdirSync(ARTIFACTS, { recursive: true });
    tmp = tempDir();
    upstream = await startFakeUpstream();
    natter = await startNatter({ upstream, dataDir: tmp.dir });
    site = await serveDist();
    browser = await chromium.launch(LAUNCH);
  });
  after(async () => {
    await browser?.close();
    site?.server.close();
    await natter?.stop();
    upstream?.stop();
    tmp?.cleanup();
  });

  /** Opens a page of the example; `problems` collects console errors and page errors. */
  async function open(hash, query = {}) {
    const context = await browser.newContext({ viewport: { width: 1000, height: 700 } });
    const page = await context.newPage();
    const problems = [];
    page.on("pageerror", (e) => problems.push(`pageerror: ${e.message}`));
    page.on("console", (m) => {
      if (m.type() === "error") problems.push(`console: ${m.text()}`);
    });
    const q = new URLSearchParams({ server: natter.url, user: uid("user"), ...query });
    await page.goto(`${site.url}/?${q}${hash}`);
    return { page, context, problems };
  }

  async function finish(name, { page, context, problems }) {
    const file = path.join(ARTIFACTS, `${name}.png`);
    await page.screenshot({ path: file, fullPage: true });
    await context.close();
    assert.deepEqual(problems, [], "no console errors");
    const stats = await pictureStats(browser, file);
    assert.ok(stats.colours >= 20, `${file} shows too few colours (${stats.colours}): blank?`);
    assert.ok(stats.notBackground > 0.02, `${file} is nearly all one colour (${(stats.notBackground * 100).toFixed(1)} % other)`);
  }

  browserTest("seed 002 support widget: connect, send, the reply arrives once, the chat is listed", async () => {
    const tab = await open("#/support");
    const { page } = tab;
    await page.waitForSelector('[data-testid="status"][data-state="connected"]', { timeout: 10000 });
    await page.fill('[data-testid="input"]', "What's your refund policy?");
    await page.click('[data-testid="send"]');
    await page.waitForSelector('[data-testid="messages"] li[data-role="ai"]', { timeout: 10000 });
    const items = await page.$$eval('[data-testid="messages"] li', (lis) => lis.map((li) => [li.dataset.role, li.dataset.status, li.textContent]));
    assert.equal(items.length, 2);
    assert.deepEqual(items.map((i) => i[0]), ["user", "ai"]);
    assert.equal(items[0][1], "sent");
    assert.match(items[1][2], /Echo: What's your refund policy\?/);
    await page.waitForFunction(() => document.querySelectorAll('[data-testid="recent"] li').length === 1, null, { timeout: 10000 });
    await finish("support", tab);
  });

  browserTest("seed 004 conversation view: joined, the reply streams, React Query lists refresh", async () => {
    const conversation = uid("conv");
    const tab = await open("#/conversations", { conversation });
    const { page } = tab;
    await page.waitForSelector('[data-testid="status"][data-state="connected"]', { timeout: 10000 });
    // Record every text the streaming line shows (each token is a DOM change).
    await page.evaluate(() => {
      window.__streamed = [];
      new MutationObserver(() => {
        const s = document.querySelector('[data-testid="streaming"]');
        if (s && window.__streamed.at(-1) !== s.textContent) window.__streamed.push(s.textContent);
      }).observe(document.body, { subtree: true, childList: true, characterData: true });
    });
    await page.fill('[data-testid="input"]', "[fake:drip n=10 delay_ms=60] tell me");
    await page.click('[data-testid="send"]');
    await page.waitForFunction(() => document.querySelectorAll('[data-testid="messages"] li[data-role="assistant"]:not(.streaming)').length === 1, null, {
      timeout: 15000,
    });
    const streamed = await page.evaluate(() => window.__streamed);
    assert.ok(streamed.length >= 3, `the reply grew over several renders: ${JSON.stringify(streamed)}`);
    const rows = await page.$$eval('[data-testid="messages"] li', (lis) => lis.map((li) => li.textContent));
    assert.deepEqual(rows, ["user: [fake:drip n=10 delay_ms=60] tell me", "assistant: t0 t1 t2 t3 t4 t5 t6 t7 t8 t9 "]);
    await page.waitForFunction(
      (c) => [...document.querySelectorAll('[data-testid="conversations"] li')].some((li) => li.textContent.includes("tell me")),
      conversation,
      { timeout: 10000 },
    );
    await finish("conversations", tab);
  });

  browserTest("seeds 000/001 AIChatSocket: joined, the reply streams and completes", async () => {
    const tab = await open("#/socket", { chat: uid("room") });
    const { page } = tab;
    await page.waitForSelector('[data-testid="status"][data-state="connected"]', { timeout: 10000 });
    await page.fill('[data-testid="input"]', "[fake:drip n=6 delay_ms=50] hello");
    await page.click('[data-testid="send"]');
    await page.waitForSelector('[data-testid="messages"] li.streaming', { timeout: 10000 });
    await page.waitForFunction(() => {
      const a = document.querySelector('[data-testid="messages"] li[data-role="assistant"]');
      return a && !a.classList.contains("streaming");
    }, null, { timeout: 10000 });
    const rows = await page.$$eval('[data-testid="messages"] li', (lis) => lis.map((li) => li.textContent));
    assert.deepEqual(rows, ["user: [fake:drip n=6 delay_ms=50] hello", "assistant: t0 t1 t2 t3 t4 t5 "]);
    await finish("socket", tab);
  });
});
