//! What the processes share (`niyanta serve`'s [`crate::embedded::Node`] and the distributed
//! coordinator of [`crate::cluster`]): the admin key's bootstrap, the API's listener, and the
//! reading of a background task's end.

use std::net::SocketAddr;

use anyhow::Context as _;

use crate::api::{self, AppState, auth};
use crate::state::StateStore;
use crate::tier;

/// Makes sure an admin key exists: `NIYANTA_ADMIN_KEY` when given (added if new), otherwise a
/// generated one on the first start. Returns the generated key.
pub async fn bootstrap_admin(state: &dyn StateStore, from_env: Option<String>) -> anyhow::Result<Option<String>> {
    if let Some(key) = from_env.filter(|k| !k.is_empty()) {
        let digest = auth::key_digest(&key);
        if !matches!(state.principal(digest).await?, Some(crate::state::Principal::Admin)) {
            state.add_api_key(digest, None, false).await?;
        }
        return Ok(None);
    }
    if state.has_admin_key().await? {
        return Ok(None);
    }
    let key = auth::generate_key();
    state.add_api_key(auth::key_digest(&key), None, false).await?;
    Ok(Some(key))
}

/// Serves the API on `listen` as a task of `tasks`, until the returned sender says stop.
/// Returns the bound address (the real port when 0 was asked for).
pub(crate) async fn serve_api(
    tasks: &mut tokio::task::JoinSet<anyhow::Result<()>>,
    app: AppState,
    listen: SocketAddr,
    tiers: &tier::Tiers,
) -> anyhow::Result<(SocketAddr, tokio::sync::watch::Sender<bool>)> {
    let router = api::app(app, usize::try_from(tier::max_body_bytes(tiers)).unwrap_or(usize::MAX));
    let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("listening on {listen}"))?;
    let addr = listener.local_addr()?;
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    tasks.spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                let _ = stopped.wait_for(|s| *s).await;
            })
            .await
            .context("serving the API")
    });
    Ok((addr, stop))
}

/// A background task that ended while the process should run: always an error.
pub(crate) fn task_result(r: Result<anyhow::Result<()>, tokio::task::JoinError>) -> anyhow::Result<()> {
    match r {
        Ok(Ok(())) => Err(anyhow::anyhow!("a background task ended unexpectedly")),
        Ok(Err(e)) => Err(e),
        Err(e) => Err(anyhow::Error::new(e).context("a background task panicked")),
    }
}
