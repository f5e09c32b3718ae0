//! Reactions (CONTRACT §7.3) and CSAT answers (§7.4): durable events whose effect the store
//! keeps with the log (a message's reaction list, the chat's latest rating).

use natter_protocol::ErrorCode;

use crate::chat::{ChatKey, Identity};
use crate::core::{ChatCore, check_admits};
use crate::error::CoreError;
use crate::event::{EventBody, Reaction, StoredEvent};
use crate::telemetry;

/// Most Unicode scalar values in one emoji (a family or a flag with modifiers fits).
pub const MAX_EMOJI_CHARS: usize = 8;
/// Most UTF-8 bytes in one emoji.
pub const MAX_EMOJI_BYTES: usize = 32;
/// Longest CSAT comment, in characters.
pub const MAX_CSAT_COMMENT_CHARS: usize = 2000;

/// What a reaction call did.
#[derive(Debug, Clone, PartialEq)]
pub struct ReactionOutcome {
    pub message_id: String,
    /// The message's whole reaction list now.
    pub reactions: Vec<Reaction>,
    /// The event logged; `None` when the call changed nothing (the reaction was already
    /// there, or was not there to remove): such a call logs no event.
    pub event: Option<StoredEvent>,
}

/// Checks an emoji: 1 to 8 Unicode scalar values, at most 32 bytes, no whitespace or
/// control characters. It is not checked against an emoji list, so new emoji work at once.
pub fn check_emoji(emoji: &str) -> Result<(), CoreError> {
    if emoji.is_empty() {
        return Err(CoreError::rejected(
            ErrorCode::MissingField,
            "`emoji` is required and must not be empty",
        ));
    }
    let chars = emoji.chars().count();
    if chars > MAX_EMOJI_CHARS || emoji.len() > MAX_EMOJI_BYTES {
        return Err(CoreError::rejected(
            ErrorCode::InvalidField,
            format!(
                "`emoji` must be one emoji: at most {MAX_EMOJI_CHARS} Unicode scalar values and \
                 {MAX_EMOJI_BYTES} bytes (got {chars} and {} bytes)",
                emoji.len()
            ),
        ));
    }
    if emoji.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(CoreError::rejected(
            ErrorCode::InvalidField,
            "`emoji` must not contain whitespace or control characters",
        ));
    }
    Ok(())
}

impl ChatCore {
    /// Adds (`add`) or removes `who`'s reaction `emoji` on message `message_id`. Every member
    /// (the sender too) gets the message's whole list with the event's `seq`. Adding a
    /// reaction that is there or removing one that is not logs nothing and returns the list.
    pub async fn react(
        &self,
        who: &Identity,
        chat: &ChatKey,
        message_id: String,
        emoji: String,
        add: bool,
        trace_id: Option<String>,
    ) -> Result<ReactionOutcome, CoreError> {
        who.check_may_write("react to messages")?;
        if message_id.is_empty() {
            return Err(CoreError::rejected(
                ErrorCode::MissingField,
                "`messageId` is required",
            ));
        }
        natter_protocol::fields::check_id_field("reaction", "messageId", &message_id)
            .map_err(CoreError::Rejected)?;
        check_emoji(&emoji)?;
        let summary = self.chat_summary(chat).await?;
        check_admits(who, &summary)?;
        let store = &self.inner.store;
        if store.find_message(chat, &message_id).await?.is_none() {
            return Err(CoreError::rejected(
                ErrorCode::NotFound,
                format!("chat `{}` has no message `{message_id}`", chat.chat_id),
            ));
        }
        let current = store
            .reactions(chat, std::slice::from_ref(&message_id))
            .await?
            .into_iter()
            .next()
            .map(|(_, list)| list)
            .unwrap_or_default();
        let there = current
            .iter()
            .any(|r| r.emoji == emoji && *r.user_id == *who.user_id);
        if there == add {
            // Nothing to change. Two such calls racing may both log an event; the store keeps
            // one reaction per (user, message, emoji) whatever the order.
            return Ok(ReactionOutcome {
                message_id,
                reactions: current,
                event: None,
            });
        }
        let user_id = who.user_id.to_string();
        let body = if add {
            EventBody::ReactionAdded {
                message_id: message_id.clone(),
                user_id,
                emoji,
                reactions: Vec::new(),
                trace_id,
            }
        } else {
            EventBody::ReactionRemoved {
                message_id: message_id.clone(),
                user_id,
                emoji,
                reactions: Vec::new(),
                trace_id,
            }
        };
        let event = self.append_and_publish(chat, body, None).await?;
        let reactions = event
            .body
            .reaction_target()
            .map(|(_, l)| l.to_vec())
            .unwrap_or_default();
        Ok(ReactionOutcome {
            message_id,
            reactions,
            event: Some(event),
        })
    }

