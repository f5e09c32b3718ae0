// The playground page (`GET /`) in headless Chromium against the real `natter` binary and the
// fake upstream: two tabs on one chat see each other online and typing, a streamed reply grows
// token by token in both, read receipts come back, Stop keeps the partial text, and history
// reloads on join. Also the page's own HTTP (content types, caching) and `?token=` with auth on.
//
// Chromium is Debian's (`/usr/bin/chromium`, or $NATTER_CHROMIUM). Without it the browser tests
// skip loudly, except under CI=true, where they fail.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdirSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { startFakeUpstream, startNatter, tempDir, uid } from "../interop/lib/harness.mjs";
import { SECRET, tokenFor } from "../interop/lib/token.mjs";

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
    console.error(`\n*** SKIPPING the playground browser tests: ${msg} ***\n`);
  }
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

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Opens the playground as `user` on `chat` in a fresh browser context and joins. */
async function openTab(browser, base, { chat, user, token }) {
  const context = await browser.newContext();
  const page = await context.newPage();
  // Any script error or CSP violation on the page fails the test that reads `problems`.
  const problems = [];
  page.on("pageerror", (e) => problems.push(`pageerror: ${e.message}`));
  page.on("console", (m) => {
    if (m.type() === "error") problems.push(`console: ${m.text()}`);
  });
  const query = new URLSearchParams({ chat, user, ...(token ? { token } : {}) });
  await page.goto(`${base}/?${query}`);
  // The query fills the form; the test still joins the way a person does.
  assert.equal(await page.inputValue("#chat-id"), chat);
  assert.equal(await page.inputValue("#user-name"), user);
  await page.click("#join-button");
  return { page, context, problems };
}

const statusOf = (page) => page.getAttribute("#connection-status", "data-state");
const onlineIn = (page) => page.$$eval("#presence li", (lis) => lis.map((li) => li.dataset.userId));

async function waitConnected(page) {
  await page.waitForSelector('#connection-status[data-state="connected"]', { timeout: 10000 });
}

/**
 * Starts recording, inside the page, every distinct text the newest assistant message shows
 * (a MutationObserver sees each token's DOM change, not just what a poll happens to catch).
 */
function recordAssistantText(page) {
  return page.evaluate(() => {
    window.__seen = [];
    const list = document.getElementById("messages");
    const observer = new MutationObserver(() => {
      const all = list.querySelectorAll('li[data-role="assistant"]');
      const last = all[all.length - 1];
      const text = last?.querySelector(".text")?.textContent ?? "";
      if (text !== "" && window.__seen.at(-1) !== text) window.__seen.push(text);
    });
    observer.observe(list, { childList: true, subtree: true, characterData: true });
  });
}

/** Asserts the recorded texts grew one prefix at a time into `final`, over `atLeast` steps. */
async function assertGrewInto(page, final, atLeast) {
  const seen = await page.evaluate(() => window.__seen);
  assert.ok(seen.length >= atLeast, `expected the reply to grow over ≥ ${atLeast} steps, saw ${JSON.stringify(seen)}`);
  for (let i = 1; i < seen.length; i++) {
    assert.ok(seen[i].startsWith(seen[i - 1]) && seen[i].length > seen[i - 1].length, `not growing: ${JSON.stringify(seen)}`);
  }
  assert.equal(seen.at(-1), final);
}

const assistantMessages = (page) =>
  page.$$eval('#messages li[data-role="assistant"]', (lis) =>
    lis.map((li) => ({ id: li.dataset.messageId, state: li.dataset.state, text: li.querySelector(".text").textContent, note: li.querySelector(".note").textContent })),
  );

/** The chat's stored messages, over the history REST face (it touches no presence). */
async function storedMessages(base, chat) {
  const res = await fetch(`${base}/api/v1/chats/${encodeURIComponent(chat)}/messages?userId=observer&limit=500`);
  assert.equal(res.status, 200, await res.clone().text());
  return (await res.json()).messages;
}

