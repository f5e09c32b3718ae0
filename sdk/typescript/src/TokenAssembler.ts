// Assembles each turn's streamed text from `ai:token` events exactly once (CONTRACT §6.4).

/** The fields of an `ai:token` event this class reads. */
export interface TokenLike {
  messageId: string;
  token: string;
  index: number;
  /** Present on a merged catch-up event covering `index..=through`. */
  through?: number | null | undefined;
}

export type TokenVerdict =
  /** New text: append `token`; `turnText` is the turn's text so far, this token included. */
  | { kind: "append"; turnText: string }
  /** Already had it (a replay after a rejoin, or an overlap): drop it. */
  | { kind: "duplicate" }
  /** The turn already ended (`ai:message` / `ai:error` seen): drop it. */
  | { kind: "ended" }
  /** It starts past the next expected index, or straddles it: drop it; the server promises neither. */
  | { kind: "gap"; expected: number };

/** How many ended turns are remembered, so late tokens of theirs are dropped; older ones are forgotten. */
const ENDED_MEMORY = 256;

/**
 * Per turn (assistant `messageId`), the next token index expected and the text so far.
 *
 * An event whose last index (`through ?? index`) is below the next expected one is a
 * duplicate; one that starts exactly at it is appended and moves it to `last + 1`. A server
 * re-sends a running turn's tokens from index 0 on every (re)join, so this is what keeps each
 * token seen once.
 */
export class TokenAssembler {
  private readonly turns = new Map<string, { next: number; text: string }>();
  private readonly ended = new Set<string>();

  accept(event: TokenLike): TokenVerdict {
    if (this.ended.has(event.messageId)) return { kind: "ended" };
    const turn = this.turns.get(event.messageId) ?? { next: 0, text: "" };
    const last = event.through ?? event.index;
    if (last < turn.next) return { kind: "duplicate" };
    if (event.index !== turn.next) return { kind: "gap", expected: turn.next };
    turn.next = last + 1;
    turn.text += event.token;
    this.turns.set(event.messageId, turn);
    return { kind: "append", turnText: turn.text };
  }

  /** The text streamed so far for `messageId` (`""` if none). */
  text(messageId: string): string {
    return this.turns.get(messageId)?.text ?? "";
  }

  /** The next index expected for `messageId`. */
  nextIndex(messageId: string): number {
    return this.turns.get(messageId)?.next ?? 0;
  }

  /** Marks the turn ended: its text is forgotten and later tokens of it are dropped. */
  end(messageId: string): void {
    this.turns.delete(messageId);
    this.ended.add(messageId);
    if (this.ended.size > ENDED_MEMORY) {
      const oldest = this.ended.values().next();
      if (!oldest.done) this.ended.delete(oldest.value);
    }
  }

  hasEnded(messageId: string): boolean {
    return this.ended.has(messageId);
  }

  /** Forgets every running turn (after a join that could not recover: they are re-sent from 0). */
  resetRunning(): void {
    this.turns.clear();
  }
}