    /// The reaction lists of `message_ids` that have any (for `/load`, history pages and
    /// join acks).
    pub async fn reactions(
        &self,
        chat: &ChatKey,
        message_ids: &[String],
    ) -> Result<Vec<(String, Vec<Reaction>)>, CoreError> {
        if message_ids.is_empty() {
            return Ok(Vec::new());
        }
        Ok(self.inner.store.reactions(chat, message_ids).await?)
    }

    /// Stores `who`'s CSAT answer (a later one replaces it in the chat's summary). `rating`
    /// is 1 to 5; `comment` at most 2,000 characters.
    pub async fn submit_csat(
        &self,
        who: &Identity,
        chat: &ChatKey,
        rating: i64,
        comment: Option<String>,
        trace_id: Option<String>,
    ) -> Result<StoredEvent, CoreError> {
        who.check_may_write("answer a CSAT survey")?;
        let rating = u8::try_from(rating)
            .ok()
            .filter(|r| (1..=5).contains(r))
            .ok_or_else(|| {
                CoreError::rejected(
                    ErrorCode::InvalidField,
                    format!("`rating` must be an integer from 1 to 5, got {rating}"),
                )
            })?;
        if let Some(c) = &comment
            && c.chars().count() > MAX_CSAT_COMMENT_CHARS
        {
            return Err(CoreError::rejected(
                ErrorCode::TooLarge,
                format!("`comment` has at most {MAX_CSAT_COMMENT_CHARS} characters"),
            ));
        }
        if comment.as_deref().is_some_and(|c| c.contains('\0')) {
            return Err(CoreError::rejected(
                ErrorCode::InvalidField,
                "`comment` must not contain NUL characters",
            ));
        }
        let summary = self.chat_summary(chat).await?;
        check_admits(who, &summary)?;
        let body = EventBody::CsatSubmitted {
            user_id: who.user_id.to_string(),
            rating,
            comment: comment.filter(|c| !c.is_empty()),
            trace_id,
        };
        let event = self.append_and_publish(chat, body, None).await?;
        metrics::histogram!(telemetry::CSAT_RATING).record(f64::from(rating));
        Ok(event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(e: &str) -> Option<&'static str> {
        check_emoji(e).err().map(|e| e.to_wire().code.as_str())
    }

    #[test]
    fn emoji_rules() {
        for ok in ["👍", "🎉", "👨‍👩‍👧", "🏳️‍🌈", "❤️", ":)", "+1", "abcdefgh"]
        {
            assert_eq!(code(ok), None, "{ok:?}");
        }
        assert_eq!(code(""), Some("missing_field"));
        for bad in [
            "👍 👍",
            " ",
            "\t",
            "a\nb",
            "\u{7}",
            "abcdefghi",
            "🏳️‍🌈🏳️‍🌈🏳️‍🌈",
            "\u{a0}",
        ] {
            assert_eq!(code(bad), Some("invalid_field"), "{bad:?}");
        }
    }
}