function assertPng(file) {
  const bytes = readFileSync(file);
  assert.ok(statSync(file).size > 1000, `screenshot ${file} is too small (${bytes.length} bytes)`);
  assert.deepEqual([...bytes.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], "not a PNG signature");
}

describe("playground", () => {
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

  test("the page and its assets are served with their types and revalidated by ETag", async () => {
    for (const [p, type] of [
      ["/", "text/html; charset=utf-8"],
      ["/playground/app.js", "text/javascript; charset=utf-8"],
      ["/playground/style.css", "text/css; charset=utf-8"],
    ]) {
      const res = await fetch(`${natter.url}${p}`);
      assert.equal(res.status, 200, p);
      assert.equal(res.headers.get("content-type"), type, p);
      assert.equal(res.headers.get("cache-control"), "no-cache", p);
      const body = await res.text();
      assert.ok(body.length > 0, p);
      const etag = res.headers.get("etag");
      assert.match(etag, /^"[0-9a-f]{16}"$/, p);
      const again = await fetch(`${natter.url}${p}`, { headers: { "if-none-match": etag } });
      assert.equal(again.status, 304, p);
      assert.equal(await again.text(), "", p);
    }
    const page = await fetch(`${natter.url}/`);
    assert.match(page.headers.get("content-security-policy"), /default-src 'self'/);
    // The bundle is the committed build, minified into one file.
    const js = await (await fetch(`${natter.url}/playground/app.js`)).text();
    assert.ok(js.split("\n").length < 10, "app.js should be minified");
  });

  browserTest("two tabs: presence, typing, a streamed reply in both, read receipt, stop, history", async () => {
    const chat = uid("pg");
    const alice = await openTab(browser, natter.url, { chat, user: "alice" });
    tabs.push(alice);
    await waitConnected(alice.page);
    const bob = await openTab(browser, natter.url, { chat, user: "bob" });
    tabs.push(bob);
    await waitConnected(bob.page);

    // Presence: both tabs list both users.
    for (const t of [alice, bob]) {
      await t.page.waitForFunction(
        () => [...document.querySelectorAll("#presence li")].map((li) => li.dataset.userId).join(",") === "alice,bob",
        null,
        { timeout: 10000 },
      );
    }
    assert.deepEqual(await onlineIn(alice.page), ["alice", "bob"]);
    assert.equal(await alice.page.textContent('#presence li[data-user-id="alice"]'), "alice (you)");

    // Typing: alice types, bob sees it; clearing the box tells bob she stopped.
    await alice.page.locator("#message-input").pressSequentially("hel", { delay: 30 });
    await bob.page.waitForFunction(() => document.getElementById("typing-indicator").textContent === "alice is typing…", null, { timeout: 10000 });
    assert.equal(await alice.page.textContent("#typing-indicator"), "", "nobody else is typing for alice");
    await alice.page.fill("#message-input", "");
    await bob.page.waitForFunction(() => document.getElementById("typing-indicator").textContent === "", null, { timeout: 10000 });

    // A streamed reply: the fake upstream echoes one word per token, 120 ms apart.
    await recordAssistantText(alice.page);
    await recordAssistantText(bob.page);
    const prompt = "[fake:echo delay_ms=120] hello from the playground test";
    const expected = "Echo: hello from the playground test";
    await alice.page.fill("#message-input", prompt);
    await alice.page.click("#send-button");
    assert.equal(await alice.page.inputValue("#message-input"), "", "the box empties on send");

    // Bob gets alice's message, and the reply streams in both tabs.
    await bob.page.waitForSelector('#messages li[data-role="user"][data-user-id="alice"]', { timeout: 10000 });
    assert.equal(await bob.page.textContent('#messages li[data-user-id="alice"] .text'), prompt);
    // Stop is enabled while the reply streams.
    await alice.page.waitForSelector("#stop-button:not([disabled])", { timeout: 10000 });
    for (const t of [alice, bob]) {
      await t.page.waitForSelector('#messages li[data-role="assistant"][data-state="done"]', { timeout: 15000 });
    }
    for (const t of [alice, bob]) await assertGrewInto(t.page, expected, 4);
    assert.ok(await alice.page.isDisabled("#stop-button"), "Stop is disabled once the reply ended");

    const stored = await storedMessages(natter.url, chat);
    const storedReply = stored.filter((m) => m.role === "ai");
    assert.equal(storedReply.length, 1, JSON.stringify(stored));
    assert.equal(storedReply[0].content, expected);
    for (const t of [alice, bob]) {
      const shown = await assistantMessages(t.page);
      assert.equal(shown.length, 1);
      assert.equal(shown[0].id, storedReply[0].id, "the shown reply is the stored one");
      assert.equal(shown[0].text, storedReply[0].content);
    }

    // Read receipt: bob's tab showed alice's message, so alice's says bob read it.
    const aliceMessage = alice.page.locator('#messages li.mine[data-role="user"]').first();
    await aliceMessage.locator('[data-testid="read-receipt"]').filter({ hasText: "read by bob" }).waitFor({ timeout: 10000 });
    const storedUser = stored.find((m) => m.role === "user");
    assert.equal(await aliceMessage.getAttribute("data-message-id"), storedUser.id, "the page's messageId is the stored one");
    // Bob has no receipt on alice's message (receipts show on one's own messages).
    assert.equal(await bob.page.textContent('#messages li[data-user-id="alice"] [data-testid="read-receipt"]'), "");

    // Stop: a long slow reply, stopped after a few tokens from bob's tab, keeps its partial text.
    await bob.page.fill("#message-input", "[fake:drip n=300 delay_ms=80] go long");
    await bob.page.press("#message-input", "Enter");
    await alice.page.waitForFunction(
      () => {
        const all = document.querySelectorAll('#messages li[data-role="assistant"]');
        return all.length === 2 && all[1].dataset.state === "streaming" && all[1].querySelector(".text").textContent.startsWith("t0 t1 t2 ");
      },
      null,
      { timeout: 15000 },
    );
    await bob.page.click("#stop-button");
    for (const t of [alice, bob]) {
      await t.page.waitForSelector('#messages li[data-role="assistant"][data-state="aborted"]', { timeout: 10000 });
    }
    const partial = (await assistantMessages(alice.page))[1];
    assert.match(partial.text, /^t0 t1 t2 (t\d+ )*/);
    assert.ok(!partial.text.includes("t299"), "the reply was cut short");
    assert.equal(partial.note, "stopped");
    await sleep(400);
    assert.equal((await assistantMessages(alice.page))[1].text, partial.text, "the partial text stays");
    assert.equal((await assistantMessages(bob.page))[1].text, partial.text, "both tabs hold the same partial text");
    assert.ok(await bob.page.isDisabled("#stop-button"));
    assert.ok(await alice.page.isDisabled("#stop-button"));
    const storedAborted = (await storedMessages(natter.url, chat)).filter((m) => m.role === "ai")[1];
    assert.equal(storedAborted.content, partial.text, "the stored partial reply is the one shown");

    // History: a third tab joining later sees the whole conversation from the join ack.
    const carol = await openTab(browser, natter.url, { chat, user: "carol" });
    tabs.push(carol);
    await waitConnected(carol.page);
    await carol.page.waitForFunction(() => document.querySelectorAll("#messages li").length === 4, null, { timeout: 10000 });
    const history = await carol.page.$$eval("#messages li", (lis) => lis.map((li) => [li.dataset.role, li.dataset.userId, li.querySelector(".text").textContent, li.dataset.state]));
    assert.deepEqual(history, [
      ["user", "alice", prompt, "done"],
      ["assistant", "assistant", expected, "done"],
      ["user", "bob", "[fake:drip n=300 delay_ms=80] go long", "done"],
      ["assistant", "assistant", partial.text, "aborted"],
    ]);
    await alice.page.waitForFunction(
      () => [...document.querySelectorAll("#presence li")].map((li) => li.dataset.userId).join(",") === "alice,bob,carol",
      null,
      { timeout: 10000 },
    );

    // Leaving: the others see carol go.
    await carol.page.click("#leave-button");
    assert.equal(await statusOf(carol.page), "idle");
    await alice.page.waitForFunction(
      () => [...document.querySelectorAll("#presence li")].map((li) => li.dataset.userId).join(",") === "alice,bob",
      null,
      { timeout: 10000 },
    );

    // A screenshot of alice's tab, kept under artifacts/ (gitignored) for a person to look at.
    mkdirSync(ARTIFACTS, { recursive: true });
    const shot = path.join(ARTIFACTS, `playground-${process.pid}.png`);
    await alice.page.screenshot({ path: shot, fullPage: true });
    assertPng(shot);

    for (const t of [alice, bob, carol]) assert.deepEqual(t.problems, [], "no script errors or CSP violations on the page");
  });
});

