//! Document processing (CONTRACT §7.6): after a document (PDF, plain text, Markdown, CSV,
//! JSON) is uploaded, its text is extracted in the background and kept in the store, so it
//! is extracted once (the same bytes in the same chat are one attachment) and read by any node.
//!
//! - How text is extracted is a seam, [`DocumentExtractor`]: the server passes one that runs
//!   PDFs in a child process bounded in time and memory; the core's default,
//!   [`InProcessExtractor`], runs [`natter_attachments::extract`] on a blocking thread (fine
//!   for tests and embedders, but a hostile PDF can only be abandoned there, not stopped).
//! - At most [`MAX_CONCURRENT`] extractions run at once per node; the rest wait their turn.
//! - Members are told as it goes, with live events ([`LiveEvent::AttachmentProcessing`]):
//!   started, progress, then complete or error. The state is also in the attachment's
//!   metadata, so a client that was away learns it from there.
//! - After a restart, documents left `processing` are processed again.
//! - [`ChatCore::wait_for_document`] lets a turn wait for a document's text.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use natter_attachments::extract::{
    CODE_TIMEOUT, DEFAULT_MAX_TEXT_BYTES, ExtractError, Extracted, extract,
};
use tokio::sync::{Semaphore, watch};
use tracing::{debug, warn};

use crate::attachments::{Attachment, Processing};
use crate::chat::ChatKey;
use crate::core::{ChatCore, Inner};
use crate::error::CoreError;
use crate::event::{LiveEvent, ProcessingUpdate};

/// Extractions running at once on one node (the machine's cores serve chats too).
pub const MAX_CONCURRENT: usize = 2;

/// Called with a percentage as an extraction goes.
pub type Progress = Arc<dyn Fn(u8) + Send + Sync>;

/// Turns a document's bytes into text. Implementations bound time and memory as they can.
#[async_trait]
pub trait DocumentExtractor: Send + Sync + 'static {
    async fn extract(
        &self,
        mime_type: &str,
        bytes: Vec<u8>,
        progress: Progress,
    ) -> Result<Extracted, ExtractError>;
}

/// Extracts on a blocking thread of this process, giving up after `timeout`. A thread cannot
/// be killed, so a parser that never returns keeps its thread; the server uses a child
/// process for PDFs instead.
#[derive(Debug, Clone)]
pub struct InProcessExtractor {
    pub timeout: Duration,
    pub max_text_bytes: usize,
}

impl Default for InProcessExtractor {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(20),
            max_text_bytes: DEFAULT_MAX_TEXT_BYTES,
        }
    }
}

#[async_trait]
impl DocumentExtractor for InProcessExtractor {
    async fn extract(
        &self,
        mime_type: &str,
        bytes: Vec<u8>,
        progress: Progress,
    ) -> Result<Extracted, ExtractError> {
        let mime = mime_type.to_owned();
        let max = self.max_text_bytes;
        let job =
            tokio::task::spawn_blocking(move || extract(&mime, &bytes, max, &mut |p| progress(p)));
        match tokio::time::timeout(self.timeout, job).await {
            Ok(Ok(result)) => result,
            Ok(Err(e)) => Err(ExtractError::new(
                natter_attachments::extract::CODE_UNREADABLE,
                format!("the extraction stopped: {e}"),
            )),
            Err(_) => Err(ExtractError::new(
                CODE_TIMEOUT,
                format!(
                    "reading the document took longer than {} s",
                    self.timeout.as_secs()
                ),
            )),
        }
    }
}

/// A node's processing state: the extractor, the concurrency bound, what runs here.
pub(crate) struct DocumentProcessing {
    extractor: Arc<dyn DocumentExtractor>,
    permits: Arc<Semaphore>,
    /// Attachment ids being processed (or waiting for a permit) on this node.
    in_flight: Mutex<HashSet<String>>,
    /// Bumped whenever a document finishes here, to wake waiters early.
    finished: watch::Sender<u64>,
}

impl DocumentProcessing {
    pub(crate) fn new(extractor: Arc<dyn DocumentExtractor>) -> Self {
        Self {
            extractor,
            permits: Arc::new(Semaphore::new(MAX_CONCURRENT)),
            in_flight: Mutex::new(HashSet::new()),
            finished: watch::channel(0).0,
        }
    }

    /// Claims `id` for this node; false if it is already being processed here.
    fn claim(&self, id: &str) -> bool {
        match self.in_flight.lock() {
            Ok(mut set) => set.insert(id.to_owned()),
            Err(poisoned) => poisoned.into_inner().insert(id.to_owned()),
        }
    }

    fn release(&self, id: &str) {
        match self.in_flight.lock() {
            Ok(mut set) => set.remove(id),
            Err(poisoned) => poisoned.into_inner().remove(id),
        };
        self.finished.send_modify(|n| *n = n.wrapping_add(1));
    }
}

/// A document's state, as a turn reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentState {
    pub attachment: Attachment,
    /// The extracted text, when `attachment.processing` is `Complete`.
    pub text: Option<String>,
}

async fn publish(inner: &Inner, chat: &ChatKey, id: &str, update: ProcessingUpdate) {
    inner
        .publish_live(
            chat,
            LiveEvent::AttachmentProcessing {
                attachment_id: id.into(),
                update,
            },
            None,
        )
        .await;
}

