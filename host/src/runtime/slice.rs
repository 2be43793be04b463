//! Drives an attempt's future in time slices. The guest yields every
//! [`YIELD_FUEL`](super::limits::YIELD_FUEL) fuel units; at each such yield the attempt's deadline
//! and forced stop are checked, and the future is polled again at once unless it has held its
//! thread for a [`SLICE`]: only then is the thread given back to the executor. A yield through the
//! executor wakes an idle sibling thread (at every 100,000 fuel units that made `primes` 2×
//! slower), a re-poll here is a fiber switch each way, so frequent checks cost CPU-bound guests
//! almost nothing.
//!
//! While the guest waits inside an asynchronous host call (the future is pending and nothing
//! woke it), a timer for the deadline and the forced-stop signal are armed, so the wait ends at
//! either.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Instant;

use parking_lot::Mutex;

use super::limits::SLICE;
use super::signals::Signals;

/// Why [`drive`] stopped the future before it finished.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Stopped {
    /// Its deadline passed.
    Timeout,
    /// A forced stop was asked for.
    Forced,
}

/// The waker the attempt's future sees. A wake while the future is being polled (the guest's
/// own fuel yield, or an event that arrived meanwhile) is noted and handled by polling again; a
/// wake at any other time is relayed to the task's waker.
struct Relay {
    polling: AtomicBool,
    woken: AtomicBool,
    task: Mutex<Option<Waker>>,
}

impl Wake for Relay {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::SeqCst);
        if !self.polling.load(Ordering::SeqCst)
            && let Some(w) = &*self.task.lock()
        {
            w.wake_by_ref();
        }
    }
}

/// Runs `call` to its end, or until `deadline` passes or `signals` asks for a forced stop, giving
/// the thread back to the executor at least every [`SLICE`] while the future makes progress.
pub(super) async fn drive<F: Future>(
    mut call: Pin<&mut F>,
    deadline: Instant,
    signals: &Signals,
) -> Result<F::Output, Stopped> {
    let relay = Arc::new(Relay { polling: false.into(), woken: false.into(), task: Mutex::new(None) });
    let waker = Waker::from(relay.clone());
    let mut slice_started = Instant::now();
    let mut timer: Option<Pin<Box<tokio::time::Sleep>>> = None;
    let mut forced: Option<Pin<Box<dyn Future<Output = ()> + Send + '_>>> = None;
    std::future::poll_fn(move |cx| {
        {
            let mut task = relay.task.lock();
            if !task.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *task = Some(cx.waker().clone());
            }
        }
        loop {
            relay.woken.store(false, Ordering::SeqCst);
            relay.polling.store(true, Ordering::SeqCst);
            let polled = call.as_mut().poll(&mut Context::from_waker(&waker));
            relay.polling.store(false, Ordering::SeqCst);
            if let Poll::Ready(out) = polled {
                return Poll::Ready(Ok(out));
            }
            if signals.is_forced() {
                return Poll::Ready(Err(Stopped::Forced));
            }
            let now = Instant::now();
            if now >= deadline {
                return Poll::Ready(Err(Stopped::Timeout));
            }
            if !relay.woken.load(Ordering::SeqCst) {
                // A real wait: whatever the future waits on holds the relay and wakes the task.
                let timer = timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline.into())));
                if timer.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Err(Stopped::Timeout));
                }
                let forced = forced.get_or_insert_with(|| Box::pin(signals.forced()));
                if forced.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Err(Stopped::Forced));
                }
                return Poll::Pending;
            }
            if now.duration_since(slice_started) >= SLICE {
                slice_started = now;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A future that yields `n` times as a guest's fuel yield does (waking itself), then ends.
    struct Yields(u64);

    impl Future for Yields {
        type Output = u64;
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<u64> {
            if self.0 == 0 {
                return Poll::Ready(7);
            }
            self.0 -= 1;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }

    #[tokio::test]
    async fn self_yields_are_polled_again_and_the_result_comes_back() {
        let signals = Signals::default();
        let call = std::pin::pin!(Yields(100_000));
        let out = drive(call, Instant::now() + Duration::from_secs(60), &signals).await;
        assert_eq!(out, Ok(7));
    }

    #[tokio::test]
    async fn a_yielding_future_is_stopped_at_its_deadline_and_on_a_forced_stop() {
        let signals = Signals::default();
        let call = std::pin::pin!(Yields(u64::MAX));
        let started = Instant::now();
        let out = drive(call, started + Duration::from_millis(50), &signals).await;
        assert_eq!(out, Err(Stopped::Timeout));
        assert!(started.elapsed() < Duration::from_secs(5));

        let signals = Arc::new(Signals::default());
        let stop = signals.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            stop.force_stop();
        });
        let call = std::pin::pin!(Yields(u64::MAX));
        let out = drive(call, Instant::now() + Duration::from_secs(60), &signals).await;
        assert_eq!(out, Err(Stopped::Forced));
    }

    #[tokio::test]
    async fn a_waiting_future_is_stopped_at_its_deadline_and_on_a_forced_stop() {
        let signals = Signals::default();
        let started = Instant::now();
        let call = std::pin::pin!(std::future::pending::<()>());
        let out = drive(call, started + Duration::from_millis(50), &signals).await;
        assert_eq!(out, Err(Stopped::Timeout));
        assert!(started.elapsed() >= Duration::from_millis(50));

        let signals = Arc::new(Signals::default());
        let stop = signals.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            stop.force_stop();
        });
        let call = std::pin::pin!(std::future::pending::<()>());
        let out = drive(call, Instant::now() + Duration::from_secs(60), &signals).await;
        assert_eq!(out, Err(Stopped::Forced));
    }

    #[tokio::test]
    async fn a_wake_from_elsewhere_reaches_the_task() {
        let signals = Signals::default();
        let (tx, rx) = tokio::sync::oneshot::channel::<u8>();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let _ = tx.send(3);
        });
        let call = std::pin::pin!(rx);
        let out = drive(call, Instant::now() + Duration::from_secs(60), &signals).await;
        assert_eq!(out.map(Result::ok), Ok(Some(3)));
    }
}
