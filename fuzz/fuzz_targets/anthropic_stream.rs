//! Upstream bytes → `AnthropicProvider`'s stream decoding (SSE framing, typed events,
//! `tool_use` input assembly, usage), exactly as a live response body feeds it; or, for an
//! input starting with `HTTP/`, a non-2xx answer → its `ProviderError`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use natter_core::provider::ProviderEvent;
use natter_fuzz::upstream::{Response, check_items, check_status_error, decode_every_way};
use natter_providers::fuzzing::Upstream;

fuzz_target!(|data: &[u8]| {
    let Some(response) = Response::parse(data) else {
        return;
    };
    if !(200..300).contains(&response.status) {
        check_status_error(Upstream::Anthropic, &response);
        return;
    }
    let items = decode_every_way(Upstream::Anthropic, response.body);
    check_items(&items);
    // Every stream ends exactly once: with `Finish` (after `message_stop`, preceded by the
    // usage totals) or with an error (a cut, a stream error, an unparseable event).
    let last = items
        .last()
        .expect("an Anthropic stream always ends with Finish or an error");
    let finishes = items
        .iter()
        .filter(|i| matches!(i, Ok(ProviderEvent::Finish(_))))
        .count();
    match last {
        Ok(ProviderEvent::Finish(_)) => {
            assert_eq!(finishes, 1, "{items:?}");
            let Some(Ok(ProviderEvent::Usage(u))) = items.iter().rev().nth(1) else {
                panic!("Finish not preceded by Usage: {items:?}");
            };
            assert_eq!(
                u.total_tokens,
                u.prompt_tokens.saturating_add(u.completion_tokens),
                "{u:?}"
            );
        }
        Err(_) => assert_eq!(finishes, 0, "{items:?}"),
        Ok(other) => panic!("the stream ended on {other:?} without Finish or an error"),
    }
});
