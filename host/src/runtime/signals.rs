//! Signals from the worker to a running attempt.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use tokio::sync::Notify;

/// Why a job is asked to stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interrupt {
    /// Cancelled through the API.
    Cancel,
    /// The worker is shutting down.
    Shutdown,
}

/// Signals from the worker to a running attempt: the interrupt the guest sees through
/// `interrupted()`, and a forced stop after the grace period.
#[derive(Debug)]
pub struct Signals {
    interrupt: AtomicU8,
    abandoned: AtomicBool,
    forced: AtomicBool,
    /// Woken on a forced stop.
    force: Notify,
}

impl Default for Signals {
    fn default() -> Self {
        Self { interrupt: AtomicU8::new(0), abandoned: false.into(), forced: false.into(), force: Notify::new() }
    }
}

impl Signals {
    /// Asks the guest to stop (it sees the reason through `interrupted()`). A cancel overrides a
    /// shutdown, not the other way round.
    pub fn interrupt(&self, why: Interrupt) {
        let v = match why {
            Interrupt::Cancel => 1,
            Interrupt::Shutdown => 2,
        };
        let _ = self.interrupt.compare_exchange(0, v, Ordering::SeqCst, Ordering::SeqCst);
        if why == Interrupt::Cancel {
            self.interrupt.store(1, Ordering::SeqCst);
        }
    }

    /// The pending interrupt, if any.
    pub fn reason(&self) -> Option<Interrupt> {
        match self.interrupt.load(Ordering::SeqCst) {
            1 => Some(Interrupt::Cancel),
            2 => Some(Interrupt::Shutdown),
            _ => None,
        }
    }

    /// Stops the guest by force at its next fuel yield or host call, whatever it is doing (in
    /// guest code, or waiting in a host call).
    pub fn force_stop(&self) {
        self.forced.store(true, Ordering::SeqCst);
        self.force.notify_waiters();
    }

    /// Stops the guest by force because the lease is gone: the attempt reports nothing.
    pub fn abandon(&self) {
        self.abandoned.store(true, Ordering::SeqCst);
        self.force_stop();
    }

    /// Whether the lease was lost.
    pub(super) fn is_abandoned(&self) -> bool {
        self.abandoned.load(Ordering::SeqCst)
    }

    /// Whether a forced stop was asked for.
    pub(super) fn is_forced(&self) -> bool {
        self.forced.load(Ordering::SeqCst)
    }

    /// Resolves once a forced stop is asked for.
    pub(super) async fn forced(&self) {
        loop {
            let notified = self.force.notified();
            let mut notified = std::pin::pin!(notified);
            // Registered before the check, so a stop between the two is not missed.
            notified.as_mut().enable();
            if self.is_forced() {
                return;
            }
            notified.await;
        }
    }
}
