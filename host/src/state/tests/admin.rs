//! Tenant administration on both backends: suspension, tier changes, keys, stored tiers.

use super::*;
use crate::tier::default_tiers;

on_both_backends!(suspension_tier_changes_and_keys, tiers_are_seeded_once_and_replaced_on_demand);

async fn suspension_tier_changes_and_keys(s: &dyn StateStore) -> anyhow::Result<()> {
    let t = setup(s).await?;
    assert_eq!(s.tenant_by_name("acme").await?.map(|x| x.id), Some(t.id));
    assert!(s.tenant_by_name("nobody").await?.is_none());

    // Suspending twice keeps the first time; resuming clears it.
    let first = s.set_suspended(t.id, true).await?.expect("tenant").suspended_at_ms.expect("suspended");
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let again = s.set_suspended(t.id, true).await?.expect("tenant");
    assert_eq!(again.suspended_at_ms, Some(first));
    assert!(s.get_tenant(t.id).await?.expect("tenant").is_suspended());
    assert!(!s.set_suspended(t.id, false).await?.expect("tenant").is_suspended());
    assert!(s.set_suspended(TenantId::new(), true).await?.is_none());

    // A tier change re-ranks the waiting jobs only.
    let (waiting, _) = s.insert_job(&new_job(t.id, 0, 10)).await?;
    let (running, _) = s.insert_job(&new_job(t.id, 0, 10)).await?;
    s.assign_jobs(None, &WorkerId("w".into()), &[running.id]).await?;
    let moved = s.set_tenant_tier(t.id, "premium", 20).await?.expect("tenant");
    assert_eq!(moved.tier, "premium");
    assert_eq!(s.get_job(t.id, waiting.id).await?.expect("job").tier_priority, 20);
    assert_eq!(s.get_job(t.id, running.id).await?.expect("job").tier_priority, 10);

    // Keys: read-only flag kept, listed without the key, revoked keys are unknown.
    let rw = Digest::of(b"key-rw");
    let ro = Digest::of(b"key-ro");
    let k1 = s.add_api_key(rw, Some(t.id), false).await?;
    let k2 = s.add_api_key(ro, Some(t.id), true).await?;
    assert_eq!(k1.id, rw.to_hex()[..16]);
    let mut listed: Vec<(String, bool)> =
        s.list_api_keys(t.id).await?.into_iter().map(|k| (k.id, k.read_only)).collect();
    listed.sort();
    let mut expected = vec![(k1.id.clone(), false), (k2.id.clone(), true)];
    expected.sort();
    assert_eq!(listed, expected);
    match s.principal(ro).await? {
        Some(Principal::Tenant { tenant, read_only }) => assert_eq!((tenant.id, read_only), (t.id, true)),
        other => panic!("read-only key resolved to {other:?}"),
    }
    let other = s.create_tenant("other", "free").await?;
    assert!(s.revoke_api_key(other.id, &k1.id).await?.is_none(), "another tenant's key is not found");
    assert!(s.principal(rw).await?.is_some(), "a failed revocation leaves the key working");
    let revoked = s.revoke_api_key(t.id, &k1.id).await?.expect("key");
    assert!(revoked.revoked_at_ms.is_some());
    assert!(s.principal(rw).await?.is_none());
    assert!(s.principal(ro).await?.is_some());
    // An admin key is still an admin key; a revoked admin key no longer counts.
    s.add_api_key(Digest::of(b"admin"), None, false).await?;
    assert!(matches!(s.principal(Digest::of(b"admin")).await?, Some(Principal::Admin)));
    assert!(s.has_admin_key().await?);
    Ok(())
}

async fn tiers_are_seeded_once_and_replaced_on_demand(s: &dyn StateStore) -> anyhow::Result<()> {
    let t = setup(s).await?;
    assert!(s.tiers().await?.is_empty());
    let defaults = default_tiers();
    s.put_tiers(&defaults, false).await?;
    assert_eq!(s.tiers().await?, defaults);

    // A run-time edit survives a later seeding with the file's values.
    let mut edited = defaults["standard"].clone();
    edited.concurrent_jobs = 99;
    edited.priority = 15;
    let (waiting, _) = s.insert_job(&new_job(t.id, 0, defaults["standard"].priority)).await?;
    s.put_tiers(&Tiers::from([("standard".to_owned(), edited.clone())]), true).await?;
    s.put_tiers(&defaults, false).await?;
    let stored = s.tiers().await?;
    assert_eq!(stored["standard"], edited);
    assert_eq!(stored["free"], defaults["free"]);
    // The tier's tenants' waiting jobs took its new priority.
    assert_eq!(s.get_job(t.id, waiting.id).await?.expect("job").tier_priority, 15);
    Ok(())
}
