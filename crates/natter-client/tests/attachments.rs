//! Attachments (CONTRACT §7.6) with the client against the real `natter serve`: upload a file
//! (streamed from disk, or bytes), send a message that carries it, the other member sees it,
//! typed refusals (415, 413, an unknown id), and a document's processing events.

mod common;

use std::time::Duration;

use common::{Natter, start_fake_upstream};
use natter_client::natter_protocol::socketio::HistoryMessage;
use natter_client::{
    AiChatSocket, AttachmentFile, ChatEvent, ChatEventStream, ChatOptions, ClientError, SendMessage,
};

fn unique(prefix: &str) -> String {
    use std::hash::{BuildHasher, RandomState};
    let n = RandomState::new().hash_one(std::time::SystemTime::now());
    format!("{prefix}-{}-{n:x}", std::process::id())
}

/// The next event `pick` accepts within `secs`.
async fn until<T>(
    events: &mut ChatEventStream,
    secs: u64,
    what: &str,
    mut pick: impl FnMut(&ChatEvent) -> Option<T>,
) -> T {
    let mut seen = Vec::new();
    let found = tokio::time::timeout(Duration::from_secs(secs), async {
        while let Some(event) = events.recv().await {
            if let Some(found) = pick(&event) {
                return Some(found);
            }
            seen.push(format!("{event:?}"));
        }
        None
    })
    .await;
    match found {
        Ok(Some(found)) => found,
        Ok(None) => panic!("the stream ended while waiting for {what}; saw {seen:?}"),
        Err(_) => panic!("timed out waiting for {what}; saw {seen:?}"),
    }
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// zlib with one stored (uncompressed) block: valid, and needs no compression crate.
fn zlib_stored(data: &[u8]) -> Vec<u8> {
    assert!(data.len() < 65536);
    let len = data.len() as u16;
    let mut out = vec![0x78, 0x01, 0x01];
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&(!len).to_le_bytes());
    out.extend_from_slice(data);
    let (mut a, mut b) = (1u32, 0u32);
    for &x in data {
        a = (a + u32::from(x)) % 65521;
        b = (b + a) % 65521;
    }
    out.extend_from_slice(&((b << 16) | a).to_be_bytes());
    out
}

/// A valid `w`×`h` RGB PNG; `seed` varies its bytes.
fn png(w: u32, h: u32, seed: u8) -> Vec<u8> {
    fn chunk(out: &mut Vec<u8>, kind: &[u8], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut body = kind.to_vec();
        body.extend_from_slice(data);
        out.extend_from_slice(&body);
        out.extend_from_slice(&crc32(&body).to_be_bytes());
    }
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    let mut rows = Vec::new();
    for y in 0..h {
        rows.push(0);
        for x in 0..w * 3 {
            rows.push(
                (x as u8)
                    .wrapping_mul(7)
                    .wrapping_add(y as u8)
                    .wrapping_add(seed),
            );
        }
    }
    let mut out = vec![0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a];
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(&mut out, b"IDAT", &zlib_stored(&rows));
    chunk(&mut out, b"IEND", &[]);
    out
}

