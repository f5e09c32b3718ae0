// Attachments in the playground (`GET /`), in headless Chromium against the real `natter`
// binary: alice picks an image with the paperclip and sends it; it shows inline in her tab and
// in bob's (two pages in one browser), loaded from the server. A Markdown file shows as a link
// with its processing state, and a file the server refuses says why. Screenshots are checked
// and kept under artifacts/; no script errors or CSP violations on either page.
//
// Chromium is Debian's (`/usr/bin/chromium`, or $NATTER_CHROMIUM). Without it the browser tests
// skip loudly, except under CI=true, where they fail.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdirSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import zlib from "node:zlib";
import { chromium } from "playwright-core";
import { startFakeUpstream, startNatter, tempDir, uid } from "../interop/lib/harness.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const CHROMIUM = process.env.NATTER_CHROMIUM ?? "/usr/bin/chromium";
const ARTIFACTS = path.join(here, "artifacts");
const haveChromium = existsSync(CHROMIUM);
const inCi = process.env.CI === "true";

if (!haveChromium) {
  const msg = `Chromium not found at ${CHROMIUM} (install it: apt-get install -y chromium, or set NATTER_CHROMIUM)`;
  if (inCi) {
    test("chromium is installed", () => assert.fail(msg));
  } else {
    console.error(`\n*** SKIPPING the attachments browser tests: ${msg} ***\n`);
  }
}
const browserTest = haveChromium ? test : test.skip;

const LAUNCH = {
  executablePath: CHROMIUM,
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
};

/** A `w`×`h` PNG of coloured stripes (so a screenshot shows it), valid for the server's sniffing. */
function stripesPng(w, h) {
  const chunk = (type, data) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const body = Buffer.concat([Buffer.from(type, "latin1"), data]);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(zlib.crc32(body));
    return Buffer.concat([len, body, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0);
  ihdr.writeUInt32BE(h, 4);
  ihdr[8] = 8;
  ihdr[9] = 2; // RGB
  const colours = [[0xe5, 0x39, 0x35], [0xfb, 0xc0, 0x2d], [0x43, 0xa0, 0x47], [0x1e, 0x88, 0xe5]];
  const rows = [];
  for (let y = 0; y < h; y++) {
    const row = Buffer.alloc(1 + w * 3);
    for (let x = 0; x < w; x++) row.set(colours[Math.floor((x / w) * colours.length)], 1 + x * 3);
    rows.push(row);
  }
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk("IHDR", ihdr),
    chunk("IDAT", zlib.deflateSync(Buffer.concat(rows))),
    chunk("IEND", Buffer.alloc(0)),
  ]);
}

/** Opens the playground as `user` on `chat` in a fresh context of `browser` and joins. */
async function openTab(browser, base, { chat, user }) {
  const context = await browser.newContext();
  const page = await context.newPage();
  const problems = [];
  page.on("pageerror", (e) => problems.push(`pageerror: ${e.message}`));
  page.on("console", (m) => {
    if (m.type() === "error") problems.push(`console: ${m.text()}`);
  });
  await page.goto(`${base}/?${new URLSearchParams({ chat, user })}`);
  await page.click("#join-button");
  await page.waitForSelector('#connection-status[data-state="connected"]', { timeout: 10000 });
  return { page, context, problems };
}

/** Picks `files` with the paperclip button, as a person does (the file chooser it opens). */
async function pickWithPaperclip(page, files) {
  const [chooser] = await Promise.all([page.waitForEvent("filechooser"), page.click("#attach-button")]);
  await chooser.setFiles(files);
}

function assertPng(file) {
  const bytes = readFileSync(file);
  assert.ok(statSync(file).size > 1000, `screenshot ${file} is too small (${bytes.length} bytes)`);
  assert.deepEqual([...bytes.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], "not a PNG signature");
}

/** Whether the screenshot's pixels at the image's place are the stripes' colours (not blank). */
async function imageShown(page, selector) {
  return page.$eval(selector, (img) => img.complete && img.naturalWidth > 0 && img.naturalHeight > 0);
}

