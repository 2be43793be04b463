//! Telling a database that cannot be reached now (retry later) from every other failure.
//!
//! The API answers the first `503 Service Unavailable` with `Retry-After`, the second 500; a
//! submission whose commit may or may not have happened (the connection broke during `COMMIT`) is
//! of the first kind, so the client retries it with its idempotency key, which cannot create the
//! job twice.

use super::StateError;

/// Whether `e` says the database could not be reached or went away: the connection failed or
/// broke, the pool had no connection to give within its acquire timeout, or the server refused
/// or ended the session (SQLSTATE class 08 "connection exception", 57P01–57P03 "admin shutdown",
/// "crash shutdown", "cannot connect now", 53300 "too many connections"; PostgreSQL's Appendix A).
pub fn is_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(d) => {
            d.code().is_some_and(|c| c.starts_with("08") || matches!(c.as_ref(), "57P01" | "57P02" | "57P03" | "53300"))
        }
        _ => false,
    }
}

/// Whether any error in `e`'s chain is an [`is_unavailable`] database error, also inside a
/// [`StateError`] (whose `Internal` variant is transparent, so its own error is not a link of
/// the chain).
pub fn chain_is_unavailable(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<sqlx::Error>().is_some_and(is_unavailable)
            || c.downcast_ref::<StateError>().is_some_and(StateError::is_unavailable)
    })
}

impl StateError {
    /// Whether the database could not be reached (see [`is_unavailable`]): the same call may
    /// succeed later.
    pub fn is_unavailable(&self) -> bool {
        match self {
            StateError::Internal(e) => chain_is_unavailable(e),
            StateError::Conflict(_) | StateError::NotLeader(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broken_connections_and_an_exhausted_pool_are_unavailable_and_bad_sql_is_not() {
        let io = sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert!(is_unavailable(&io));
        assert!(is_unavailable(&sqlx::Error::PoolTimedOut));
        assert!(!is_unavailable(&sqlx::Error::RowNotFound));
        assert!(!is_unavailable(&sqlx::Error::ColumnNotFound("x".into())));
        // Through `anyhow` with context, as the stores return them.
        let wrapped = anyhow::Error::new(sqlx::Error::PoolTimedOut).context("reading the queue");
        assert!(StateError::Internal(wrapped).is_unavailable());
        assert!(!StateError::Internal(anyhow::anyhow!("a decoding error")).is_unavailable());
        assert!(!StateError::NotLeader(3).is_unavailable());
        // A state error carried on by the coordinator as an `anyhow::Error`.
        let carried = anyhow::Error::from(StateError::from(sqlx::Error::PoolTimedOut)).context("submitting");
        assert!(chain_is_unavailable(&carried));
        assert!(!chain_is_unavailable(&anyhow::Error::from(StateError::Conflict("x".into()))));
    }
}
