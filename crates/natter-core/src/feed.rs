//! A member's view of a chat: the live events in order, with no gap and no duplicate.
//!
//! Every face reads its members' events through a [`Feed`]. The feed
//! - drops durable events at or below the last `seq` delivered, and fills a gap (a `seq`
//!   that skips ahead) from the store before going on;
//! - delivers each token index of a turn once, in order; a skipped index is refilled from
//!   the bus's turn buffer;
//! - recovers from falling behind (the bus channel lagged because the member's connection
//!   was slow): it reloads the missed durable events from the store and sends the running
//!   turn's missed tokens as **one** coalesced item (`index..=through`), so a slow member
//!   costs bounded memory and never slows the turn for others;
//! - sends a turn's tokens the member missed before its end (the bus has dropped the turn's
//!   buffer by then) as one item cut from the end event's text, so a lagging member's tokens
//!   still concatenate to the reply (CONTRACT §1);
//! - skips events caused by the member's own connection where the contract says so (its own
//!   `chat:message`, its own typing).

use std::collections::VecDeque;
use std::sync::Arc;

use crate::bus::{Bus, Subscription, TurnSnapshot};
use crate::chat::{ChatKey, ConnectionId};
use crate::event::{BusMessage, EventBody, LiveEvent, StoredEvent, TurnRef};
use crate::ring::{RecvError, TryRecvError};
use crate::store::Store;

/// One thing to deliver to a member.
#[derive(Debug, Clone, PartialEq)]
pub enum FeedItem {
    Durable(Arc<StoredEvent>),
    /// Token text for indexes `index..=through` of `turn` (`through == index` for one token).
    Tokens {
        turn: Arc<TurnRef>,
        index: u64,
        through: u64,
        text: Arc<str>,
    },
    /// Any other live event (processing, typing, presence, turn started).
    Live(LiveEvent),
}

/// Why a feed ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedEnd {
    /// The bus closed the chat's channel.
    Closed,
    /// The member fell further behind than the replay limit; it should rejoin.
    TooFarBehind,
    /// The store or bus failed while filling a gap.
    Unavailable(String),
}

struct TurnCursor {
    turn: Arc<TurnRef>,
    next_index: u64,
    /// Bytes of the turn's text handed out so far: tokens go out whole and in index order,
    /// so they are a prefix of the text the turn's end carries.
    sent_bytes: usize,
}

impl TurnCursor {
    fn new(turn: Arc<TurnRef>) -> Self {
        Self {
            turn,
            next_index: 0,
            sent_bytes: 0,
        }
    }

    fn is_on(&self, message_id: &str) -> bool {
        &*self.turn.message_id == message_id
    }
}

pub struct Feed {
    chat: ChatKey,
    conn: ConnectionId,
    subscription: Subscription,
    store: Arc<dyn Store>,
    bus: Arc<dyn Bus>,
    replay_limit: usize,
    last_seq: u64,
    cursor: Option<TurnCursor>,
    /// The most recently ended turn: its late tokens are dropped.
    ended_turn: Option<Arc<str>>,
    ready: VecDeque<FeedItem>,
    /// The turn already running when this feed started (its tokens so far were replayed).
    joined_turn: Option<Arc<str>>,
}

impl Feed {
    /// A feed for `conn` from `head_seq` on. [`ChatCore::join`](crate::ChatCore::join) builds
    /// it; it is public so the feed's behaviour can be tested on its own.
    pub fn new(
        chat: ChatKey,
        conn: ConnectionId,
        head_seq: u64,
        mut subscription: Subscription,
        store: Arc<dyn Store>,
        bus: Arc<dyn Bus>,
        replay_limit: usize,
    ) -> Self {
        let snapshot = subscription.running_turn.take();
        let mut feed = Self {
            chat,
            conn,
            subscription,
            store,
            bus,
            replay_limit,
            last_seq: head_seq,
            cursor: None,
            ended_turn: None,
            ready: VecDeque::new(),
            joined_turn: None,
        };
        // A new member sees the running turn's tokens so far, one event per index.
        if let Some(snapshot) = snapshot {
            for (i, text) in snapshot.tokens.iter().enumerate() {
                feed.ready.push_back(FeedItem::Tokens {
                    turn: snapshot.turn.clone(),
                    index: i as u64,
                    through: i as u64,
                    text: text.clone(),
                });
            }
            feed.joined_turn = Some(snapshot.turn.message_id.clone());
            feed.cursor = Some(TurnCursor {
                next_index: snapshot.tokens.len() as u64,
                sent_bytes: snapshot.tokens.iter().map(|t| t.len()).sum(),
                turn: snapshot.turn,
            });
        }
        feed
    }

