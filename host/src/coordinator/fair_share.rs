//! Weighted fair sharing of worker slots across tenants.
//!
//! Each round, the next job comes from the tenant with the fewest running jobs per unit of its
//! tier's weight: with one resource (slots) this is Dominant Resource Fairness (A. Ghodsi et al.,
//! "Dominant Resource Fairness: Fair Allocation of Multiple Resource Types", NSDI 2011), the
//! progressive filling of weighted max-min fairness. Ties go to the higher tier priority, then to
//! the tenant whose best job is oldest. Within a tenant, jobs keep their order (priority, then
//! age). A tenant flooding the queue thus takes no slot from another tenant below its share: a
//! tenant with no job running ranks first as soon as a slot turns over, whatever its tier, so no
//! tenant starves.

use std::cmp::Ordering;
use std::collections::{HashMap, VecDeque};

use crate::ids::TenantId;
use crate::state::Candidate;

/// A tenant's standing in one scheduling round.
#[derive(Debug)]
pub(super) struct Standing {
    /// Jobs assigned or running, including those placed this round.
    pub running: u32,
    /// The tier's weight (at least 1).
    pub weight: u32,
    /// The tier's priority: breaks ties between equal shares.
    pub priority: i32,
    /// Jobs it may still start under its concurrency limit.
    pub left: u32,
}

/// One round's candidates, served in fair-share order.
#[derive(Debug, Default)]
pub(super) struct FairShare {
    tenants: HashMap<TenantId, (Standing, VecDeque<Candidate>)>,
}

impl FairShare {
    /// Whether the tenant's standing is known.
    pub fn knows(&self, tenant: TenantId) -> bool {
        self.tenants.contains_key(&tenant)
    }

    /// Sets a tenant's standing (before its candidates are added).
    pub fn add_tenant(&mut self, tenant: TenantId, standing: Standing) {
        self.tenants.insert(tenant, (Standing { weight: standing.weight.max(1), ..standing }, VecDeque::new()));
    }

    /// Adds a candidate after those of its tenant added before (they come best first).
    pub fn push(&mut self, c: Candidate) {
        if let Some((_, queue)) = self.tenants.get_mut(&c.tenant_id) {
            queue.push_back(c);
        }
    }

    /// The next candidate in fair-share order, taken out of the round; `None` when no tenant
    /// with candidates has concurrency left.
    pub fn next(&mut self) -> Option<Candidate> {
        let tenant = self
            .tenants
            .iter()
            .filter(|(_, (s, q))| s.left > 0 && !q.is_empty())
            .min_by(|(_, (a, qa)), (_, (b, qb))| ahead(a, qa, b, qb))
            .map(|(t, _)| *t)?;
        self.tenants.get_mut(&tenant).and_then(|(_, q)| q.pop_front())
    }

    /// Counts a job of `tenant` placed this round.
    pub fn started(&mut self, tenant: TenantId) {
        if let Some((s, _)) = self.tenants.get_mut(&tenant) {
            s.running += 1;
            s.left = s.left.saturating_sub(1);
        }
    }
}

/// `Less` when tenant `a` goes before `b`: fewer running jobs per unit of weight
/// (`a.running / a.weight < b.running / b.weight`, compared without division), then the higher
/// tier priority, then the older best job (job ids are time-ordered).
fn ahead(a: &Standing, qa: &VecDeque<Candidate>, b: &Standing, qb: &VecDeque<Candidate>) -> Ordering {
    let share_a = u64::from(a.running) * u64::from(b.weight);
    let share_b = u64::from(b.running) * u64::from(a.weight);
    share_a
        .cmp(&share_b)
        .then_with(|| b.priority.cmp(&a.priority))
        .then_with(|| qa.front().map(|c| c.id).cmp(&qb.front().map(|c| c.id)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::JobId;
    use crate::state::Placement;

    fn job(tenant: TenantId) -> Candidate {
        Candidate { id: JobId::new(), tenant_id: tenant, workload: "w".into(), placement: Placement::default() }
    }

    fn round(fair: &mut FairShare, slots: usize) -> Vec<TenantId> {
        let mut order = Vec::new();
        while order.len() < slots {
            let Some(c) = fair.next() else { break };
            fair.started(c.tenant_id);
            order.push(c.tenant_id);
        }
        order
    }

    #[test]
    fn slots_go_by_weight_and_a_flooding_tenant_takes_no_more_than_its_share() {
        let (heavy, light, idle) = (TenantId::new(), TenantId::new(), TenantId::new());
        let mut fair = FairShare::default();
        // `heavy` (weight 1) floods the queue and already runs 10 jobs; `light` (weight 4) has 5
        // queued and none running.
        fair.add_tenant(heavy, Standing { running: 10, weight: 1, priority: 0, left: 100 });
        fair.add_tenant(light, Standing { running: 0, weight: 4, priority: 0, left: 100 });
        fair.add_tenant(idle, Standing { running: 0, weight: 1, priority: 0, left: 100 });
        for _ in 0..1000 {
            fair.push(job(heavy));
        }
        for _ in 0..5 {
            fair.push(job(light));
        }
        // One slot turns over: `light`, running nothing, takes it before any of the flood.
        assert_eq!(round(&mut fair, 1), vec![light]);
        // `light` takes the next ones (its share, at most 5 / 4, stays below `heavy`'s 10 / 1)
        // until its queue runs dry; `idle` has nothing queued and takes nothing.
        let order = round(&mut fair, 8);
        assert_eq!(order.iter().filter(|t| **t == light).count(), 4, "{order:?}");
        assert_eq!(order.iter().filter(|t| **t == heavy).count(), 4);
        assert!(!order.contains(&idle));
    }

    #[test]
    fn the_lowest_tier_is_served_once_it_is_behind_and_limits_hold() {
        let (free, premium) = (TenantId::new(), TenantId::new());
        let mut fair = FairShare::default();
        fair.add_tenant(free, Standing { running: 0, weight: 1, priority: 0, left: 2 });
        fair.add_tenant(premium, Standing { running: 0, weight: 16, priority: 20, left: 100 });
        for _ in 0..10 {
            fair.push(job(free));
            fair.push(job(premium));
        }
        // Equal shares (0): the higher tier priority breaks the tie, then `free` is behind.
        let order = round(&mut fair, 3);
        assert_eq!(order, vec![premium, free, premium]);
        // `free` may run 2 at once: it gets its second slot, then nothing more.
        let order = round(&mut fair, 20);
        assert_eq!(order.iter().filter(|t| **t == free).count(), 1, "{order:?}");
        assert_eq!(order.len(), 9, "premium's remaining 8 and free's second");
    }
}
