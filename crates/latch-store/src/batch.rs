//! Threads that serve a queue of jobs in batches: a thread waits for the first job, takes every
//! other job waiting at that moment (up to a limit) and hands them to the batch's function. A
//! job that arrives while the database is idle is served at once; those that arrive while a batch
//! is under way make the next one. Used where many requests would each pay a thread hand-off, a
//! round trip and a commit for a few rows (refresh token lookups and rotations).

use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};

use latch_core::StoreError;
use tokio::sync::oneshot;

use crate::conn::{Backend, DbConnection, Manager};

/// Where a job's answer goes.
pub(crate) type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// A job queue and its threads. The threads end when the batcher is dropped.
pub(crate) struct Batcher<J> {
    tx: Sender<J>,
    what: &'static str,
}

impl<J: Send + 'static> Batcher<J> {
    /// Starts `threads` threads named `{name}-{n}`, each running `run` on batches of at most
    /// `max` jobs. `run` answers every job of its batch; a batch whose `run` panics is answered
    /// "unavailable" and the thread goes on with the next.
    pub fn start(
        name: &'static str,
        what: &'static str,
        threads: usize,
        max: usize,
        run: impl Fn(Vec<J>) + Send + Sync + 'static,
    ) -> Result<Self, StoreError> {
        let (tx, rx) = channel::<J>();
        let rx = Arc::new(Mutex::new(rx));
        let run = Arc::new(run);
        for n in 0..threads {
            let (rx, run) = (rx.clone(), run.clone());
            std::thread::Builder::new()
                .name(format!("{name}-{n}"))
                .spawn(move || serve(&rx, max, &*run))
                .map_err(|e| StoreError::Internal(Box::new(e)))?;
        }
        Ok(Self { tx, what })
    }

    /// Queues the job `make` builds around its reply, and waits for the answer.
    pub async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> J) -> Result<T, StoreError> {
        let (done, answer) = oneshot::channel();
        let sent = self.tx.send(make(done)).is_ok();
        if !sent {
            return Err(self.gone());
        }
        answer.await.unwrap_or_else(|_| Err(self.gone()))
    }

    fn gone(&self) -> StoreError {
        StoreError::Unavailable(format!("the {} threads stopped", self.what).into())
    }
}

fn serve<J>(rx: &Mutex<Receiver<J>>, max: usize, run: &dyn Fn(Vec<J>)) {
    loop {
        // One thread at a time gathers: it waits for the first job, then takes what else is
        // queued.
        let jobs = {
            let rx = rx.lock().unwrap_or_else(|p| p.into_inner());
            let Ok(first) = rx.recv() else {
                return;
            };
            let mut jobs = vec![first];
            while jobs.len() < max {
                match rx.try_recv() {
                    Ok(j) => jobs.push(j),
                    Err(_) => break,
                }
            }
            jobs
        };
        // The jobs' replies are dropped with a panicking batch: its callers get "unavailable".
        let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(jobs)));
        if ran.is_err() {
            tracing::error!("a batch thread's batch panicked; its jobs were answered unavailable");
        }
    }
}

/// What a batch thread needs to reach the database.
#[derive(Clone)]
pub(crate) struct Db {
    pub manager: Arc<Manager>,
    pub write_lock: Arc<Mutex<()>>,
    pub backend: Backend,
}

/// Limits on a batch thread's own PostgreSQL connection. One thread serves every rotation (or
/// read) of its kind on the instance, so a statement that waits on a row lock held elsewhere (an
/// open transaction in psql, a long delete) would hold up all of them: past these it fails with
/// 503 and changes nothing, and the callers retry.
const PG_LIMITS: &str = "SET lock_timeout = '2s'; SET statement_timeout = '10s';";

/// A batch thread's own connection, opened at first use and again after one stops answering.
/// (Not from the pool: its limits would be left on a connection other queries use.)
pub(crate) type OwnConn = Mutex<Option<DbConnection>>;