    /// Whether `item` is a token of the turn that was already running when this feed started.
    /// A face must not merge those: its replayed tokens are never merged (CONTRACT §6.4), and
    /// the member may hold more of the turn from an earlier connection than the replay gave,
    /// so a merged live event could straddle the index the client expects next, which the
    /// client recipe cannot use. Tokens of turns that start while the feed runs are safe.
    pub fn joined_mid_turn(&self, item: &FeedItem) -> bool {
        match (item, &self.joined_turn) {
            (FeedItem::Tokens { turn, .. }, Some(message_id)) => turn.message_id == *message_id,
            _ => false,
        }
    }

    pub fn chat(&self) -> &ChatKey {
        &self.chat
    }

    /// The turn whose tokens this feed is delivering, if one is streaming.
    pub fn current_turn(&self) -> Option<&Arc<TurnRef>> {
        self.cursor.as_ref().map(|c| &c.turn)
    }

    /// The token index this feed hands out next for its current turn (0 without one).
    pub fn next_token_index(&self) -> u64 {
        self.cursor.as_ref().map_or(0, |c| c.next_index)
    }

    /// The highest `seq` handed out so far.
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// The next item for this member. Cancel-safe: dropping the future loses nothing
    /// that was not already returned.
    pub async fn next(&mut self) -> Result<FeedItem, FeedEnd> {
        loop {
            if let Some(item) = self.ready.pop_front() {
                return Ok(item);
            }
            if self.ready.capacity() > 0 {
                // A member mostly waits: it keeps no queue meanwhile (a join's replay and
                // each accepted message grow one; an allocation per wait costs less than
                // keeping it in every idle member).
                self.ready = VecDeque::new();
            }
            match self.subscription.rx.recv().await {
                Ok(message) => self.accept(&message).await?,
                Err(RecvError::Lagged(_)) => self.resync().await?,
                Err(RecvError::Closed) => return Err(FeedEnd::Closed),
            }
        }
    }

    /// The next item if one is already there (queued, or waiting on the bus), without
    /// waiting for a new one. Lets a face merge a slow member's backlog of tokens.
    pub async fn next_if_ready(&mut self) -> Option<Result<FeedItem, FeedEnd>> {
        loop {
            if let Some(item) = self.ready.pop_front() {
                return Some(Ok(item));
            }
            let step = match self.subscription.rx.try_recv() {
                Ok(message) => self.accept(&message).await,
                Err(TryRecvError::Lagged(_)) => self.resync().await,
                Err(TryRecvError::Empty) => return None,
                Err(TryRecvError::Closed) => Err(FeedEnd::Closed),
            };
            if let Err(end) = step {
                return Some(Err(end));
            }
        }
    }

    async fn accept(&mut self, message: &BusMessage) -> Result<(), FeedEnd> {
        match message {
            BusMessage::Durable { event, origin } => {
                if event.seq <= self.last_seq {
                    // Already delivered (or in the join's history); late tokens of a turn it
                    // ended must still be dropped.
                    if let Some(ended) = event.body.ends_turn() {
                        self.ended_turn = Some(ended.into());
                    }
                    return Ok(());
                }
                if event.seq > self.last_seq + 1 {
                    // Published out of order (another node) or lost: the store has them all.
                    return self.fill_durable().await;
                }
                let own = origin.as_ref() == Some(&self.conn);
                self.push_durable(event.clone(), own);
            }
            BusMessage::Live { event, origin } => match event {
                LiveEvent::Token { turn, index, text } => {
                    self.accept_token(turn, *index, text).await?
                }
                // A start of the turn already in hand (a bus that delivers it after the
                // snapshot that holds its tokens) must not reset the cursor: its tokens would
                // go out twice.
                LiveEvent::TurnStarted { turn }
                    if self
                        .cursor
                        .as_ref()
                        .is_some_and(|c| c.is_on(&turn.message_id)) => {}
                LiveEvent::TurnStarted { turn } => {
                    self.cursor = Some(TurnCursor::new(turn.clone()));
                    self.ready.push_back(FeedItem::Live(event.clone()));
                }
                LiveEvent::TurnEndUnstored { turn, end } => {
                    self.push_missed_tail(&turn.message_id, end);
                    if self
                        .cursor
                        .as_ref()
                        .is_some_and(|c| c.turn.message_id == turn.message_id)
                    {
                        self.cursor = None;
                    }
                    self.ended_turn = Some(turn.message_id.clone());
                    self.ready.push_back(FeedItem::Live(event.clone()));
                }
                LiveEvent::Typing { .. } if origin.as_ref() == Some(&self.conn) => {}
                _ => self.ready.push_back(FeedItem::Live(event.clone())),
            },
        }
        Ok(())
    }

