//! The connection pool and its sessions, made safe against work cancelled half-way.
//!
//! A future that holds a pooled connection can be dropped at any `.await` (a task stopped, a
//! `select!` or timeout that lost, a client that went away). sqlx 0.9.1 rolls back a transaction
//! whose `BEGIN` was in flight when that happened (sqlx pull request 4394; 0.9.0 left the session
//! inside it, and the pool handed it to the next caller, whose statements then ran, uncommitted,
//! inside a transaction nothing would end). On top of that:
//!
//! - a connection goes back to the pool only when the server says it is outside any transaction
//!   ([`released_clean`]); otherwise it is closed, which makes the server roll back;
//! - the server itself ends a session left idle inside a transaction for
//!   [`IDLE_IN_TRANSACTION_TIMEOUT`] (`idle_in_transaction_session_timeout`), so that a paused or
//!   wedged process cannot hold row locks (the leader row's among them) for longer;
//! - connections are replaced after [`MAX_LIFETIME`].

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection as _, PgConnection};

/// How long the server lets a session sit idle inside a transaction before it ends the session
/// (and so rolls the transaction back). Niyanta never waits on anything but the database inside a
/// transaction, so only a process that is paused, wedged or cut off reaches it. It equals the
/// default leader term (3 s): the locks of a paused leader's transaction (its fence holds the
/// `leader` row) never keep another coordinator from taking over for longer than the term.
pub const IDLE_IN_TRANSACTION_TIMEOUT: Duration = Duration::from_secs(3);

/// A connection older than this is closed and replaced (sqlx's own default, stated here).
pub const MAX_LIFETIME: Duration = Duration::from_secs(30 * 60);

/// The session options of every connection: the schema, the idle-in-transaction timeout, and an
/// `application_name` (`niyanta` or `niyanta/{schema}`) by which `pg_stat_activity` shows them.
pub(super) fn session(opts: PgConnectOptions, schema: Option<&str>) -> PgConnectOptions {
    let timeout = format!("{}ms", IDLE_IN_TRANSACTION_TIMEOUT.as_millis());
    let opts = opts.options([("idle_in_transaction_session_timeout", timeout.as_str())]);
    match schema {
        Some(schema) => opts.options([("search_path", schema)]).application_name(&format!("niyanta/{schema}")),
        None => opts.application_name("niyanta"),
    }
}

/// How long a caller waits for a connection: when the server cannot be reached the API answers
/// 503 after this long (sqlx retries refused connections until then).
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// The pool's options: `max_connections` (at least 2), [`ACQUIRE_TIMEOUT`], [`MAX_LIFETIME`],
/// and [`released_clean`] on every release.
pub(super) fn options(max_connections: u32) -> PgPoolOptions {
    // No ping before each acquire (sqlx's default): it is a round trip to the server per
    // statement. A connection that broke (a restarted server) fails one statement and is
    // closed; nothing is lost by it: reports are answered only after their commit and sent
    // again, scheduling rounds run again, and a submission that failed was answered with an
    // error, not accepted.
    PgPoolOptions::new()
        .max_connections(max_connections.max(2))
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .max_lifetime(MAX_LIFETIME)
        .test_before_acquire(false)
        .after_release(|conn, _meta| Box::pin(async move { released_clean(conn).await }))
}

