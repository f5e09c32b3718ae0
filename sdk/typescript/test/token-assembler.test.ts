// TokenAssembler against hand-made ai:token sequences (CONTRACT §6.4).
import { test } from "node:test";
import assert from "node:assert/strict";
import { TokenAssembler, type TokenLike } from "../src/index.js";

const tok = (index: number, token: string, through?: number, messageId = "a1"): TokenLike =>
  through === undefined ? { messageId, token, index } : { messageId, token, index, through };

/** Feeds `events` and returns what was appended, in order. */
function feed(assembler: TokenAssembler, events: TokenLike[]): string[] {
  const out: string[] = [];
  for (const e of events) {
    const v = assembler.accept(e);
    if (v.kind === "append") out.push(e.token);
  }
  return out;
}

test("in-order tokens are appended once each and turnText is their concatenation", () => {
  const a = new TokenAssembler();
  assert.deepEqual(feed(a, [tok(0, "Hel"), tok(1, "lo"), tok(2, " world")]), ["Hel", "lo", " world"]);
  assert.equal(a.text("a1"), "Hello world");
  assert.equal(a.nextIndex("a1"), 3);
});

test("a replay from index 0 after a rejoin is dropped up to the next expected index", () => {
  const a = new TokenAssembler();
  feed(a, [tok(0, "a"), tok(1, "b")]);
  // The server re-sends the running turn from 0 on a rejoin, then goes on live.
  const appended = feed(a, [tok(0, "a"), tok(1, "b"), tok(2, "c"), tok(3, "d")]);
  assert.deepEqual(appended, ["c", "d"]);
  assert.equal(a.text("a1"), "abcd");
});

test("a merged catch-up event (index..=through) starting at the next index is appended whole", () => {
  const a = new TokenAssembler();
  feed(a, [tok(0, "a")]);
  const v = a.accept(tok(1, "bcd", 3));
  assert.deepEqual(v, { kind: "append", turnText: "abcd" });
  assert.equal(a.nextIndex("a1"), 4);
  // Single events the merged one already covered are duplicates.
  assert.deepEqual(a.accept(tok(2, "c")), { kind: "duplicate" });
  assert.deepEqual(a.accept(tok(3, "d")), { kind: "duplicate" });
  assert.deepEqual(a.accept(tok(4, "e")), { kind: "append", turnText: "abcde" });
});

test("a merged event wholly below the next index is a duplicate", () => {
  const a = new TokenAssembler();
  feed(a, [tok(0, "a"), tok(1, "b"), tok(2, "c")]);
  assert.deepEqual(a.accept(tok(0, "abc", 2)), { kind: "duplicate" });
  assert.equal(a.text("a1"), "abc");
});

test("an event past the next index, or straddling it, is a gap and is not appended", () => {
  const a = new TokenAssembler();
  feed(a, [tok(0, "a")]);
  assert.deepEqual(a.accept(tok(2, "c")), { kind: "gap", expected: 1 });
  feed(a, [tok(1, "b"), tok(2, "c")]);
  assert.deepEqual(a.accept(tok(1, "bcd", 3)), { kind: "gap", expected: 3 });
  assert.equal(a.text("a1"), "abc");
});

test("turns are tracked separately, and an ended turn drops late tokens", () => {
  const a = new TokenAssembler();
  feed(a, [tok(0, "x", undefined, "m1"), tok(0, "y", undefined, "m2"), tok(1, "z", undefined, "m1")]);
  assert.equal(a.text("m1"), "xz");
  assert.equal(a.text("m2"), "y");
  a.end("m1");
  assert.deepEqual(a.accept(tok(2, "late", undefined, "m1")), { kind: "ended" });
  assert.equal(a.text("m1"), "");
  assert.equal(a.hasEnded("m1"), true);
});

test("resetRunning forgets running turns so a full re-send from 0 is taken again", () => {
  const a = new TokenAssembler();
  feed(a, [tok(0, "a"), tok(1, "b")]);
  a.resetRunning();
  assert.deepEqual(feed(a, [tok(0, "a"), tok(1, "b"), tok(2, "c")]), ["a", "b", "c"]);
  assert.equal(a.text("a1"), "abc");
});