    fn push_durable(&mut self, event: Arc<StoredEvent>, own: bool) {
        self.last_seq = event.seq;
        if let Some(ended) = event.body.ends_turn() {
            self.push_missed_tail(ended, &event.body);
            if self
                .cursor
                .as_ref()
                .is_some_and(|c| &*c.turn.message_id == ended)
            {
                self.cursor = None;
            }
            self.ended_turn = Some(ended.into());
        }
        // A member's own message and receipt are acked to it; it gets no echo (CONTRACT §6.9).
        let echo = own
            && matches!(
                event.body,
                EventBody::UserMessage { .. } | EventBody::ReadReceipt { .. }
            );
        if !echo {
            self.ready.push_back(FeedItem::Durable(event));
        }
    }

    async fn fill_durable(&mut self) -> Result<(), FeedEnd> {
        let events = self
            .store
            .events_after(&self.chat, self.last_seq, self.replay_limit + 1)
            .await
            .map_err(|e| FeedEnd::Unavailable(e.to_string()))?;
        if events.len() > self.replay_limit {
            return Err(FeedEnd::TooFarBehind);
        }
        // The log records which connection sent a message or receipt, so a refilled one is
        // not echoed to its sender either (CONTRACT §6.9).
        for event in events {
            let own = event.body.origin() == Some(&*self.conn);
            self.push_durable(Arc::new(event), own);
        }
        Ok(())
    }

    async fn accept_token(
        &mut self,
        turn: &Arc<TurnRef>,
        index: u64,
        text: &Arc<str>,
    ) -> Result<(), FeedEnd> {
        if self.ended_turn.as_deref() == Some(&*turn.message_id) {
            return Ok(());
        }
        let (next, sent_bytes) = match &self.cursor {
            Some(c) if c.turn.message_id == turn.message_id => (c.next_index, c.sent_bytes),
            _ => (0, 0),
        };
        if index < next {
            return Ok(());
        }
        if index > next {
            // Missed some: refill from the turn buffer, coalesced.
            let snapshot = self
                .bus
                .running_turn(&self.chat)
                .await
                .map_err(|e| FeedEnd::Unavailable(e.to_string()))?;
            self.cursor = Some(TurnCursor {
                turn: turn.clone(),
                next_index: next,
                sent_bytes,
            });
            self.catch_up_tokens(snapshot);
            return Ok(());
        }
        self.cursor = Some(TurnCursor {
            turn: turn.clone(),
            next_index: index + 1,
            sent_bytes: sent_bytes + text.len(),
        });
        self.ready.push_back(FeedItem::Tokens {
            turn: turn.clone(),
            index,
            through: index,
            text: text.clone(),
        });
        Ok(())
    }

    /// Queues the snapshot's tokens past the cursor as one coalesced item.
    fn catch_up_tokens(&mut self, snapshot: Option<TurnSnapshot>) {
        let Some(snapshot) = snapshot else { return };
        if self.ended_turn.as_deref() == Some(&*snapshot.turn.message_id) {
            return;
        }
        let (from, sent_bytes) = match &self.cursor {
            Some(c) if c.turn.message_id == snapshot.turn.message_id => {
                (c.next_index, c.sent_bytes)
            }
            _ => (0, 0),
        };
        let to = snapshot.tokens.len() as u64;
        let caught_up_bytes: usize = snapshot
            .tokens
            .iter()
            .skip(from as usize)
            .map(|t| t.len())
            .sum();
        if from < to && self.joined_turn.as_ref() == Some(&snapshot.turn.message_id) {
            // The turn running at the join: one item per index, never a run that could
            // straddle what the member holds from an earlier connection (see
            // [`Self::joined_mid_turn`]).
            for (i, text) in snapshot.tokens.iter().enumerate().skip(from as usize) {
                self.ready.push_back(FeedItem::Tokens {
                    turn: snapshot.turn.clone(),
                    index: i as u64,
                    through: i as u64,
                    text: text.clone(),
                });
            }
        } else if from < to {
            let text: String = snapshot.tokens[from as usize..]
                .iter()
                .map(|t| &**t)
                .collect();
            self.ready.push_back(FeedItem::Tokens {
                turn: snapshot.turn.clone(),
                index: from,
                through: to - 1,
                text: text.into(),
            });
        }
        self.cursor = Some(TurnCursor {
            turn: snapshot.turn,
            next_index: to.max(from),
            sent_bytes: sent_bytes + caught_up_bytes,
        });
    }

