//! The event streams each layer hands the app: one type over a bounded channel.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures::Stream;
use tokio::sync::mpsc;

/// Events of one connection, in order, as a [`Stream`] or with [`recv`](Self::recv).
/// Reading it is optional (dropping it is fine); holding it without reading eventually stops
/// the connection from reading too (backpressure).
#[derive(Debug)]
pub struct EventStream<T> {
    pub(crate) rx: mpsc::Receiver<T>,
}

impl<T> EventStream<T> {
    pub async fn recv(&mut self) -> Option<T> {
        self.rx.recv().await
    }
}

impl<T> Stream for EventStream<T> {
    type Item = T;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        self.rx.poll_recv(cx)
    }
}
