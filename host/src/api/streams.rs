//! How many event streams (`GET /v1/jobs/{id}/events`) each tenant holds open. Every open stream
//! reads every job event of the process to pick out its job's, so streams cost the process in
//! proportion to their number: one tenant opening thousands would slow every other tenant's
//! streams and the broker's fan-out. Each tenant may hold [`MAX_STREAMS_PER_TENANT`] at once.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::ids::TenantId;

/// Event streams a tenant may hold open at once.
pub const MAX_STREAMS_PER_TENANT: u32 = 32;

/// The open streams per tenant.
#[derive(Clone, Default)]
pub struct StreamCounts(Arc<Mutex<HashMap<TenantId, u32>>>);

/// One open stream; the count drops with it (when the client goes away and the response's body
/// is dropped).
pub struct StreamSlot {
    counts: StreamCounts,
    tenant: TenantId,
}

impl StreamCounts {
    /// A slot for one more stream of `tenant`; `None` when it holds [`MAX_STREAMS_PER_TENANT`].
    pub fn open(&self, tenant: TenantId) -> Option<StreamSlot> {
        let mut counts = self.0.lock();
        let n = counts.entry(tenant).or_default();
        if *n >= MAX_STREAMS_PER_TENANT {
            return None;
        }
        *n += 1;
        Some(StreamSlot { counts: self.clone(), tenant })
    }

    /// The streams `tenant` holds open now.
    pub fn open_now(&self, tenant: TenantId) -> u32 {
        self.0.lock().get(&tenant).copied().unwrap_or(0)
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut counts = self.counts.0.lock();
        if let Some(n) = counts.get_mut(&self.tenant) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.tenant);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenant_holds_at_most_the_limit_and_a_dropped_slot_frees_its_place() {
        let counts = StreamCounts::default();
        let (a, b) = (TenantId::new(), TenantId::new());
        let held: Vec<StreamSlot> = (0..MAX_STREAMS_PER_TENANT).filter_map(|_| counts.open(a)).collect();
        assert_eq!(held.len() as u32, MAX_STREAMS_PER_TENANT);
        assert!(counts.open(a).is_none(), "one more than the limit");
        assert!(counts.open(b).is_some(), "another tenant is not affected");
        drop(held.into_iter().next());
        assert!(counts.open(a).is_some(), "a closed stream frees its place");
    }
}
