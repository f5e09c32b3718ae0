// The desk page (`GET /desk`) in headless Chromium against the real `natter` binary and the
// fake upstream, with the playground (`GET /`) as the customer: the customer asks for a
// person, the desk sees the chat in its queue and takes it, they talk (the customer's typing
// shows on the desk, and the AI stays quiet), a reloaded desk resumes the chat, the agent
// hands the chat back, the AI answers again, the customer ends the chat and rates it, and the
// desk shows the rating; screenshots of both pages on the way. With auth on, the desk works
// with a `chat:agent` token (and ends a chat itself), and a customer's token sees only its own
// chats and cannot take one.
//
// Chromium is Debian's (`/usr/bin/chromium`, or $NATTER_CHROMIUM); without it these tests skip
// loudly, except under CI=true, where they fail.
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
    console.error(`\n*** SKIPPING the desk browser tests: ${msg} ***\n`);
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
const T = { timeout: 15000 };

/** A fresh browser context on `url`; script errors and console errors land in `problems`. */
async function openPage(browser, url) {
  const context = await browser.newContext({ viewport: { width: 1100, height: 800 } });
  const page = await context.newPage();
  const problems = [];
  page.on("pageerror", (e) => problems.push(`pageerror: ${e.message}`));
  page.on("console", (m) => {
    if (m.type() === "error") problems.push(`console: ${m.text()}`);
  });
  await page.goto(url);
  return { page, context, problems };
}

/** The playground as a customer, joined to `chat`. */
async function openCustomer(browser, base, { chat, user, token }) {
  const tab = await openPage(browser, `${base}/?${new URLSearchParams({ chat, user, ...(token ? { token } : {}) })}`);
  await tab.page.click("#join-button");
  await tab.page.waitForSelector('#connection-status[data-state="connected"]', T);
  return tab;
}

/** Saves a full-page screenshot under artifacts/ and checks it is a real, non-trivial PNG. */
async function screenshot(page, name) {
  mkdirSync(ARTIFACTS, { recursive: true });
  const file = path.join(ARTIFACTS, `${name}-${process.pid}.png`);
  await page.screenshot({ path: file, fullPage: true });
  const bytes = readFileSync(file);
  assert.ok(statSync(file).size > 1000, `screenshot ${file} is too small (${bytes.length} bytes)`);
  assert.deepEqual([...bytes.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], "not a PNG signature");
  return file;
}

/** Asserts every selector matches a visible element. */
async function assertVisible(page, selectors) {
  for (const s of selectors) assert.ok(await page.locator(s).first().isVisible(), `${s} should be visible`);
}

const texts = (page, selector) => page.$$eval(selector, (els) => els.map((el) => el.textContent));

