//! An upstream's `text/event-stream` body → SSE events, safe for any bytes.
//!
//! eventsource-stream 0.2.3 panics on a stream that starts with a byte order mark: it skips
//! one byte of the three-byte U+FEFF and slices inside it (fix proposed upstream,
//! jpopesculian/eventsource-stream#10, not released). The SSE format allows one leading BOM,
//! and a panic in the parser would take the whole turn down with it. So the body goes
//! through [`Body`] first: it drops one leading BOM (however the network splits its bytes)
//! and hands the parser a blank line before anything else, which the format makes a no-op,
//! so the parser never sees a BOM first, not even a second one.

use std::pin::Pin;
use std::task::{Context, Poll};

use eventsource_stream::{EventStream, Eventsource};
use futures::Stream;

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// The SSE events of an upstream body.
pub(crate) fn events<S, B, E>(body: S) -> EventStream<Body<S>>
where
    S: Stream<Item = Result<B, E>> + Unpin,
    B: AsRef<[u8]>,
{
    Body {
        inner: body,
        lead_sent: false,
        head: Some(Vec::new()),
    }
    .eventsource()
}

/// The upstream body with its leading BOM dropped, after a blank line.
pub(crate) struct Body<S> {
    inner: S,
    /// The blank line went out.
    lead_sent: bool,
    /// The first bytes, held until it is known whether they are a BOM; `None` once known.
    head: Option<Vec<u8>>,
}

/// A chunk of the upstream body, or bytes of our own.
pub(crate) enum Chunk<B> {
    Upstream(B),
    Own(Vec<u8>),
}

impl<B: AsRef<[u8]>> AsRef<[u8]> for Chunk<B> {
    fn as_ref(&self) -> &[u8] {
        match self {
            Self::Upstream(b) => b.as_ref(),
            Self::Own(v) => v,
        }
    }
}

impl<S, B, E> Stream for Body<S>
where
    S: Stream<Item = Result<B, E>> + Unpin,
    B: AsRef<[u8]>,
{
    type Item = Result<Chunk<B>, E>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if !this.lead_sent {
            this.lead_sent = true;
            return Poll::Ready(Some(Ok(Chunk::Own(b"\n".to_vec()))));
        }
        loop {
            match Pin::new(&mut this.inner).poll_next(cx) {
                Poll::Ready(Some(Ok(bytes))) => {
                    let Some(head) = &mut this.head else {
                        return Poll::Ready(Some(Ok(Chunk::Upstream(bytes))));
                    };
                    head.extend_from_slice(bytes.as_ref());
                    if head.len() < BOM.len() && BOM.starts_with(head) {
                        continue; // maybe a BOM: read on
                    }
                    let mut head = this.head.take().unwrap_or_default();
                    if head.starts_with(BOM) {
                        head.drain(..BOM.len());
                    }
                    return Poll::Ready(Some(Ok(Chunk::Own(head))));
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(None) => {
                    return Poll::Ready(
                        this.head
                            .take()
                            .filter(|h| !h.is_empty())
                            .map(|h| Ok(Chunk::Own(h))),
                    );
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    fn data(chunks: &[&[u8]]) -> Vec<String> {
        let body = futures::stream::iter(
            chunks
                .iter()
                .map(|c| Ok::<_, std::convert::Infallible>(c.to_vec()))
                .collect::<Vec<_>>(),
        );
        futures::executor::block_on(events(body).collect::<Vec<_>>())
            .into_iter()
            .map(|e| e.map(|e| e.data).unwrap_or_else(|e| format!("error: {e}")))
            .collect()
    }

    #[test]
    fn a_leading_bom_is_dropped_however_it_is_split() {
        let whole: &[u8] = b"\xEF\xBB\xBFdata: one\n\ndata: two\n\n";
        assert_eq!(data(&[whole]), ["one", "two"]);
        for cut in 1..whole.len() {
            assert_eq!(
                data(&[&whole[..cut], &whole[cut..]]),
                ["one", "two"],
                "{cut}"
            );
        }
        assert_eq!(
            data(&[b"\xEF", b"", b"\xBB", b"\xBF", b"data: x\n\n"]),
            ["x"]
        );
    }

    #[test]
    fn only_one_bom_is_dropped_and_nothing_else() {
        // A second BOM belongs to the first field's name (an unknown field: ignored).
        assert_eq!(
            data(&[b"\xEF\xBB\xBF\xEF\xBB\xBFdata: a\n\ndata: b\n\n"]),
            ["b"]
        );
        // U+F000 starts like a BOM but is not one.
        assert_eq!(data(&[b"\xEF\x80", b"\x80\n\ndata: c\n\n"]), ["c"]);
        assert_eq!(data(&[b"data: d\n\n"]), ["d"]);
        assert!(data(&[b"\xEF\xBB"]).iter().all(|d| d.starts_with("error")));
        assert!(data(&[]).is_empty());
    }
}