describe("playground with auth on", () => {
  let tmp, upstream, natter, browser;
  const contexts = [];

  before(async () => {
    tmp = tempDir();
    upstream = await startFakeUpstream();
    natter = await startNatter({ upstream, dataDir: tmp.dir, args: ["--jwt-secret", SECRET] });
    if (haveChromium) browser = await chromium.launch(LAUNCH);
  });
  after(async () => {
    for (const c of contexts) await c.close().catch(() => {});
    await browser?.close();
    await natter?.stop();
    upstream?.stop();
    tmp?.cleanup();
  });

  browserTest("?token= connects as the token's user; no token shows unauthorized", async () => {
    const chat = uid("pg-auth");
    const dana = await openTab(browser, natter.url, { chat, user: "dana", token: tokenFor("acme", "dana") });
    contexts.push(dana.context);
    await waitConnected(dana.page);
    await dana.page.waitForSelector('#presence li[data-user-id="dana"]', { timeout: 10000 });
    await dana.page.fill("#message-input", "hi there");
    await dana.page.click("#send-button");
    await dana.page.waitForSelector('#messages li[data-role="assistant"][data-state="done"]', { timeout: 15000 });
    assert.equal(await dana.page.textContent('#messages li[data-role="assistant"] .text'), "Echo: hi there");

    // A reply that fails midway keeps its partial text and says why.
    await dana.page.fill("#message-input", "[fake:stream_error after=3 delay_ms=50] fail please");
    await dana.page.press("#message-input", "Enter");
    const failed = dana.page.locator('#messages li[data-role="assistant"][data-state="error"]');
    await failed.waitFor({ timeout: 15000 });
    assert.equal(await failed.locator(".text").textContent(), "t0 t1 t2 ");
    assert.match(await failed.locator(".note").textContent(), /^error: \S+/);
    assert.ok(await dana.page.isDisabled("#stop-button"), "Stop is disabled once the turn failed");

    // Without `?user=`, the name field is prefilled from the token's user_id (non-ASCII too).
    const prefill = await browser.newContext();
    contexts.push(prefill);
    const prefillPage = await prefill.newPage();
    await prefillPage.goto(`${natter.url}/?${new URLSearchParams({ chat, token: tokenFor("acme", "zoë") })}`);
    assert.equal(await prefillPage.inputValue("#user-name"), "zoë");

    const anon = await openTab(browser, natter.url, { chat, user: "mallory" });
    contexts.push(anon.context);
    await anon.page.waitForSelector('#connection-status[data-state="error"]', { timeout: 10000 });
    assert.match(await anon.page.textContent("#connection-status"), /unauthorized/);
    assert.ok(await anon.page.isDisabled("#message-input"), "no chat without a token");
    assert.deepEqual(dana.problems, []);
  });
});
