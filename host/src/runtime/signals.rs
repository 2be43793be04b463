//! Signals from the worker to a running attempt.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use tokio::sync::watch;

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
    force: watch::Sender<bool>,
}

impl Default for Signals {
    fn default() -> Self {
        Self { interrupt: AtomicU8::new(0), abandoned: false.into(), force: watch::Sender::new(false) }
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

    /// Stops the guest by force within an epoch tick, whatever it is doing (in guest code, or
    /// waiting in a host call).
    pub fn force_stop(&self) {
        self.force.send_replace(true);
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
        *self.force.borrow()
    }

    /// Resolves once a forced stop is asked for.
    pub(super) async fn forced(&self) {
        let mut rx = self.force.subscribe();
        let _ = rx.wait_for(|v| *v).await;
    }
}
