//! Real generations with the real model: the engine's loop (greedy, seeded, aborted) and the
//! provider's stream (fitting, errors, workers).

mod common;

use std::ops::ControlFlow;

use natter_local_model::llama::ChatMessage;
use natter_local_model::llama::generate;
use natter_local_model::llama::llama_cpp_2::llama_batch::LlamaBatch;
use natter_local_model::{FinishReason, SamplingOptions};

#[test]
fn greedy_reply_names_paris_and_stops_on_its_own() {
    let Some(engine) = common::engine() else {
        return;
    };
    let prompt = engine
        .prompt(
            &[ChatMessage {
                role: "user".into(),
                content: "What is the capital of France? Answer in one sentence.".into(),
            }],
            4096,
        )
        .unwrap();
    let mut context = engine.new_context(1024, 2).unwrap();
    let mut batch = LlamaBatch::new(512, 1);
    let greedy = SamplingOptions {
        temperature: 0.0,
        ..SamplingOptions::default()
    };
    let mut text = String::new();
    let g = generate(
        engine,
        &mut context,
        &mut batch,
        &prompt,
        64,
        &greedy,
        |piece| {
            text.push_str(piece);
            ControlFlow::Continue(())
        },
    )
    .unwrap();
    eprintln!("reply: {text:?} {g:?}");
    assert_eq!(g.finish, FinishReason::Stop, "{text}");
    assert!(text.contains("Paris"), "{text}");
    assert!(g.completion_tokens > 2 && g.completion_tokens < 64);
    // The same seed gives the same sampled reply.
    let warm = SamplingOptions::default();
    let mut runs = Vec::new();
    for _ in 0..2 {
        let mut t = String::new();
        generate(engine, &mut context, &mut batch, &prompt, 24, &warm, |p| {
            t.push_str(p);
            ControlFlow::Continue(())
        })
        .unwrap();
        runs.push(t);
    }
    assert_eq!(runs[0], runs[1]);
    // Breaking stops at once.
    let mut steps = 0;
    let g = generate(
        engine,
        &mut context,
        &mut batch,
        &prompt,
        64,
        &greedy,
        |_| {
            steps += 1;
            if steps == 3 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        },
    )
    .unwrap();
    assert_eq!(
        (g.finish, g.completion_tokens),
        (FinishReason::Cancelled, 3)
    );
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

    #[tokio::test]
    async fn provider_streams_text_then_finish_and_usage_with_two_workers() {
        let Some(path) = super::common::model_path() else {
            return;
        };
        let options = LocalOptions {
            workers: 2,
            threads: 1,
            context_tokens: 512,
            ..LocalOptions::default()
        };
        let provider = LocalProvider::load(&path, options).unwrap();
        let ask = || request(vec![PromptMessage::text(Role::User, "Say hi.")], 8);
        let (a, b) = tokio::join!(provider.stream(ask()), provider.stream(ask()));
        for stream in [a.unwrap(), b.unwrap()] {
            let items: Vec<_> = stream.collect().await;
            natter_core::provider::check_stream(&items).unwrap();
            assert!(
                items
                    .iter()
                    .any(|i| matches!(i, Ok(ProviderEvent::TextDelta(_))))
            );
            assert!(
                items
                    .iter()
                    .any(|i| matches!(i, Ok(ProviderEvent::Usage(_))))
            );
        }
        // A dropped stream (abort) frees its worker: the next turn still runs.
        let mut first = provider
            .stream(request(
                vec![PromptMessage::text(Role::User, "Count to 100.")],
                200,
            ))
            .await
            .unwrap();
        let _ = first.next().await;
        drop(first);
        let items: Vec<_> = provider.stream(ask()).await.unwrap().collect().await;
        natter_core::provider::check_stream(&items).unwrap();
        // A last message longer than the context is a clear error.
        let long = request(
            vec![PromptMessage::text(Role::User, "word ".repeat(2000))],
            8,
        );
        let err = provider.stream(long).await.err().unwrap();
        assert_eq!(err.kind, ProviderErrorKind::ContextTooLong);
    }
}