#[tokio::test]
async fn upload_send_and_see_attachments() {
    let upstream = start_fake_upstream().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let natter = Natter::start(
        &upstream,
        dir.path(),
        &["--ai-mode", "off", "--max-attachment-bytes", "65536"],
    )
    .await;
    let chat_id = unique("att");
    let (ann, mut ann_events) =
        AiChatSocket::connect(ChatOptions::new(&natter.url, &chat_id).user_id("ann"))
            .await
            .expect("ann connects");
    let (bob, mut bob_events) =
        AiChatSocket::connect(ChatOptions::new(&natter.url, &chat_id).user_id("bob"))
            .await
            .expect("bob connects");

    // A PNG named .txt, streamed from disk: the type comes from the bytes.
    let bytes = png(12, 7, 1);
    let path = dir.path().join("picture.txt");
    std::fs::write(&path, &bytes).expect("write the file");
    let uploaded = ann.upload_file(&path).await.expect("uploaded");
    assert_eq!(uploaded.mime_type, "image/png");
    assert_eq!(uploaded.name, "picture.txt");
    assert_eq!(uploaded.size, bytes.len() as u64);
    assert_eq!(uploaded.sha256.len(), 64, "{uploaded:?}");
    assert_eq!(uploaded.url, format!("/api/v1/attachments/{}", uploaded.id));
    // The same bytes again, from memory: the same attachment.
    let again = ann
        .upload_attachment(AttachmentFile::from_bytes("again.png", bytes.clone()))
        .await
        .expect("uploaded again");
    assert_eq!(again.id, uploaded.id);

    let sent = ann
        .send_message(SendMessage::text("look at this").attach(&uploaded))
        .await
        .expect("sent with the attachment");
    assert!(sent.ok);
    let relayed = until(&mut bob_events, 10, "ann's message", |e| match e {
        ChatEvent::ChatMessage(m) if m.text == "look at this" => Some(m.clone()),
        _ => None,
    })
    .await;
    let shown = relayed
        .attachments
        .expect("the message lists its attachment");
    assert_eq!(shown.len(), 1);
    assert_eq!(shown[0].id, uploaded.id);
    assert_eq!(shown[0].mime_type, "image/png");
    assert_eq!(shown[0].size, bytes.len() as u64);
    assert_eq!((shown[0].width, shown[0].height), (Some(12), Some(7)));

    // A message of only a file (no text) is fine too.
    ann.send_message(SendMessage::text("").attach(uploaded.id.as_str()))
        .await
        .expect("a file alone");

    // Refusals, typed with the server's code and status.
    let elf = [&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0][..], &[1u8; 120]].concat();
    let refused = ann
        .upload_attachment(AttachmentFile::from_bytes("cat.png", elf))
        .await
        .expect_err("an executable is refused");
    assert!(
        matches!(&refused, ClientError::Http { status: 415, code, .. } if code == "unsupported_media_type"),
        "{refused:?}"
    );
    let big = [png(2, 2, 0), vec![0x41; 70_000]].concat();
    let refused = ann
        .upload_attachment(AttachmentFile::from_bytes("big.png", big))
        .await
        .expect_err("over --max-attachment-bytes");
    assert!(
        matches!(&refused, ClientError::Http { status: 413, .. }),
        "{refused:?}"
    );
    assert_eq!(refused.code(), "too_large");
    let refused = ann
        .send_message(SendMessage::text("ghost").attach("no-such-attachment"))
        .await
        .expect_err("an unknown id");
    assert_eq!(refused.code(), "not_found", "{refused}");
    let missing = ann
        .upload_file(dir.path().join("nope.png"))
        .await
        .expect_err("no such file");
    assert_eq!(missing.code(), "io_error", "{missing}");

    // A document is read after upload; members hear how it went.
    let notes = ann
        .upload_attachment(AttachmentFile::from_bytes(
            "notes.md",
            "# Notes\n\nread me\n".as_bytes().to_vec(),
        ))
        .await
        .expect("a document");
    assert_eq!(notes.mime_type.split(';').next(), Some("text/markdown"));
    let state = notes.processing.as_ref().map(|p| p.status.as_str());
    assert!(
        matches!(state, Some("processing" | "complete")),
        "{notes:?}"
    );
    assert_eq!(uploaded.processing, None, "an image has no processing");
    let done = until(
        &mut ann_events,
        20,
        "the document's processing",
        |e| match e {
            ChatEvent::AttachmentProcessing(p)
                if p.attachment_id == notes.id && p.status != "processing" =>
            {
                Some(p.clone())
            }
            _ => None,
        },
    )
    .await;
    assert_eq!(done.status, "complete", "{done:?}");
    assert!(done.chars.unwrap_or(0) > 0, "{done:?}");

    // A later joiner sees the attachment in the join ack's history.
    let (_carol, mut carol_events) =
        AiChatSocket::connect(ChatOptions::new(&natter.url, &chat_id).user_id("carol"))
            .await
            .expect("carol connects");
    let history = until(&mut carol_events, 10, "carol's join", |e| match e {
        ChatEvent::Joined(ack) => Some(ack.messages.clone()),
        _ => None,
    })
    .await;
    let with_file = history.iter().find_map(|m| match m {
        HistoryMessage::User(m) if m.text == "look at this" => m.attachments.clone(),
        _ => None,
    });
    assert_eq!(
        with_file.map(|a| a.into_iter().map(|a| a.id).collect::<Vec<_>>()),
        Some(vec![uploaded.id.clone()])
    );
    ann.close().await;
    bob.close().await;
}
