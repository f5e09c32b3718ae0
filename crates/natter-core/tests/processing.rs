//! Document processing in the core (CONTRACT §7.6): an upload of a document is extracted once
//! in the background, members get started → progress → complete/error as live events, the
//! result is stored, a turn can wait for it, and a restart processes what was left.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use natter_attachments::extract::{ExtractError, Extracted};
use natter_core::attachments::{Processing, Upload};
use natter_core::bus::Bus;
use natter_core::bus_memory::MemoryBus;
use natter_core::chat::NewChat;
use natter_core::event::{BusMessage, LiveEvent, ProcessingUpdate};
use natter_core::presence_memory::MemoryPresence;
use natter_core::processing::{DocumentExtractor, InProcessExtractor, Progress};
use natter_core::provider::{CompletionRequest, Provider, ProviderError, ProviderStream};
use natter_core::store::Store;
use natter_core::store_memory::MemoryStore;
use natter_core::{ChatCore, ChatKey, CoreConfig, Identity, Seams, Source};

struct NoModel;

#[async_trait]
impl Provider for NoModel {
    fn name(&self) -> &str {
        "none"
    }

    async fn stream(&self, _req: CompletionRequest) -> Result<ProviderStream, ProviderError> {
        Ok(Box::pin(futures::stream::empty()))
    }
}

/// Counts calls; reports 50 %, then answers after `delay`; text `boom` fails.
struct Counting {
    calls: AtomicUsize,
    delay: Duration,
}

#[async_trait]
impl DocumentExtractor for Counting {
    async fn extract(
        &self,
        mime_type: &str,
        bytes: Vec<u8>,
        progress: Progress,
    ) -> Result<Extracted, ExtractError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        progress(50);
        tokio::time::sleep(self.delay).await;
        if bytes == b"boom" {
            return Err(ExtractError::new("unreadable", "boom"));
        }
        InProcessExtractor::default()
            .extract(mime_type, bytes, progress)
            .await
    }
}

fn core_on(
    store: Arc<MemoryStore>,
    extractor: Arc<dyn DocumentExtractor>,
) -> (ChatCore, Arc<MemoryBus>) {
    let bus = Arc::new(MemoryBus::new(256));
    let seams = Seams::single_node(
        store,
        bus.clone(),
        Arc::new(MemoryPresence::default()),
        Arc::new(NoModel),
    )
    .with_extractor(extractor);
    (ChatCore::from_seams(CoreConfig::default(), seams), bus)
}

fn text_upload(name: &str, body: &[u8]) -> Upload {
    Upload {
        name: name.into(),
        claimed_type: Some("text/plain".into()),
        bytes: body.to_vec(),
        sha256: None,
    }
}

async fn updates_for(
    rx: &mut natter_core::ring::Receiver<Arc<BusMessage>>,
    id: &str,
) -> Vec<ProcessingUpdate> {
    let mut out = Vec::new();
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("an event in time")
            .expect("bus open");
        if let BusMessage::Live {
            event:
                LiveEvent::AttachmentProcessing {
                    attachment_id,
                    update,
                },
            ..
        } = &*msg
            && &**attachment_id == id
        {
            let end = matches!(
                update,
                ProcessingUpdate::Complete { .. } | ProcessingUpdate::Error { .. }
            );
            out.push(update.clone());
            if end {
                return out;
            }
        }
    }
}

