//! Attachments handed to the model (CONTRACT §7.6): a turn waits for its message's document,
//! is told when it could not be read, gets images as image parts, and counts them in the
//! context budget.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use natter_attachments::extract::{ExtractError, Extracted};
use natter_core::attachments::Upload;
use natter_core::bus_memory::MemoryBus;
use natter_core::chat::NewChat;
use natter_core::presence_memory::MemoryPresence;
use natter_core::processing::{DocumentExtractor, InProcessExtractor, Progress};
use natter_core::provider::{
    CompletionRequest, PromptMessage, Provider, ProviderError, ProviderEvent, ProviderStream, Role,
};
use natter_core::store_memory::MemoryStore;
use natter_core::{ChatCore, ChatKey, CoreConfig, Identity, Seams, Source, UserMessageInput};

/// Records each request's messages and answers `ok`.
#[derive(Default)]
struct Recording(Mutex<Vec<Vec<PromptMessage>>>);

#[async_trait]
impl Provider for Recording {
    fn name(&self) -> &str {
        "recording"
    }

    async fn stream(&self, req: CompletionRequest) -> Result<ProviderStream, ProviderError> {
        self.0.lock().unwrap().push(req.messages);
        let events = vec![
            ProviderEvent::TextDelta("ok".into()),
            ProviderEvent::Finish("stop".into()),
        ];
        Ok(Box::pin(futures::stream::iter(events.into_iter().map(Ok))))
    }
}

impl Recording {
    /// Waits for the `n`th request; answers its messages.
    async fn request(&self, n: usize) -> Vec<PromptMessage> {
        for _ in 0..500 {
            if let Some(r) = self.0.lock().unwrap().get(n - 1) {
                return r.clone();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("no request {n}");
    }
}

/// Extracts as usual, after `delay`.
struct Slow(Duration);

#[async_trait]
impl DocumentExtractor for Slow {
    async fn extract(
        &self,
        mime_type: &str,
        bytes: Vec<u8>,
        progress: Progress,
    ) -> Result<Extracted, ExtractError> {
        tokio::time::sleep(self.0).await;
        InProcessExtractor::default()
            .extract(mime_type, bytes, progress)
            .await
    }
}

struct Setup {
    core: ChatCore,
    model: Arc<Recording>,
    chat: ChatKey,
    ann: Identity,
}

async fn setup(config: CoreConfig, extract_delay: Duration) -> Setup {
    let model = Arc::new(Recording::default());
    let seams = Seams::single_node(
        Arc::new(MemoryStore::new()),
        Arc::new(MemoryBus::new(256)),
        Arc::new(MemoryPresence::default()),
        model.clone(),
    )
    .with_extractor(Arc::new(Slow(extract_delay)));
    let core = ChatCore::from_seams(config, seams);
    let chat = ChatKey::new("org", "c");
    let ann = Identity::new("org", "ann");
    core.open_chat(&ann, &chat, Some(NewChat::default()))
        .await
        .unwrap();
    Setup {
        core,
        model,
        chat,
        ann,
    }
}

impl Setup {
    async fn upload(&self, name: &str, bytes: &[u8]) -> String {
        let up = Upload {
            name: name.into(),
            claimed_type: None,
            bytes: bytes.to_vec(),
            sha256: None,
        };
        self.core
            .upload_attachment(&self.ann, &Source::default(), &self.chat, up)
            .await
            .unwrap()
            .attachment
            .id
    }

    async fn post(&self, id: &str, text: &str, attachments: &[&str]) {
        let input = UserMessageInput {
            message_id: id.into(),
            text: text.into(),
            parts: None,
            request_id: None,
            trace_id: None,
            tools: Vec::new(),
            attachments: attachments.iter().map(|a| a.to_string()).collect(),
        };
        self.core
            .post_user_message(&self.ann, &Source::default(), &self.chat, input)
            .await
            .unwrap();
    }
}

/// A PNG's signature and IHDR: `width` x `height`, enough for the sniffer.
fn png(width: u32, height: u32) -> Vec<u8> {
    let mut b = vec![0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13];
    b.extend_from_slice(b"IHDR");
    b.extend_from_slice(&width.to_be_bytes());
    b.extend_from_slice(&height.to_be_bytes());
    b.extend_from_slice(&[8, 2, 0, 0, 0, 0, 0, 0, 0]);
    b
}

fn last_user(messages: &[PromptMessage]) -> &PromptMessage {
    messages
        .iter()
        .rev()
        .find(|m| m.role == Role::User)
        .unwrap()
}

#[tokio::test]
async fn a_turn_waits_for_its_document_and_gets_its_text() {
    let s = setup(CoreConfig::default(), Duration::from_millis(300)).await;
    let doc = s.upload("notes.txt", b"hello there").await;
    s.post("m1", "read this", &[&doc]).await;
    let messages = s.model.request(1).await;
    assert_eq!(
        last_user(&messages).content,
        "read this\n\n[document: notes.txt]\nhello there\n[end of document: notes.txt]"
    );
}

#[tokio::test]
async fn past_the_timeout_the_model_is_told_the_document_could_not_be_read() {
    let mut config = CoreConfig::default();
    config.attachments.processing_timeout = Duration::from_millis(200);
    let s = setup(config, Duration::from_secs(5)).await;
    let doc = s.upload("slow.txt", b"too late").await;
    let started = std::time::Instant::now();
    s.post("m1", "read this", &[&doc]).await;
    let messages = s.model.request(1).await;
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(
        last_user(&messages).content,
        "read this\n\n[document: slow.txt: could not be read (still being processed)]"
    );
}

#[tokio::test]
async fn images_go_as_parts_and_older_ones_as_lines_when_the_budget_is_short() {
    let image = png(4, 2);
    // The newest message with its image (6 + 33 bytes) and the reply fit; the older message
    // with its image does not, with an `[image: …]` line instead it does.
    let config = CoreConfig {
        context_max_bytes: 70,
        ..CoreConfig::default()
    };
    let s = setup(config, Duration::ZERO).await;
    let img = s.upload("a.png", &image).await;
    s.post("m1", "first", &[&img]).await;
    let one = s.model.request(1).await;
    let m = last_user(&one);
    assert_eq!(m.content, "first");
    assert_eq!(m.images.len(), 1);
    assert_eq!(&*m.images[0].data, &image[..]);
    assert_eq!((m.images[0].width, m.images[0].height), (4, 2));
    assert_eq!(m.images[0].mime_type, "image/png");

    s.post("m2", "second", &[&img]).await;
    let two = s.model.request(2).await;
    let users: Vec<&PromptMessage> = two.iter().filter(|m| m.role == Role::User).collect();
    assert_eq!(users.len(), 2, "{two:?}");
    assert_eq!(users[0].content, "first\n[image: a.png, 4x2]");
    assert!(users[0].images.is_empty());
    assert_eq!(users[1].content, "second");
    assert_eq!(users[1].images.len(), 1);
}
