//! Attachments on messages (CONTRACT §7.6): what a message stores of them, and handing them
//! to the model with the message that carries them.
//!
//! Storing, sniffing, resolving and processing attachments is [`crate::attachments`]' job;
//! this module reads what is stored for the model.

use std::time::Duration;

use crate::attachments::{Attachment, Processing};
use crate::chat::ChatKey;
use crate::core::Inner;
use crate::error::CoreError;
use crate::event::MessageAttachment;
use crate::provider::PromptImage;

/// How often a turn looks again at a document still being processed.
const PROCESSING_POLL: Duration = Duration::from_millis(200);

/// What a message stores of an attachment.
pub(crate) fn for_message(a: &Attachment) -> MessageAttachment {
    MessageAttachment {
        id: a.id.clone(),
        name: a.name.clone(),
        mime_type: a.mime_type.clone(),
        size: a.size,
        width: a.width,
        height: a.height,
    }
}

/// One document's text as the model gets it, or why there is none.
pub(crate) enum DocumentText {
    Text(String),
    Unreadable(String),
}

/// Frames each document's text with its file name, the whole within `budget` characters;
/// past it a document is cut with a visible `[… cut: N more characters]` marker.
pub(crate) fn frame_documents(docs: &[(&str, DocumentText)], budget: usize) -> String {
    let mut left = budget;
    let mut out = String::new();
    for (name, doc) in docs {
        if !out.is_empty() {
            out.push('\n');
        }
        match doc {
            DocumentText::Unreadable(why) => {
                out.push_str(&format!("[document: {name}: could not be read ({why})]"));
            }
            DocumentText::Text(text) => {
                out.push_str(&format!("[document: {name}]\n"));
                let total = text.chars().count();
                let kept = total.min(left);
                match text.char_indices().nth(kept) {
                    None => out.push_str(text),
                    Some((cut_at, _)) => {
                        out.push_str(&text[..cut_at]);
                        out.push_str(&format!("[… cut: {} more characters]", total - kept));
                    }
                }
                left -= kept;
                out.push_str(&format!("\n[end of document: {name}]"));
            }
        }
    }
    out
}

/// The framed text of the documents among `attachments`, within the budget. A document still
/// being processed is waited for until `deadline`; past it the model gets a line saying it
/// could not be read.
pub(crate) async fn documents_text(
    inner: &Inner,
    chat: &ChatKey,
    attachments: &[MessageAttachment],
    deadline: tokio::time::Instant,
) -> Result<String, CoreError> {
    let mut docs: Vec<(&str, DocumentText)> = Vec::new();
    for a in attachments.iter().filter(|a| !a.is_image()) {
        let text = loop {
            let state = inner
                .store
                .attachment(&chat.org, &a.id)
                .await?
                .map(|stored| stored.processing);
            match state {
                Some(Processing::Complete { .. }) => {
                    break match inner.store.attachment_text(&chat.org, &a.id).await? {
                        Some(text) => DocumentText::Text(text),
                        None => DocumentText::Unreadable("its text is missing".into()),
                    };
                }
                Some(Processing::Error { message, .. }) => {
                    break DocumentText::Unreadable(message);
                }
                Some(Processing::Processing)
                    if tokio::time::Instant::now() + PROCESSING_POLL <= deadline =>
                {
                    tokio::time::sleep(PROCESSING_POLL).await;
                }
                Some(Processing::Processing) => {
                    break DocumentText::Unreadable("still being processed".into());
                }
                // Not a document after all (nothing to process): nothing to read.
                Some(Processing::None) => break DocumentText::Unreadable("no text".into()),
                None => break DocumentText::Unreadable("no longer available".into()),
            }
        };
        docs.push((a.name.as_str(), text));
    }
    Ok(frame_documents(&docs, inner.config.attachments.text_budget))
}

/// Bytes of the images among `attachments`, as context building counts them.
pub(crate) fn image_bytes(attachments: &[MessageAttachment]) -> usize {
    attachments
        .iter()
        .filter(|a| a.is_image())
        .map(|a| usize::try_from(a.size).unwrap_or(usize::MAX))
        .fold(0, usize::saturating_add)
}

/// The images among `attachments` as `[image: …]` lines, one a line.
pub(crate) fn image_lines(attachments: &[MessageAttachment]) -> String {
    attachments
        .iter()
        .filter(|a| a.is_image())
        .map(MessageAttachment::image_line)
        .collect::<Vec<_>>()
        .join("\n")
}

/// The images among `attachments` with their bytes, read from the store. One no longer
/// stored (deleted since) comes back as a line in the second value instead.
pub(crate) async fn load_images(
    inner: &Inner,
    chat: &ChatKey,
    attachments: &[MessageAttachment],
) -> Result<(Vec<PromptImage>, Vec<String>), CoreError> {
    let mut images = Vec::new();
    let mut gone = Vec::new();
    for a in attachments.iter().filter(|a| a.is_image()) {
        match inner.store.attachment_bytes(&chat.org, &a.id).await? {
            Some(data) => images.push(PromptImage {
                name: a.name.clone(),
                mime_type: a.mime_type.clone(),
                width: a.width.unwrap_or(0),
                height: a.height.unwrap_or(0),
                data: data.into(),
            }),
            None => gone.push(format!("[image: {}, no longer available]", a.name)),
        }
    }
    Ok((images, gone))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_share_the_budget_and_are_cut_with_a_marker() {
        let docs = [
            ("a.txt", DocumentText::Text("héllo".into())),
            ("b.md", DocumentText::Text("0123456789".into())),
            ("c.csv", DocumentText::Text("x,y".into())),
            (
                "d.pdf",
                DocumentText::Unreadable("still being processed".into()),
            ),
        ];
        assert_eq!(
            frame_documents(&docs, 8),
            "[document: a.txt]\nhéllo\n[end of document: a.txt]\n\
             [document: b.md]\n012[… cut: 7 more characters]\n[end of document: b.md]\n\
             [document: c.csv]\n[… cut: 3 more characters]\n[end of document: c.csv]\n\
             [document: d.pdf: could not be read (still being processed)]"
        );
        assert_eq!(
            frame_documents(&docs[..1], 100),
            "[document: a.txt]\nhéllo\n[end of document: a.txt]"
        );
    }
}