    /// Before the end of turn `message_id` (`end` is its end event's body): queues the
    /// turn's tokens this member missed as one item, cut from the end's text past what the
    /// member was given. They are missed when the member lagged across the turn's tail: the
    /// bus dropped the turn's buffer at the end, so the catch-up cannot come from there.
    ///
    /// Which member gets what:
    /// - on the turn (it saw `TurnStarted`, or tokens of it): the tail past its cursor,
    ///   `next_index..token_count`; from index 0 if it lagged before the first token;
    /// - no turn at all in hand (the cursor is empty) and the turn is neither ended nor the
    ///   one running at the join: the member was subscribed before the turn started (a turn
    ///   running at subscribe time comes with the join's snapshot) and lagged past its
    ///   start, so it holds none of its tokens: the whole text as `0..token_count`;
    /// - the cursor on another turn: it may hold some of this turn's tokens and the feed no
    ///   longer knows how many, so it gets the end alone, as before;
    /// - the turn running at the join: nothing. Its tokens go out one item per index (see
    ///   [`Self::joined_mid_turn`]) and the end's text cannot be split back into indexes, so
    ///   a run here could straddle what the member holds from an earlier connection.
    fn push_missed_tail(&mut self, message_id: &str, end: &EventBody) {
        let (text, token_count) = match end {
            EventBody::AssistantMessage {
                text, token_count, ..
            }
            | EventBody::TurnFailed {
                partial_text: text,
                token_count,
                ..
            } => (text, *token_count),
            _ => return,
        };
        // Events stored before the count was recorded carry none: no tail is knowable.
        let Some(token_count) = token_count else {
            return;
        };
        if self.ended_turn.as_deref() == Some(message_id)
            || self.joined_turn.as_deref() == Some(message_id)
        {
            return;
        }
        let (turn, from, sent_bytes) = match &self.cursor {
            Some(c) if c.is_on(message_id) => (c.turn.clone(), c.next_index, c.sent_bytes),
            Some(_) => return,
            None => {
                let Some(request_id) = end_request_id(end) else {
                    return;
                };
                let turn = Arc::new(TurnRef {
                    message_id: message_id.into(),
                    request_id: request_id.into(),
                    trace_id: end_trace_id(end).map(Into::into),
                });
                (turn, 0, 0)
            }
        };
        if from >= token_count {
            return;
        }
        let Some(tail) = text.get(sent_bytes..) else {
            // The tokens handed out are not a prefix of the end's text: sending a cut of it
            // would garble the reply, so the member gets the end alone.
            tracing::warn!(
                chat = %self.chat,
                message_id,
                sent_bytes,
                text_bytes = text.len(),
                "the tokens sent do not line up with the turn's text; its tail is not sent"
            );
            return;
        };
        self.ready.push_back(FeedItem::Tokens {
            turn,
            index: from,
            through: token_count - 1,
            text: tail.into(),
        });
    }

    /// After a lag: reload durable events from the store, then the turn's missed tokens.
    async fn resync(&mut self) -> Result<(), FeedEnd> {
        self.fill_durable().await?;
        let snapshot = self
            .bus
            .running_turn(&self.chat)
            .await
            .map_err(|e| FeedEnd::Unavailable(e.to_string()))?;
        self.catch_up_tokens(snapshot);
        Ok(())
    }
}

fn end_request_id(end: &EventBody) -> Option<&str> {
    match end {
        EventBody::AssistantMessage { request_id, .. }
        | EventBody::TurnFailed { request_id, .. } => Some(request_id),
        _ => None,
    }
}

fn end_trace_id(end: &EventBody) -> Option<&str> {
    match end {
        EventBody::AssistantMessage { trace_id, .. } | EventBody::TurnFailed { trace_id, .. } => {
            trace_id.as_deref()
        }
        _ => None,
    }
}
