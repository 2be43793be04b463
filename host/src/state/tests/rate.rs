//! The submission buckets on both backends: the burst, the refill, refusals that take nothing,
//! one bucket per tenant, and concurrent takers.

use std::time::{Duration, Instant};

use super::*;

on_both_backends!(a_bucket_admits_its_burst_then_its_rate, concurrent_takers_share_one_bucket);

async fn a_bucket_admits_its_burst_then_its_rate(s: &dyn StateStore) -> anyhow::Result<()> {
    let t = setup(s).await?;
    let other = s.create_tenant("other", "free").await?;
    // Three tokens, one back per second.
    let bucket = TokenBucket::new(1, 3);
    assert_eq!(s.take_submission_tokens(t.id, bucket, 2).await?, None);
    assert_eq!(s.take_submission_tokens(t.id, bucket, 1).await?, None);
    let wait = s.take_submission_tokens(t.id, bucket, 1).await?.expect("the bucket is empty");
    assert!(wait > Duration::ZERO && wait <= Duration::from_secs(1), "{wait:?}");
    // A refusal took nothing: asking again waits no longer.
    let again = s.take_submission_tokens(t.id, bucket, 1).await?.expect("still empty");
    assert!(again <= wait, "{again:?} after {wait:?}");
    // Two tokens take a second more than one.
    let two = s.take_submission_tokens(t.id, bucket, 2).await?.expect("still empty");
    assert!(two > Duration::from_secs(1) && two <= Duration::from_secs(2), "{two:?}");
    // More than the burst can never be taken.
    assert_eq!(s.take_submission_tokens(t.id, bucket, 4).await?, Some(Duration::MAX));
    // Another tenant has a bucket of its own.
    assert_eq!(s.take_submission_tokens(other.id, bucket, 3).await?, None);

    // One token back after the wait, and only one.
    tokio::time::sleep(again + Duration::from_millis(20)).await;
    assert_eq!(s.take_submission_tokens(t.id, bucket, 1).await?, None);
    assert!(s.take_submission_tokens(t.id, bucket, 1).await?.is_some());

    // A faster tier does not forgive what the bucket owes: about a second of the old interval.
    let fast = TokenBucket::new(1_000, 3);
    let owed = s.take_submission_tokens(t.id, fast, 1).await?.expect("the time owed carries over");
    assert!(owed > Duration::from_millis(500), "{owed:?}");
    Ok(())
}

async fn concurrent_takers_share_one_bucket(s: &dyn StateStore) -> anyhow::Result<()> {
    let t = setup(s).await?;
    let bucket = TokenBucket::new(1, 5);
    let started = Instant::now();
    let answers = futures::future::join_all((0..20).map(|_| s.take_submission_tokens(t.id, bucket, 1))).await;
    let elapsed = started.elapsed();
    let mut taken = 0;
    for a in answers {
        if a?.is_none() {
            taken += 1;
        }
    }
    // The burst, plus one token per whole second the takers ran, never more.
    let refilled = elapsed.as_secs() as usize;
    assert!((5..=5 + refilled).contains(&taken), "{taken} of 20 taken in {elapsed:?}");
    Ok(())
}