/// Whether a connection handed back to the pool may be reused: `false` (it is closed, and the
/// server rolls back what it held) when sqlx still counts a transaction on it, or when the
/// server says the session is inside one. The second is asked with one statement over the simple
/// query protocol: outside an explicit transaction such a statement is a transaction of its own,
/// whose start time is the statement's (PostgreSQL's `StartTransaction` takes the statement's
/// timestamp), while inside one the transaction began earlier.
///
/// Errors: a connection that cannot answer is reported as the error, and sqlx closes it.
pub async fn released_clean(conn: &mut PgConnection) -> Result<bool, sqlx::Error> {
    if conn.is_in_transaction() {
        crate::metrics::connection_discarded();
        tracing::warn!("a pooled connection came back inside a transaction; closing it");
        return Ok(false);
    }
    let row = sqlx::raw_sql("SELECT transaction_timestamp() = statement_timestamp()").fetch_one(&mut *conn).await?;
    let outside: bool = sqlx::Row::try_get(&row, 0)?;
    if !outside {
        crate::metrics::connection_discarded();
        tracing::warn!("a pooled connection came back inside a transaction the server still holds; closing it");
    }
    Ok(outside)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use sqlx::postgres::PgConnectOptions;
    use sqlx::{Connection as _, PgConnection, PgPool};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use tokio::sync::watch;

    use super::*;

    fn test_options() -> anyhow::Result<PgConnectOptions> {
        let url = std::env::var("NIYANTA_TEST_DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
        Ok(url.parse()?)
    }

    /// Whether the server holds this pooled connection's session inside a transaction:
    /// `SAVEPOINT` fails outside one.
    async fn server_in_transaction(pool: &PgPool) -> anyhow::Result<bool> {
        let mut conn = pool.acquire().await?;
        let inside = sqlx::raw_sql("SAVEPOINT probe").execute(&mut *conn).await.is_ok();
        Ok(inside)
    }

    /// A loopback TCP proxy in front of PostgreSQL that can hold back the server's answers
    /// (while `hold` is `true`), to cancel a statement after it reached the server.
    struct Proxy {
        port: u16,
        hold: Arc<watch::Sender<bool>>,
    }

    async fn proxy(host: String, port: u16) -> anyhow::Result<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let local = listener.local_addr()?.port();
        let (hold, held) = watch::channel(false);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect((host.as_str(), port)).await else { return };
                tokio::spawn(pipe(client, server, held.clone()));
            }
        });
        Ok(Proxy { port: local, hold: Arc::new(hold) })
    }

    async fn pipe(client: TcpStream, server: TcpStream, mut held: watch::Receiver<bool>) {
        let (mut from_client, mut to_client) = client.into_split();
        let (mut from_server, mut to_server) = server.into_split();
        tokio::spawn(async move { tokio::io::copy(&mut from_client, &mut to_server).await });
        let mut buf = vec![0u8; 16 * 1024];
        while let Ok(n) = from_server.read(&mut buf).await {
            if n == 0 {
                return;
            }
            while *held.borrow() {
                if held.changed().await.is_err() {
                    return;
                }
            }
            if to_client.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    }

    /// The state `pg_stat_activity` shows for the session `pid`, once it is not running a statement.
    async fn session_state(other: &mut PgConnection, pid: i32) -> anyhow::Result<Option<String>> {
        loop {
            let state: Option<String> = sqlx::query_scalar("SELECT state FROM pg_stat_activity WHERE pid = $1")
                .bind(pid)
                .fetch_optional(&mut *other)
                .await?;
            // The pool's check on release may be running at this moment.
            if state.as_deref() != Some("active") {
                return Ok(state);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits until the pool's one connection is back and idle (its release, which talks to the
    /// server, is done).
    async fn idle(pool: &PgPool) {
        while pool.num_idle() < 1 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn a_transaction_cancelled_at_its_begin_leaves_its_pooled_connection_clean() -> anyhow::Result<()> {
        let direct = test_options()?;
        let p = proxy(direct.get_host().to_owned(), direct.get_port()).await?;
        let opts = session(direct.clone().host("127.0.0.1").port(p.port), None);
        // One connection, so the next caller gets the very connection whose BEGIN was cut off.
        let pool = options(1).max_connections(1).connect_with(opts).await?;
        let mut other = PgConnection::connect_with(&direct).await?;
        for _ in 0..3 {
            let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()").fetch_one(&pool).await?;
            idle(&pool).await;
            // BEGIN reaches the server (which then shows the session inside a transaction); its
            // answer is held back until the caller gave up.
            p.hold.send_replace(true);
            let (begun, during) = tokio::join!(tokio::time::timeout(Duration::from_millis(300), pool.begin()), async {
                tokio::time::sleep(Duration::from_millis(150)).await;
                session_state(&mut other, pid).await
            });
            assert!(begun.is_err(), "BEGIN answered although its answer was held back");
            assert_eq!(during?.as_deref(), Some("idle in transaction"), "BEGIN did not reach the server");
            p.hold.send_replace(false);

            assert!(
                !server_in_transaction(&pool).await?,
                "the next caller's session is inside the cut-off transaction"
            );
            let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()").fetch_one(&pool).await?;
            idle(&pool).await;
            assert_eq!(session_state(&mut other, pid).await?.as_deref(), Some("idle"), "the pooled session's state");
        }
        other.close().await?;
        pool.close().await;
        Ok(())
    }

    #[tokio::test]
    async fn a_connection_the_server_holds_inside_a_transaction_is_not_reused() -> anyhow::Result<()> {
        let opts = session(test_options()?, None);
        // What sqlx does not count: a transaction begun by a raw statement.
        let mut conn = PgConnection::connect_with(&opts).await?;
        assert!(released_clean(&mut conn).await?);
        sqlx::raw_sql("BEGIN").execute(&mut conn).await?;
        assert!(!conn.is_in_transaction(), "sqlx counts no transaction");
        assert!(!released_clean(&mut conn).await?, "the server's transaction was not seen");
        sqlx::raw_sql("ROLLBACK").execute(&mut conn).await?;
        assert!(released_clean(&mut conn).await?);
        conn.close().await?;

        // Through the pool: the session is closed rather than handed to the next caller.
        let pool = options(1).max_connections(1).connect_with(opts).await?;
        {
            let mut c = pool.acquire().await?;
            sqlx::raw_sql("BEGIN").execute(&mut *c).await?;
        }
        assert!(!server_in_transaction(&pool).await?);
        pool.close().await;
        Ok(())
    }

    #[tokio::test]
    async fn sessions_carry_the_idle_in_transaction_timeout_and_their_name() -> anyhow::Result<()> {
        let mut conn = PgConnection::connect_with(&session(test_options()?, Some("public"))).await?;
        let timeout: String =
            sqlx::query_scalar("SHOW idle_in_transaction_session_timeout").fetch_one(&mut conn).await?;
        assert_eq!(timeout, format!("{}s", IDLE_IN_TRANSACTION_TIMEOUT.as_secs()));
        let name: String = sqlx::query_scalar("SHOW application_name").fetch_one(&mut conn).await?;
        assert_eq!(name, "niyanta/public");
        conn.close().await?;
        Ok(())
    }
}
