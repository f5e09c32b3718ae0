//! Real generations with the real model.

mod common;

use std::ops::ControlFlow;

use natter_local_model::chat_template::{self, TemplateMessage};
use natter_local_model::model::FinishReason;
use natter_local_model::{LocalModel, SamplingOptions, WeightFormat};

fn prompt(model: &LocalModel, text: &str) -> Vec<u32> {
    let messages = [TemplateMessage {
        role: "user",
        content: text,
    }];
    chat_template::encode(model.tokenizer(), &messages)
        .unwrap()
        .ids()
}

#[test]
fn greedy_reply_is_english_and_stops_on_its_own() {
    let Some(path) = common::model_path() else {
        return;
    };
    let mut model = LocalModel::load(&path, WeightFormat::default()).unwrap();
    let ids = prompt(
        &model,
        "What is the capital of France? Answer in one sentence.",
    );
    let greedy = SamplingOptions {
        temperature: 0.0,
        ..SamplingOptions::default()
    };
    let mut text = String::new();
    let g = model
        .generate(&ids, 64, &greedy, |piece| {
            text.push_str(piece);
            ControlFlow::Continue(())
        })
        .unwrap();
    eprintln!("reply: {text:?} {g:?}");
    assert_eq!(g.finish, FinishReason::Stop, "{text}");
    assert!(text.contains("Paris"), "{text}");
    assert!(g.completion_tokens > 2 && g.completion_tokens < 64);
}

mod provider {
    use futures::StreamExt;
    use natter_core::provider::{
        CompletionRequest, PromptMessage, Provider, ProviderErrorKind, ProviderEvent, Role,
    };
    use natter_local_model::{LocalOptions, LocalProvider};

    fn request(messages: Vec<PromptMessage>, max_tokens: u32) -> CompletionRequest {
        CompletionRequest {
            model: "local".into(),
            messages,
            max_tokens: Some(max_tokens),
            temperature: Some(0.0),
            tools: Vec::new(),
        }
    }

    #[tokio::test]
    async fn a_last_message_past_the_context_is_context_too_long() {
        let Some(path) = super::common::model_path() else {
            return;
        };
        let provider = LocalProvider::load(&path, LocalOptions::default()).unwrap();
        let huge = "word ".repeat(10_000);
        let err = match provider
            .stream(request(vec![PromptMessage::text(Role::User, huge)], 8))
            .await
        {
            Err(e) => e,
            Ok(_) => panic!("expected an error"),
        };
        assert_eq!(err.kind, ProviderErrorKind::ContextTooLong);
    }

    #[tokio::test]
    async fn old_messages_are_left_out_to_fit_and_the_stream_ends_with_finish_and_usage() {
        let Some(path) = super::common::model_path() else {
            return;
        };
        // A small context, so the test's prompt is quick to run even in a debug build.
        let options = LocalOptions {
            context_tokens: 256,
            ..LocalOptions::default()
        };
        let provider = LocalProvider::load(&path, options).unwrap();
        let mut messages = vec![PromptMessage::text(Role::System, "Answer briefly.")];
        for _ in 0..6 {
            messages.push(PromptMessage::text(Role::User, "filler ".repeat(60)));
            messages.push(PromptMessage::text(Role::Assistant, "ok"));
        }
        messages.push(PromptMessage::text(Role::User, "Say hi."));
        let events: Vec<_> = provider
            .stream(request(messages, 16))
            .await
            .unwrap()
            .collect()
            .await;
        let events: Vec<ProviderEvent> = events.into_iter().map(Result::unwrap).collect();
        let n = events.len();
        assert!(
            matches!(events[n - 2], ProviderEvent::Finish(_)),
            "{events:?}"
        );
        let ProviderEvent::Usage(usage) = &events[n - 1] else {
            panic!("{events:?}")
        };
        // 6 fillers of ~64 tokens each do not fit in 256 - 16: some were left out.
        assert!(
            usage.prompt_tokens <= 240 && usage.prompt_tokens > 60,
            "{usage:?}"
        );
        assert!(
            events[..n - 2]
                .iter()
                .all(|e| matches!(e, ProviderEvent::TextDelta(_)))
        );
    }
}