/// Runs `f` on the thread's own connection (after the write turn on SQLite when `write`). A
/// failure after which the connection does not answer drops it (the next batch opens another)
/// and is "unavailable", as is a statement PostgreSQL cancelled at [`PG_LIMITS`].
pub(crate) fn with_conn<T>(
    db: &Db,
    own: &OwnConn,
    write: bool,
    f: impl FnOnce(&mut DbConnection) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    use diesel::connection::SimpleConnection;
    use diesel::r2d2::ManageConnection;
    let _turn = (write && db.backend == Backend::Sqlite)
        .then(|| db.write_lock.lock().unwrap_or_else(|p| p.into_inner()));
    let mut slot = own.lock().unwrap_or_else(|p| p.into_inner());
    let conn = match &mut *slot {
        Some(conn) => conn,
        None => {
            let mut conn = db
                .manager
                .connect()
                .map_err(|e| StoreError::Unavailable(Box::new(e)))?;
            if let DbConnection::Pg(pg) = &mut conn {
                pg.batch_execute(PG_LIMITS)
                    .map_err(|e| StoreError::Unavailable(Box::new(e)))?;
            }
            slot.insert(conn)
        }
    };
    let out = f(conn);
    match out {
        Err(StoreError::Internal(e)) if db.manager.is_valid(conn).is_err() => {
            *slot = None;
            Err(StoreError::Unavailable(e))
        }
        Err(StoreError::Internal(e)) if cancelled(&*e) => Err(StoreError::Unavailable(e)),
        other => other,
    }
}

/// PostgreSQL cancelled the statement at its lock or statement timeout (SQLSTATE 55P03 or
/// 57014, which diesel does not name).
fn cancelled(e: &(dyn std::error::Error + Send + Sync + 'static)) -> bool {
    e.downcast_ref::<diesel::result::Error>()
        .is_some_and(|e| match e {
            diesel::result::Error::DatabaseError(_, info) => {
                info.message().starts_with("canceling statement due to")
            }
            _ => false,
        })
}

/// A batch's error for each of its jobs: the first gets `e` itself, the others a copy that
/// keeps its cause's text.
pub(crate) fn answer_all<T>(replies: Vec<Reply<T>>, e: StoreError) {
    let mut replies = replies.into_iter();
    let first = replies.next();
    let text = describe(&e);
    for r in replies {
        let copy: Box<dyn std::error::Error + Send + Sync> = text.clone().into();
        let _ = r.send(Err(match e {
            StoreError::Unavailable(_) => StoreError::Unavailable(copy),
            _ => StoreError::Internal(copy),
        }));
    }
    if let Some(r) = first {
        let _ = r.send(Err(e));
    }
}

/// An error with its chain of causes, for copies and logs (`StoreError`'s own text is only
/// "database error").
pub(crate) fn describe(e: &StoreError) -> String {
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// A query diesel does not keep prepared: PostgreSQL plans it at each execution, with the
/// table's size and the batch's length at that time. A prepared statement's generic plan, made
/// while a table was small, scans it sequentially and keeps doing so as it grows (measured on
/// the batched refresh queries: the rate fell by half within 30 seconds); the planning is
/// shared by the batch's jobs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Planned<Q>(pub Q);

impl<Q> diesel::query_builder::QueryId for Planned<Q> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<Q: diesel::query_builder::Query> diesel::query_builder::Query for Planned<Q> {
    type SqlType = Q::SqlType;
}

impl<Q, DB> diesel::query_builder::QueryFragment<DB> for Planned<Q>
where
    DB: diesel::backend::Backend,
    Q: diesel::query_builder::QueryFragment<DB>,
{
    fn walk_ast<'b>(
        &'b self,
        mut out: diesel::query_builder::AstPass<'_, 'b, DB>,
    ) -> diesel::QueryResult<()> {
        out.unsafe_to_cache_prepared();
        self.0.walk_ast(out)
    }
}

impl<Q, Conn> diesel::RunQueryDsl<Conn> for Planned<Q> {}

#[cfg(test)]
mod tests {
    use super::*;

    /// Jobs waiting together are served together, each gets its own answer, and a batch that
    /// panics costs only its own jobs an "unavailable": the thread serves the next one.
    #[tokio::test]
    async fn batches_answer_each_job_and_survive_a_panic() {
        let b: Batcher<(u32, Reply<u32>)> = Batcher::start(
            "test-batch",
            "test",
            1,
            8,
            |jobs: Vec<(u32, Reply<u32>)>| {
                if jobs.iter().any(|(n, _)| *n == 13) {
                    panic!("unlucky batch");
                }
                let size = u32::try_from(jobs.len()).unwrap();
                for (n, reply) in jobs {
                    let _ = reply.send(Ok(n * 100 + size));
                }
            },
        )
        .unwrap();
        let answers =
            futures_util::future::join_all((1..=5).map(|n| b.call(move |done| (n, done)))).await;
        for (n, a) in (1..=5).zip(answers) {
            let a = a.unwrap();
            assert_eq!(a / 100, n, "job {n} got its own answer");
        }
        assert!(matches!(
            b.call(|done| (13, done)).await,
            Err(StoreError::Unavailable(_))
        ));
        assert_eq!(b.call(|done| (2, done)).await.unwrap(), 201);
    }
}