impl ChatCore {
    /// Starts processing `attachment` in the background if it is a document still waiting for
    /// it and not already being processed on this node. Called after an upload stored it.
    pub fn start_processing(&self, attachment: &Attachment) {
        if attachment.processing != Processing::Processing {
            return;
        }
        if !self.inner.processing.claim(&attachment.id) {
            return;
        }
        let core = self.clone();
        let attachment = attachment.clone();
        // Not a tracked background task: shutdown need not wait for it, a restart resumes it.
        tokio::spawn(async move {
            let id = attachment.id.clone();
            core.process(attachment).await;
            core.inner.processing.release(&id);
        });
    }

    async fn process(&self, attachment: Attachment) {
        let inner = &self.inner;
        let Ok(_permit) = inner.processing.permits.clone().acquire_owned().await else {
            return;
        };
        let chat = attachment.chat.clone();
        let id = attachment.id.as_str();
        // Another node (or an earlier run) may have finished it meanwhile.
        match inner.store.attachment(&chat.org, id).await {
            Ok(Some(a)) if a.processing == Processing::Processing => {}
            Ok(_) => return,
            Err(e) => {
                warn!(attachment = id, error = %e, "reading an attachment to process failed");
                return;
            }
        }
        let bytes = match inner.store.attachment_bytes(&chat.org, id).await {
            Ok(Some(b)) => b,
            Ok(None) => return,
            Err(e) => {
                warn!(attachment = id, error = %e, "reading a document's bytes failed");
                return;
            }
        };
        publish(inner, &chat, id, ProcessingUpdate::Started).await;
        let started = std::time::Instant::now();
        // Progress goes through a channel so the extractor's callback never waits on the bus.
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<u8>();
        let progress: Progress = Arc::new(move |p| {
            let _ = tx.send(p);
        });
        let forward = {
            let core = self.clone();
            let chat = chat.clone();
            let id = id.to_owned();
            async move {
                let mut last = None;
                while let Some(percent) = rx.recv().await {
                    // The last step is the completion event itself.
                    if percent >= 100 || last == Some(percent) {
                        continue;
                    }
                    last = Some(percent);
                    publish(
                        &core.inner,
                        &chat,
                        &id,
                        ProcessingUpdate::Progress { percent },
                    )
                    .await;
                }
            }
        };
        let extraction = inner
            .processing
            .extractor
            .extract(&attachment.mime_type, bytes, progress);
        let (result, ()) = tokio::join!(extraction, forward);
        let (state, text, update) = match result {
            Ok(x) => (
                Processing::Complete {
                    chars: x.chars,
                    pages: x.pages,
                },
                Some(x.text),
                ProcessingUpdate::Complete {
                    chars: x.chars,
                    pages: x.pages,
                },
            ),
            Err(e) => (
                Processing::Error {
                    code: e.code.clone(),
                    message: e.message.clone(),
                },
                None,
                ProcessingUpdate::Error {
                    code: e.code,
                    message: e.message,
                },
            ),
        };
        debug!(
            attachment = id,
            status = state.status(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "document processed"
        );
        // Stored before members are told, so whoever reacts to the event reads the result.
        let mut stored = false;
        for attempt in 0..3u32 {
            match inner
                .store
                .set_attachment_processing(&chat.org, id, &state, text.as_deref())
                .await
            {
                Ok(true) => {
                    stored = true;
                    break;
                }
                // Its chat was deleted meanwhile: nobody to tell.
                Ok(false) => return,
                Err(e) => {
                    warn!(attachment = id, attempt, error = %e, "storing a document's text failed");
                    tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
                }
            }
        }
        if stored {
            publish(inner, &chat, id, update).await;
        }
    }

    /// Processes again the documents a previous run of a node left `processing` (a crash or a
    /// restart mid-extraction). Several nodes starting together may each take one; the result
    /// is the same, so that only costs time.
    pub(crate) async fn resume_processing(&self) {
        match self.inner.store.attachments_processing(1000).await {
            Ok(left) => {
                if !left.is_empty() {
                    debug!(count = left.len(), "processing documents left from before");
                }
                for a in &left {
                    self.start_processing(a);
                }
            }
            Err(e) => {
                debug!(error = %e, "listing documents left processing failed");
            }
        }
    }

    /// Document `id` of `chat` with its text, once its processing has ended or `timeout` has
    /// passed (then `attachment.processing` is still `Processing`). `not_found` if `chat` has
    /// no such attachment. Waits across nodes: it reads the store, woken early by a document
    /// finishing on this node.
    pub async fn wait_for_document(
        &self,
        chat: &ChatKey,
        id: &str,
        timeout: Duration,
    ) -> Result<DocumentState, CoreError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut finished = self.inner.processing.finished.subscribe();
        loop {
            let attachment = match self.inner.store.attachment(&chat.org, id).await? {
                Some(a) if a.chat == *chat => a,
                _ => {
                    return Err(CoreError::rejected(
                        natter_protocol::ErrorCode::NotFound,
                        format!("chat `{}` has no attachment `{id}`", chat.chat_id),
                    ));
                }
            };
            match attachment.processing {
                Processing::Complete { .. } => {
                    let text = self.inner.store.attachment_text(&chat.org, id).await?;
                    return Ok(DocumentState { attachment, text });
                }
                Processing::Processing if tokio::time::Instant::now() < deadline => {}
                _ => {
                    return Ok(DocumentState {
                        attachment,
                        text: None,
                    });
                }
            }
            // Another node's result shows up in the store only: poll, but wake on a local one.
            let tick = tokio::time::sleep_until(
                deadline.min(tokio::time::Instant::now() + Duration::from_millis(250)),
            );
            tokio::select! {
                _ = tick => {}
                _ = finished.changed() => {}
            }
        }
    }
}
