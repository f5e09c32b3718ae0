//! Attachments kept with their chat (CONTRACT §7.6).

use std::sync::Arc;

use natter_core::attachments::{Attachment, Processing, sha256_hex};
use natter_core::chat::ChatKey;
use natter_core::store::{PutAttachment, Store};

use crate::fixtures::*;

fn meta(chat: &ChatKey, id: &str, bytes: &[u8], at: i64) -> Attachment {
    Attachment {
        id: id.into(),
        chat: chat.clone(),
        name: format!("{id}.png"),
        mime_type: "image/png".into(),
        size: bytes.len() as u64,
        sha256: sha256_hex(bytes),
        created_by: "u".into(),
        created_at: at,
        width: Some(3),
        height: Some(2),
        processing: Processing::None,
        referenced: false,
    }
}

async fn put(store: &dyn Store, a: &Attachment, bytes: &[u8], quota: Option<u64>) -> PutAttachment {
    store
        .put_attachment(a, bytes, quota)
        .await
        .expect("put_attachment")
}

pub async fn attachments_are_kept_with_their_chat(store: Arc<dyn Store>) {
    let store = &*store;
    let chat = ChatKey::new("org-a", "c1");
    let other = ChatKey::new("org-a", "c2");
    let foreign = ChatKey::new("org-b", "c1");
    for c in [&chat, &other, &foreign] {
        create(store, c, &created_by("u")).await;
    }
    let bytes = b"\x89PNG\r\n\x1a\nfirst".to_vec();
    let a = meta(&chat, "att-1", &bytes, 1_000);
    assert_eq!(
        put(store, &a, &bytes, None).await,
        PutAttachment::Stored(a.clone()),
        "Attachments: a new attachment is stored as given"
    );
    assert_eq!(
        store.attachment("org-a", "att-1").await.unwrap(),
        Some(a.clone()),
        "Attachments: metadata reads back"
    );
    assert_eq!(
        store.attachment_bytes("org-a", "att-1").await.unwrap(),
        Some(bytes.clone()),
        "Attachments: bytes read back"
    );
    assert_eq!(
        store.attachment("org-b", "att-1").await.unwrap(),
        None,
        "Isolation: an attachment of another org is not there"
    );
    assert_eq!(
        store.attachment_bytes("org-b", "att-1").await.unwrap(),
        None
    );

    // The same bytes in the same chat: the first one; in another chat: a new one.
    let again = meta(&chat, "att-2", &bytes, 2_000);
    assert_eq!(
        put(store, &again, &bytes, None).await,
        PutAttachment::Duplicate(a.clone()),
        "Attachments: the same sha256 in the same chat is stored once"
    );
    assert_eq!(store.attachment("org-a", "att-2").await.unwrap(), None);
    let elsewhere = meta(&other, "att-3", &bytes, 2_000);
    assert!(matches!(
        put(store, &elsewhere, &bytes, None).await,
        PutAttachment::Stored(_)
    ));
    let foreign_copy = meta(&foreign, "att-4", &bytes, 2_000);
    assert!(matches!(
        put(store, &foreign_copy, &bytes, None).await,
        PutAttachment::Stored(_)
    ));

    // Quota: what the chat holds plus the new bytes.
    let used = store.chat_attachment_bytes(&chat).await.unwrap();
    assert_eq!(
        used,
        bytes.len() as u64,
        "Attachments: per-chat total bytes"
    );
    let big = vec![b'x'; 100];
    let over = meta(&chat, "att-5", &big, 3_000);
    assert_eq!(
        put(store, &over, &big, Some(used + 99)).await,
        PutAttachment::OverQuota { used },
        "Attachments: over the quota is refused and stores nothing"
    );
    assert_eq!(store.attachment("org-a", "att-5").await.unwrap(), None);
    assert!(matches!(
        put(store, &over, &big, Some(used + 100)).await,
        PutAttachment::Stored(_)
    ));
    assert_eq!(
        store.chat_attachment_bytes(&chat).await.unwrap(),
        used + 100
    );

    // Processing state and text.
    let mut doc = meta(&chat, "doc-1", b"hello text", 4_000);
    doc.mime_type = "text/plain".into();
    doc.width = None;
    doc.height = None;
    doc.processing = Processing::Processing;
    put(store, &doc, b"hello text", None).await;
    assert_eq!(
        store.attachments_processing(10).await.unwrap(),
        vec![doc.clone()],
        "Attachments: documents still processing are listed"
    );
    let done = Processing::Complete {
        chars: 10,
        pages: Some(1),
    };
    assert!(
        store
            .set_attachment_processing("org-a", "doc-1", &done, Some("hello text"))
            .await
            .unwrap()
    );
    assert_eq!(
        store
            .attachment("org-a", "doc-1")
            .await
            .unwrap()
            .unwrap()
            .processing,
        done
    );
    assert_eq!(
        store
            .attachment_text("org-a", "doc-1")
            .await
            .unwrap()
            .as_deref(),
        Some("hello text")
    );
    let failed = Processing::Error {
        code: "timeout".into(),
        message: "too slow".into(),
    };
    assert!(
        store
            .set_attachment_processing("org-a", "doc-1", &failed, None)
            .await
            .unwrap()
    );
    assert_eq!(
        store
            .attachment("org-a", "doc-1")
            .await
            .unwrap()
            .unwrap()
            .processing,
        failed
    );
    assert!(
        !store
            .set_attachment_processing("org-b", "doc-1", &done, None)
            .await
            .unwrap(),
        "Isolation: another org cannot set the state"
    );
    assert!(store.attachments_processing(10).await.unwrap().is_empty());

    // Orphans: unreferenced and older than the cutoff.
    store
        .mark_attachments_referenced(&chat, &["att-1".to_owned()])
        .await
        .unwrap();
    assert!(
        store
            .attachment("org-a", "att-1")
            .await
            .unwrap()
            .unwrap()
            .referenced
    );
    let n = store.delete_orphan_attachments(3_500, 100).await.unwrap();
    // att-3 (c2, 2000), att-4 (org-b, 2000), att-5 (c1, 3000); not att-1 (referenced) nor doc-1 (newer).
    assert_eq!(n, 3, "Attachments: the sweep deletes unreferenced old ones");
    assert!(store.attachment("org-a", "att-1").await.unwrap().is_some());
    assert!(store.attachment("org-a", "doc-1").await.unwrap().is_some());
    assert!(store.attachment("org-a", "att-5").await.unwrap().is_none());
    assert!(store.attachment("org-b", "att-4").await.unwrap().is_none());
    assert_eq!(
        store.delete_orphan_attachments(3_500, 100).await.unwrap(),
        0
    );

    // Deleting the chat deletes its attachments.
    assert!(store.delete_chat(&chat).await.unwrap());
    assert!(
        store.attachment("org-a", "att-1").await.unwrap().is_none()
            && store
                .attachment_bytes("org-a", "att-1")
                .await
                .unwrap()
                .is_none()
            && store.attachment("org-a", "doc-1").await.unwrap().is_none(),
        "Real delete: a deleted chat's attachments are gone"
    );
    create(store, &chat, &created_by("u")).await;
    assert_eq!(store.chat_attachment_bytes(&chat).await.unwrap(), 0);
    assert!(
        matches!(
            put(store, &meta(&chat, "att-6", &bytes, 5_000), &bytes, None).await,
            PutAttachment::Stored(_)
        ),
        "a recreated chat takes the same bytes again"
    );

    // A chat that does not exist takes none.
    let ghost = ChatKey::new("org-a", "ghost");
    assert!(
        store
            .put_attachment(&meta(&ghost, "att-7", b"x", 1), b"x", None)
            .await
            .is_err(),
        "Attachments: a chat that does not exist takes no attachment"
    );
}
