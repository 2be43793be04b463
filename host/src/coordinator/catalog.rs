//! The catalog: tiers and tenants as the coordinator sees them.
//!
//! Tiers live in the state store (seeded from the configuration file) and may be edited at run
//! time; tenants may be suspended, resumed and moved to another tier. Each coordinator keeps a
//! copy of the tiers and, while leading, of the tenants, refreshed from the store every
//! [`CATALOG_REFRESH`], so a change made through another coordinator applies here within that
//! time. A change made through this coordinator applies here at once.

use std::sync::Arc;
use std::time::Duration;

use crate::ids::TenantId;
use crate::state::{StateError, StateStore, Tenant};
use crate::tier::{Tier, Tiers};

use super::Coordinator;

/// How often a coordinator reloads the tiers and tenants from the store.
pub const CATALOG_REFRESH: Duration = Duration::from_secs(2);

/// The tiers in effect: the configuration's tiers added to the store where missing, then all
/// stored ones (tiers edited at run time keep their edits across restarts).
pub async fn effective_tiers(state: &dyn StateStore, configured: &Tiers) -> Result<Tiers, StateError> {
    state.put_tiers(configured, false).await?;
    state.tiers().await
}

impl Coordinator {
    /// The tier of `tenant`. A tier name no longer defined falls back to `free`, and without
    /// `free` to a tier that allows nothing (its jobs fail at once, naming the limit).
    pub fn tier(&self, tenant: &Tenant) -> Tier {
        let tiers = self.tiers();
        tiers.get(&tenant.tier).or_else(|| tiers.get("free")).cloned().unwrap_or_else(super::no_tier)
    }

    /// The tiers by name.
    pub fn tiers(&self) -> Arc<Tiers> {
        self.tiers.read().map(|t| t.clone()).unwrap_or_default()
    }

    /// Creates or replaces a tier. The waiting jobs of its tenants take its priority; running
    /// jobs keep the limits they started under.
    pub async fn put_tier(&self, name: &str, tier: Tier) -> Result<(), StateError> {
        let one = Tiers::from([(name.to_owned(), tier)]);
        self.state.put_tiers(&one, true).await?;
        if let Ok(mut tiers) = self.tiers.write() {
            let mut next = (**tiers).clone();
            next.extend(one);
            *tiers = Arc::new(next);
        }
        self.queue_changed();
        Ok(())
    }

    /// Suspends or resumes a tenant: a suspended tenant's keys are refused and its queued jobs do
    /// not start (running ones run on). Returns the tenant as it now stands.
    pub async fn set_suspended(&self, id: TenantId, suspended: bool) -> Result<Option<Tenant>, StateError> {
        let tenant = self.state.set_suspended(id, suspended).await?;
        self.tenant_changed(tenant.as_ref());
        Ok(tenant)
    }

    /// Moves a tenant to another tier (which must exist). Returns the tenant as it now stands.
    pub async fn set_tenant_tier(&self, id: TenantId, tier: &str) -> Result<Option<Tenant>, StateError> {
        let priority = self.tiers().get(tier).map_or(0, |t| t.priority);
        let tenant = self.state.set_tenant_tier(id, tier, priority).await?;
        self.tenant_changed(tenant.as_ref());
        Ok(tenant)
    }

    fn tenant_changed(&self, tenant: Option<&Tenant>) {
        if let Some(t) = tenant {
            self.tenants.lock().insert(t.id, t.clone());
        }
        self.queue_changed();
    }

    pub(super) fn remember_tenant(&self, tenant: &Tenant) {
        {
            let mut t = self.tenants.lock();
            t.entry(tenant.id).or_insert_with(|| tenant.clone());
        }
    }

    /// The suspended tenants among those cached (all tenants while leading).
    pub(super) fn suspended_tenants(&self) -> Vec<TenantId> {
        self.tenants.lock().values().filter(|t| t.is_suspended()).map(|t| t.id).collect()
    }

    /// A tenant, from the cache or the store.
    pub(super) async fn tenant(&self, id: TenantId) -> anyhow::Result<Option<Tenant>> {
        let cached = self.tenants.lock().get(&id).cloned();
        if let Some(t) = cached {
            return Ok(Some(t));
        }
        let t = self.state.get_tenant(id).await?;
        if let Some(t) = &t {
            self.remember_tenant(t);
        }
        Ok(t)
    }

    /// Reloads the tiers, and the tenants while leading, every [`CATALOG_REFRESH`].
    pub(super) async fn catalog_loop(self: Arc<Self>) -> anyhow::Result<()> {
        let mut tick = tokio::time::interval(CATALOG_REFRESH);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = self.reload_catalog().await {
                tracing::warn!(error = %format!("{e:#}"), "could not reload tiers and tenants; retrying");
            }
        }
    }

    async fn reload_catalog(&self) -> anyhow::Result<()> {
        let tiers = self.state.tiers().await?;
        if !tiers.is_empty()
            && let Ok(mut t) = self.tiers.write()
        {
            *t = Arc::new(tiers);
        }
        if self.is_leader() {
            let all = self.state.list_tenants().await?;
            {
                let mut cache = self.tenants.lock();
                *cache = all.into_iter().map(|t| (t.id, t)).collect();
            }
            self.refresh_fuel_budgets().await?;
        }
        Ok(())
    }
}