describe("desk", () => {
  let tmp, upstream, natter, browser;
  const contexts = [];

  before(async () => {
    tmp = tempDir();
    upstream = await startFakeUpstream();
    natter = await startNatter({ upstream, dataDir: tmp.dir });
    if (haveChromium) browser = await chromium.launch(LAUNCH);
  });
  after(async () => {
    for (const c of contexts) await c.close().catch(() => {});
    await browser?.close();
    await natter?.stop();
    upstream?.stop();
    tmp?.cleanup();
  });

  test("the desk page and its script are served with their types, a CSP and ETags", async () => {
    for (const [p, type] of [
      ["/desk", "text/html; charset=utf-8"],
      ["/playground/desk.js", "text/javascript; charset=utf-8"],
    ]) {
      const res = await fetch(`${natter.url}${p}`);
      assert.equal(res.status, 200, p);
      assert.equal(res.headers.get("content-type"), type, p);
      assert.equal(res.headers.get("cache-control"), "no-cache", p);
      assert.ok((await res.text()).length > 0, p);
      const etag = res.headers.get("etag");
      const again = await fetch(`${natter.url}${p}`, { headers: { "if-none-match": etag } });
      assert.equal(again.status, 304, p);
    }
    const page = await fetch(`${natter.url}/desk`);
    assert.match(page.headers.get("content-security-policy"), /default-src 'self'/);
    assert.match(await page.text(), /src="playground\/desk\.js"/);
  });

  browserTest("a customer asks for a person; the desk takes the chat, talks, hands back; the customer rates", async () => {
    const chat = uid("desk");
    const customer = await openCustomer(browser, natter.url, { chat, user: "cara" });
    contexts.push(customer.context);
    const cp = customer.page;

    // The assistant answers first.
    await cp.fill("#message-input", "hi bot");
    await cp.click("#send-button");
    await cp.waitForSelector('#messages li[data-role="assistant"][data-state="done"]', T);
    assert.equal(await cp.getAttribute("#handoff-status", "data-state"), "ai");

    // The desk, before anyone waits: an empty queue.
    const desk = await openPage(browser, `${natter.url}/desk?user=sam`);
    contexts.push(desk.context);
    const dp = desk.page;
    assert.equal(await dp.inputValue("#agent-name"), "sam");
    await dp.click("#start-button");
    await dp.waitForSelector('#connection-status[data-state="connected"]', T);
    await dp.waitForFunction(() => document.getElementById("queue-note").textContent === "Nobody is waiting.", null, T);

    // The customer asks for a person: the chat shows up in the desk's queue, live.
    await cp.click("#handoff-button");
    await cp.waitForSelector('#handoff-status[data-state="waiting"]', T);
    assert.ok(await cp.isDisabled("#handoff-button"), "asked once");
    const item = dp.locator(`#queue li[data-chat-key="${chat}"]`);
    await item.waitFor(T);
    assert.equal(await item.locator('[data-field="title"]').textContent(), "hi bot", "the chat's title is its first message");
    assert.match(await item.locator('[data-field="since"]').textContent(), /^waiting \d+ (s|min)$/);
    await assertVisible(dp, ["#queue", `#queue li[data-chat-key="${chat}"] button`]);
    await screenshot(dp, "desk-queue");

    // Take it: the history shows, the customer sees a person is here, the queue empties.
    await item.locator("button").click();
    await dp.waitForSelector('#connection-status[data-state="connected"]', T);
    await dp.waitForFunction(() => document.querySelectorAll("#messages li").length === 2, null, T);
    assert.deepEqual(await texts(dp, "#messages li .text"), ["hi bot", "Echo: hi bot"]);
    assert.equal(await dp.textContent("#chat-title"), "hi bot");
    await cp.waitForSelector('#handoff-status[data-state="human"]', T);
    assert.equal(await cp.textContent("#handoff-status"), "sam from support is here");
    await dp.waitForFunction((key) => !document.querySelector(`#queue li[data-chat-key="${key}"]`), chat, T);

    // The customer types: the desk sees it.
    await cp.locator("#message-input").pressSequentially("I need", { delay: 30 });
    await dp.waitForFunction(() => document.getElementById("typing-indicator").textContent === "cara is typing…", null, T);
    await cp.fill("#message-input", "I need help with my order");
    await cp.click("#send-button");
    await dp.waitForSelector('#messages li[data-role="user"][data-user-id="cara"] >> text=I need help with my order', T);
    await dp.waitForFunction(() => document.getElementById("typing-indicator").textContent === "", null, T);

    // The agent answers; the customer sees a person's message; the AI says nothing meanwhile.
    await dp.locator("#message-input").pressSequentially("Hi Cara, I am Sam.", { delay: 10 });
    await dp.press("#message-input", "Enter");
    const fromAgent = cp.locator('#messages li[data-role="humanAgent"][data-user-id="sam"]');
    await fromAgent.waitFor(T);
    assert.equal(await fromAgent.locator(".text").textContent(), "Hi Cara, I am Sam.");
    await sleep(500);
    assert.equal(await cp.locator('#messages li[data-role="assistant"]').count(), 1, "no AI reply while the agent is there");
    // A second tab of the customer's, opened now, learns the state from the chat's summary and
    // shows the agent's message from the join's history.
    const again = await openCustomer(browser, natter.url, { chat, user: "cara" });
    contexts.push(again.context);
    await again.page.waitForSelector('#handoff-status[data-state="human"]', T);
    await again.page.waitForSelector('#messages li[data-role="humanAgent"][data-user-id="sam"]', T);
    assert.deepEqual(again.problems, []);
    await again.context.close();

    await assertVisible(dp, ["#messages", "#message-input", "#handback-button", "#end-chat-button"]);
    await screenshot(dp, "desk-chat");
    await assertVisible(cp, ['#messages li[data-role="humanAgent"]', '#handoff-status[data-state="human"]']);
    await screenshot(cp, "desk-customer-with-agent");

    // A reload of the desk forgets the open chat's panel, not the chat: the server keeps sam
    // engaged (no chat:leave was sent) and the handled list offers to resume it.
    await dp.reload();
    await dp.click("#start-button");
    const resume = dp.locator(`#handled li[data-chat-key="${chat}"] [data-testid="resume-button"]`);
    await resume.waitFor(T);
    assert.equal(await dp.textContent(`#handled li[data-chat-key="${chat}"] [data-field="state"]`), "open");
    assert.equal(await dp.locator(`#queue li[data-chat-key="${chat}"]`).count(), 0, "still taken, so not waiting");
    await resume.click();
    await dp.waitForFunction(() => document.querySelectorAll("#messages li").length === 4, null, T);
    assert.ok(await resume.isHidden(), "no Resume for the chat on screen");
    assert.equal(await cp.getAttribute("#handoff-status", "data-state"), "human");

    // Hand back to the AI: the desk lists the chat as handled, the AI answers the customer again.
    await dp.click("#handback-button");
    const handled = dp.locator(`#handled li[data-chat-key="${chat}"]`);
    await handled.waitFor(T);
    await dp.waitForFunction((key) => document.querySelector(`#handled li[data-chat-key="${key}"] [data-field="state"]`)?.textContent === "handed back", chat, T);
    assert.equal(await dp.textContent("#chat-title"), "No chat taken");
    await cp.waitForSelector('#handoff-status[data-state="ai"]', T);
    await cp.fill("#message-input", "[fake:echo delay_ms=40] back to the bot");
    await cp.click("#send-button");
    await cp.waitForFunction(() => {
      const replies = document.querySelectorAll('#messages li[data-role="assistant"][data-state="done"]');
      return replies.length === 2 && replies[1].querySelector(".text").textContent === "Echo: back to the bot";
    }, null, T);

    // The customer ends the chat and rates it; the desk shows the rating.
    await cp.click("#end-button");
    await cp.waitForSelector("#csat-form:not([hidden])", T);
    assert.ok(await cp.isDisabled("#csat-submit"), "no rating chosen yet");
    await cp.waitForFunction(() => document.getElementById("end-button").textContent === "Chat ended", null, T);
    assert.ok(await cp.isDisabled("#end-button"), "an ended chat cannot be ended again");
    await cp.click('label:has([data-testid="csat-5"])');
    await cp.fill("#csat-comment", "Sam was great");
    await assertVisible(cp, ["#csat-form", "#csat-submit"]);
    await screenshot(cp, "desk-customer-csat");
    await cp.click("#csat-submit");
    await cp.waitForSelector("#csat-thanks:not([hidden])", T);
    assert.equal(await cp.textContent("#csat-thanks"), "Thank you: you rated this chat 5/5.");
    assert.ok(await cp.isHidden("#csat-form"));

    const rating = handled.locator('[data-testid="csat-result"]');
    await dp.waitForFunction((key) => document.querySelector(`#handled li[data-chat-key="${key}"] [data-testid="csat-result"]`)?.dataset.rating === "5", chat, T);
    assert.equal(await rating.textContent(), "rated 5/5: “Sam was great”");
    await assertVisible(dp, ["#handled", `#handled li[data-chat-key="${chat}"] [data-testid="csat-result"]`]);
    await screenshot(dp, "desk-handled");

    // What the pages showed is what the server stored.
    const summary = await (await fetch(`${natter.url}/api/v1/chats/${encodeURIComponent(chat)}`)).json();
    assert.equal(summary.csat.rating, 5);
    assert.equal(summary.csat.comment, "Sam was great");
    assert.equal(summary.isWaitingForAgent, false);
    const stored = (await (await fetch(`${natter.url}/api/v1/chats/${encodeURIComponent(chat)}/messages?limit=50`)).json()).messages;
    assert.deepEqual(
      stored.map((m) => [m.role, m.content]),
      [
        ["user", "hi bot"],
        ["ai", "Echo: hi bot"],
        ["user", "I need help with my order"],
        ["humanAgent", "Hi Cara, I am Sam."],
        ["user", "[fake:echo delay_ms=40] back to the bot"],
        ["ai", "Echo: back to the bot"],
      ],
    );

    assert.deepEqual(customer.problems, [], "no script errors on the customer's page");
    assert.deepEqual(desk.problems, [], "no script errors on the desk");
  });
});

