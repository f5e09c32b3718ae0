//! `natter store copy`: every chat of every org, with its whole log unchanged (seq, epoch,
//! times, bodies), its summary, members, read receipts, turn queue and fence, from one store
//! to another (SQLite → Postgres, Postgres → SQLite, SQLite → SQLite, …).
//!
//! Chat by chat: each chat's log is streamed page by page into one transaction on the
//! target, so a chat is copied whole or not at all and memory stays bounded by a page.
//! The target must hold no chat, unless `force` is set: then chats it already has are
//! **skipped** (left as they are, never overwritten) and reported, so an interrupted copy can
//! be run again to finish. Stop the servers using the source first: chats written during the
//! copy are copied up to the head seen when each was read.

use std::time::Instant;

use anyhow::{Context, bail};
use futures::StreamExt;
use natter_core::chat::ChatKey;
use natter_core::store::StoreError;
use natter_core::store_transfer::{EventPages, Transfer};

use crate::store::{StoreOptions, open_transfer, redact};

/// Chats listed per page of the source.
const KEYS_PAGE: usize = 200;
/// Events read and written per page.
const EVENTS_PAGE: usize = 500;

/// What a copy did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopyReport {
    pub chats: u64,
    pub events: u64,
    /// Chats the target already had (only with `force`), left untouched.
    pub skipped: Vec<ChatKey>,
}

/// Copies every chat of `from` into `to`. `progress` gets a line now and then.
pub async fn copy_chats(
    from: &dyn Transfer,
    to: &dyn Transfer,
    force: bool,
    progress: &mut (dyn FnMut(&str) + Send),
) -> anyhow::Result<CopyReport> {
    if !force && !to.chat_keys(None, 1).await?.is_empty() {
        bail!(
            "the target already holds chats; pass --force to copy into it anyway (chats it \
             already has are then skipped, never overwritten)"
        );
    }
    let mut report = CopyReport::default();
    let started = Instant::now();
    let mut last_report = Instant::now();
    let mut after: Option<ChatKey> = None;
    loop {
        let keys = from.chat_keys(after.as_ref(), KEYS_PAGE).await?;
        let Some(last) = keys.last().cloned() else {
            break;
        };
        for key in keys {
            let Some(export) = from
                .export_chat(&key)
                .await
                .with_context(|| format!("reading chat {key}"))?
            else {
                continue; // deleted since it was listed
            };
            let head = export.summary.head_seq;
            if to
                .import_chat(&export, event_pages(from, key.clone(), head))
                .await
                .with_context(|| format!("copying chat {key}"))?
            {
                report.chats += 1;
                report.events += head;
            } else {
                progress(&format!("skipped {key}: the target already has it"));
                report.skipped.push(key);
            }
            if last_report.elapsed().as_secs() >= 2 {
                last_report = Instant::now();
                progress(&format!(
                    "… {} chats ({} events) copied so far",
                    report.chats, report.events
                ));
            }
        }
        after = Some(last);
    }
    progress(&format!(
        "copied {} chats ({} events) in {:.1} s{}",
        report.chats,
        report.events,
        started.elapsed().as_secs_f64(),
        if report.skipped.is_empty() {
            String::new()
        } else {
            format!("; skipped {} the target already had", report.skipped.len())
        }
    ));
    Ok(report)
}

/// The chat's log up to `head`, a page at a time.
fn event_pages(from: &dyn Transfer, key: ChatKey, head: u64) -> EventPages<'_> {
    futures::stream::try_unfold(0u64, move |after| {
        let key = key.clone();
        async move {
            if after >= head {
                return Ok::<_, StoreError>(None);
            }
            let mut page = from.export_events(&key, after, EVENTS_PAGE).await?;
            let Some(next) = page.last().map(|e| e.event.seq) else {
                // The importer reports a log shorter than its head.
                return Ok(None);
            };
            // Written during the copy: past the head the header was read with.
            page.retain(|e| e.event.seq <= head);
            Ok(Some((page, next)))
        }
    })
    .boxed()
}

/// `natter store copy --from URL --to URL [--force]`: opens both (running their
/// migrations) and copies.
pub async fn copy_databases(
    from_url: &str,
    to_url: &str,
    force: bool,
    progress: &mut (dyn FnMut(&str) + Send),
) -> anyhow::Result<CopyReport> {
    if from_url == to_url {
        bail!("--from and --to name the same database");
    }
    let options = StoreOptions {
        sqlite_durability: natter_store_sqlite::Durability::Full,
        max_connections: Some(4),
    };
    let from = open_transfer(from_url, &options).await?;
    let to = open_transfer(to_url, &options).await?;
    progress(&format!(
        "copying every chat from {} to {}",
        redact(from_url),
        redact(to_url)
    ));
    copy_chats(&*from, &*to, force, progress).await
}