#[tokio::test]
async fn a_document_is_processed_once_and_members_are_told() {
    let store = Arc::new(MemoryStore::new());
    let extractor = Arc::new(Counting {
        calls: AtomicUsize::new(0),
        delay: Duration::from_millis(50),
    });
    let (core, bus) = core_on(store.clone(), extractor.clone());
    let chat = ChatKey::new("org", "docs");
    let ann = Identity::new("org", "ann");
    core.open_chat(&ann, &chat, Some(NewChat::default()))
        .await
        .unwrap();
    let mut sub = bus.subscribe(&chat).await.unwrap();

    let up = core
        .upload_attachment(
            &ann,
            &Source::default(),
            &chat,
            text_upload("a.txt", "héllo".as_bytes()),
        )
        .await
        .unwrap();
    assert_eq!(up.attachment.processing, Processing::Processing);
    let id = up.attachment.id.clone();
    let updates = updates_for(&mut sub.rx, &id).await;
    assert_eq!(
        updates,
        vec![
            ProcessingUpdate::Started,
            ProcessingUpdate::Progress { percent: 50 },
            ProcessingUpdate::Complete {
                chars: 5,
                pages: None
            },
        ]
    );
    let state = core
        .wait_for_document(&chat, &id, Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(state.text.as_deref(), Some("héllo"));
    assert_eq!(
        state.attachment.processing,
        Processing::Complete {
            chars: 5,
            pages: None
        }
    );

    // The same bytes again: the same attachment, not processed again.
    let again = core
        .upload_attachment(
            &ann,
            &Source::default(),
            &chat,
            text_upload("b.txt", "héllo".as_bytes()),
        )
        .await
        .unwrap();
    assert!(again.duplicate);
    assert_eq!(again.attachment.id, id);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(extractor.calls.load(Ordering::SeqCst), 1);

    // A failure is stored and told.
    let bad = core
        .upload_attachment(
            &ann,
            &Source::default(),
            &chat,
            text_upload("c.txt", b"boom"),
        )
        .await
        .unwrap();
    let updates = updates_for(&mut sub.rx, &bad.attachment.id).await;
    assert_eq!(
        updates.last(),
        Some(&ProcessingUpdate::Error {
            code: "unreadable".into(),
            message: "boom".into()
        })
    );
    let state = core
        .wait_for_document(&chat, &bad.attachment.id, Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(state.text, None);
    assert!(matches!(
        state.attachment.processing,
        Processing::Error { .. }
    ));

    // Another chat's id is not found.
    let other = ChatKey::new("org", "other");
    assert!(
        core.wait_for_document(&other, &id, Duration::from_millis(10))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn a_turn_waits_for_a_slow_document_up_to_its_timeout() {
    let store = Arc::new(MemoryStore::new());
    let extractor = Arc::new(Counting {
        calls: AtomicUsize::new(0),
        delay: Duration::from_millis(600),
    });
    let (core, _bus) = core_on(store, extractor);
    let chat = ChatKey::new("org", "slow");
    let ann = Identity::new("org", "ann");
    core.open_chat(&ann, &chat, Some(NewChat::default()))
        .await
        .unwrap();
    let up = core
        .upload_attachment(
            &ann,
            &Source::default(),
            &chat,
            text_upload("a.txt", b"slow text"),
        )
        .await
        .unwrap();
    let id = up.attachment.id;
    let early = core
        .wait_for_document(&chat, &id, Duration::from_millis(100))
        .await
        .unwrap();
    assert_eq!(early.attachment.processing, Processing::Processing);
    assert_eq!(early.text, None);
    let done = core
        .wait_for_document(&chat, &id, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(done.text.as_deref(), Some("slow text"));
}

#[tokio::test]
async fn documents_left_processing_are_processed_after_a_restart() {
    let store = Arc::new(MemoryStore::new());
    // First node: an extractor that never finishes (the node "dies" mid-extraction).
    let stuck = Arc::new(Counting {
        calls: AtomicUsize::new(0),
        delay: Duration::from_secs(3600),
    });
    let chat = ChatKey::new("org", "restart");
    let ann = Identity::new("org", "ann");
    let id = {
        let (core, _bus) = core_on(store.clone(), stuck);
        core.open_chat(&ann, &chat, Some(NewChat::default()))
            .await
            .unwrap();
        core.upload_attachment(
            &ann,
            &Source::default(),
            &chat,
            text_upload("a.txt", b"left over"),
        )
        .await
        .unwrap()
        .attachment
        .id
    };
    assert_eq!(
        store
            .attachment("org", &id)
            .await
            .unwrap()
            .unwrap()
            .processing,
        Processing::Processing
    );
    // A new node on the same store picks it up.
    let (core, _bus) = core_on(store.clone(), Arc::new(InProcessExtractor::default()));
    let state = core
        .wait_for_document(&chat, &id, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(state.text.as_deref(), Some("left over"));
}