describe("desk with auth on", () => {
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

  browserTest("a chat:agent token reads the whole queue and takes the chat; a customer's token cannot", async () => {
    const chat = uid("desk-auth");
    const customer = await openCustomer(browser, natter.url, { chat, user: "cy", token: tokenFor("acme", "cy") });
    contexts.push(customer.context);
    await customer.page.fill("#message-input", "hello");
    await customer.page.click("#send-button");
    await customer.page.waitForSelector('#messages li[data-role="assistant"][data-state="done"]', T);
    await customer.page.click("#handoff-button");
    await customer.page.waitForSelector('#handoff-status[data-state="waiting"]', T);

    // A customer's token in the desk's token field: its queue holds only that user's own
    // chats (not cy's), and taking one is refused by the server.
    const eve = await openCustomer(browser, natter.url, { chat: uid("desk-eve"), user: "eve", token: tokenFor("acme", "eve") });
    contexts.push(eve.context);
    await eve.page.fill("#message-input", "hello from eve");
    await eve.page.click("#send-button");
    await eve.page.waitForSelector('#messages li[data-role="assistant"][data-state="done"]', T);
    await eve.page.click("#handoff-button");
    await eve.page.waitForSelector('#handoff-status[data-state="waiting"]', T);
    const wrong = await openPage(browser, `${natter.url}/desk`);
    contexts.push(wrong.context);
    await wrong.page.fill("#agent-name", "eve");
    await wrong.page.fill("#agent-token", tokenFor("acme", "eve"));
    await wrong.page.click("#start-button");
    const own = wrong.page.locator("#queue li");
    await own.first().waitFor(T);
    assert.equal(await own.count(), 1, "a customer's queue holds only its own chat");
    assert.equal(await wrong.page.locator(`#queue li[data-chat-key="${chat}"]`).count(), 0);
    await own.first().locator("button").click();
    await wrong.page.waitForSelector("#error:not([hidden])", T);
    assert.match(await wrong.page.textContent("#error"), /^cannot take hello from eve: .*forbidden/);
    assert.equal(await wrong.page.textContent("#chat-title"), "No chat taken");
    assert.equal(await eve.page.getAttribute("#handoff-status", "data-state"), "waiting", "still waiting for a real agent");

    // An agent's token in the address: the name comes from it, the queue holds the chat.
    const desk = await openPage(browser, `${natter.url}/desk?${new URLSearchParams({ token: tokenFor("acme", "ada", { scopes: ["chat:agent"] }) })}`);
    contexts.push(desk.context);
    const dp = desk.page;
    assert.equal(await dp.inputValue("#agent-name"), "ada");
    await dp.click("#start-button");
    const item = dp.locator(`#queue li[data-chat-key="${chat}"]`);
    await item.waitFor(T);
    await item.locator("button").click();
    await dp.waitForFunction(() => document.querySelectorAll("#messages li").length === 2, null, T);
    await customer.page.waitForSelector('#handoff-status[data-state="human"]', T);
    assert.equal(await customer.page.textContent("#handoff-status"), "ada from support is here");
    await dp.fill("#message-input", "Ada here.");
    await dp.click("#send-button");
    await customer.page.waitForSelector('#messages li[data-role="humanAgent"][data-user-id="ada"]', T);
    await screenshot(dp, "desk-auth");

    // The agent ends the chat: the customer is asked for a rating, the desk lists it as ended.
    await dp.click("#end-chat-button");
    await customer.page.waitForSelector("#csat-form:not([hidden])", T);
    await dp.waitForFunction((key) => document.querySelector(`#handled li[data-chat-key="${key}"] [data-field="state"]`)?.textContent === "ended", chat, T);
    assert.equal(await dp.textContent("#chat-title"), "No chat taken");
    await customer.page.click('label:has([data-testid="csat-2"])');
    await customer.page.click("#csat-submit");
    await dp.waitForFunction((key) => document.querySelector(`#handled li[data-chat-key="${key}"] [data-testid="csat-result"]`)?.dataset.rating === "2", chat, T);
    assert.deepEqual(desk.problems, []);
    assert.deepEqual(customer.problems, []);
  });
});
