//! Upstream bytes → `OpenAiProvider`'s stream decoding (SSE framing, chunk JSON, tool-call
//! assembly), exactly as a live response body feeds it; or, for an input starting with
//! `HTTP/`, a non-2xx answer → its `ProviderError` (status, `retry-after`, error body).
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
        check_status_error(Upstream::OpenAi, &response);
        return;
    }
    let items = decode_every_way(Upstream::OpenAi, response.body);
    check_items(&items);
    let mut previous: Option<&ProviderEvent> = None;
    for item in items.iter().flatten() {
        if let ProviderEvent::Finish(reason) = item {
            assert!(!reason.is_empty(), "empty finish reason");
            assert_ne!(reason, "function_call", "legacy reason not normalized");
            // A step that made calls and says `stop` is reported as `tool_calls`.
            if matches!(previous, Some(ProviderEvent::ToolCall(_))) {
                assert_ne!(reason, "stop", "{items:?}");
            }
        }
        previous = Some(item);
    }
});