describe("playground attachments", () => {
  let tmp, upstream, natter, browser;
  const tabs = [];

  before(async () => {
    tmp = tempDir();
    upstream = await startFakeUpstream();
    natter = await startNatter({ upstream, dataDir: tmp.dir });
    if (haveChromium) browser = await chromium.launch(LAUNCH);
  });
  after(async () => {
    for (const t of tabs) await t.context.close().catch(() => {});
    await browser?.close();
    await natter?.stop();
    upstream?.stop();
    tmp?.cleanup();
  });

  browserTest("an image picked with the paperclip shows inline in both tabs; a document shows its processing", async () => {
    const chat = uid("pg-att");
    const alice = await openTab(browser, natter.url, { chat, user: "alice" });
    tabs.push(alice);
    const bob = await openTab(browser, natter.url, { chat, user: "bob" });
    tabs.push(bob);
    await alice.page.waitForFunction(() => document.querySelectorAll("#presence li").length === 2, null, { timeout: 10000 });

    // The paperclip opens the file chooser; the upload waits in the list for the next message.
    const png = stripesPng(160, 90);
    await pickWithPaperclip(alice.page, [{ name: "stripes.png", mimeType: "image/png", buffer: png }]);
    const chip = alice.page.locator('[data-testid="pending-attachment"][data-state="ready"]');
    await chip.waitFor({ timeout: 10000 });
    assert.match(await chip.textContent(), /stripes\.png/);

    await alice.page.fill("#message-input", "[fake:echo] here is a picture");
    await alice.page.click("#send-button");
    assert.equal(await alice.page.locator('[data-testid="pending-attachment"]').count(), 0, "the list empties on send");

    // Both tabs show the image inline, loaded from the server (its real pixels, not a broken icon).
    const img = '#messages li[data-role="user"] [data-testid="attachment-image"] img';
    for (const t of [alice, bob]) {
      await t.page.waitForSelector(img, { timeout: 10000 });
      await t.page.waitForFunction((sel) => {
        const el = document.querySelector(sel);
        return el && el.complete && el.naturalWidth === 160 && el.naturalHeight === 90;
      }, img, { timeout: 10000 });
      assert.ok(await imageShown(t.page, img));
      assert.match(await t.page.getAttribute(img, "src"), /\/api\/v1\/attachments\/[^/?]+\?/);
      assert.equal(await t.page.getAttribute(img, "alt"), "stripes.png");
      await t.page.waitForSelector('#messages li[data-role="assistant"][data-state="done"]', { timeout: 15000 });
    }
    assert.equal(await bob.page.textContent('#messages li[data-user-id="alice"] .text'), "[fake:echo] here is a picture");

    // A Markdown document: a link, and its processing state once the server has read it.
    const notes = Buffer.from("# Notes\n\nThe playground attaches documents too.\n", "utf8");
    await pickWithPaperclip(bob.page, [{ name: "notes.md", mimeType: "text/markdown", buffer: notes }]);
    await bob.page.locator('[data-testid="pending-attachment"][data-state="ready"]').waitFor({ timeout: 10000 });
    await bob.page.fill("#message-input", "[fake:echo] and my notes");
    await bob.page.press("#message-input", "Enter");
    const doc = '#messages li[data-user-id="bob"] [data-testid="attachment-doc"]';
    for (const t of [alice, bob]) {
      await t.page.waitForSelector(doc, { timeout: 10000 });
      assert.match(await t.page.textContent(`${doc} a`), /notes\.md/);
      await t.page.waitForSelector(`${doc} [data-testid="attachment-processing"][data-state="complete"]`, { timeout: 20000 });
      assert.match(await t.page.textContent(`${doc} [data-testid="attachment-processing"]`), /read: \d+ characters/);
      // The link downloads the stored bytes.
      const href = await t.page.getAttribute(`${doc} a`, "href");
      const res = await fetch(href);
      assert.equal(res.status, 200);
      assert.deepEqual(Buffer.from(await res.arrayBuffer()), notes);
    }

    // A later joiner sees the picture in the history (from the join ack).
    const carol = await openTab(browser, natter.url, { chat, user: "carol" });
    tabs.push(carol);
    await carol.page.waitForFunction((sel) => {
      const el = document.querySelector(sel);
      return el && el.complete && el.naturalWidth === 160;
    }, img, { timeout: 10000 });

    mkdirSync(ARTIFACTS, { recursive: true });
    for (const [name, t] of [["alice", alice], ["bob", bob]]) {
      // The picture in view, not scrolled away by the replies under it.
      await t.page.$eval(img, (el) => el.scrollIntoView({ block: "start" }));
      const shot = path.join(ARTIFACTS, `attachments-${name}-${process.pid}.png`);
      await t.page.screenshot({ path: shot, fullPage: true });
      assertPng(shot);
    }
    for (const t of [alice, bob, carol]) assert.deepEqual(t.problems, [], "no script errors or CSP violations on the page");
  });

  browserTest("a file the server refuses is not sent, and the page says why", async () => {
    const chat = uid("pg-att-bad");
    const dan = await openTab(browser, natter.url, { chat, user: "dan" });
    tabs.push(dan);
    const elf = Buffer.concat([Buffer.from([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1, 0]), Buffer.alloc(200, 1)]);
    await pickWithPaperclip(dan.page, [{ name: "cat.png", mimeType: "image/png", buffer: elf }]);
    await dan.page.waitForSelector("#error:not([hidden])", { timeout: 10000 });
    assert.match(await dan.page.textContent("#error"), /cat\.png: unsupported_media_type/);
    assert.equal(await dan.page.locator('[data-testid="pending-attachment"]').count(), 0);
    // The browser logs the refused request (HTTP 415) itself; nothing else went wrong.
    const others = dan.problems.filter((p) => !/status of 415/.test(p));
    assert.deepEqual(others, []);
  });
});
