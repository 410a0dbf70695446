//! Group commit of refresh-token rotations.
//!
//! Every refresh grant ends in a rotation: the old token marked rotated and its successor
//! stored, durably, before the answer. Alone, each is a hand-off to a blocking thread, a pooled
//! connection, a statement and a commit (on PostgreSQL a WAL flush). Rotation threads instead
//! take every rotation waiting at the moment they wake and write them together: one statement
//! and one commit on PostgreSQL (`unnest` of one array per column), one transaction on SQLite.
//! Nothing waits for a batch to fill: a rotation that arrives while the database is idle is
//! written at once; those that arrive while a batch is being written make the next one.
//!
//! Each rotation keeps its own outcome: the conditional UPDATE decides per old token, and a
//! batch never holds the same old token twice (a second exchange of the same token goes to the
//! next batch, where it finds the token rotated: reuse, as when the two were written one by one).
//! Nobody is answered before the commit that holds their rotation; a batch that fails fails each
//! of its rotations, which changes nothing (the transaction rolls back).

use std::collections::HashSet;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};

use diesel::prelude::*;
use diesel::r2d2::{Pool, PooledConnection};
use latch_core::StoreError;
use tokio::sync::oneshot;

use crate::conn::{Backend, DbConnection, Manager};
use crate::rows::RefreshRow;
use crate::schema::refresh_tokens;

/// Most rotations in one batch.
const BATCH: usize = 64;

struct Job {
    old: String,
    now: i64,
    new: RefreshRow,
    done: oneshot::Sender<Result<bool, StoreError>>,
}

/// The queue the rotation threads take batches from. Cheap to share; the threads end when the
/// last store clone is dropped.
pub(crate) struct Rotations {
    tx: Mutex<Sender<Job>>,
}

impl Rotations {
    /// Starts the rotation threads: two on PostgreSQL (a batch can gather while the previous
    /// one commits), one on SQLite (it has one writer).
    pub fn start(
        pool: Pool<Manager>,
        manager: Arc<Manager>,
        write_lock: Arc<Mutex<()>>,
        backend: Backend,
    ) -> Self {
        let (tx, rx) = channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let threads = if backend == Backend::Sqlite { 1 } else { 2 };
        for n in 0..threads {
            let (rx, pool, manager, lock) = (
                rx.clone(),
                pool.clone(),
                manager.clone(),
                write_lock.clone(),
            );
            // A thread that cannot start leaves the others (or, with none, every rotation
            // answers "unavailable" as its job is dropped).
            if let Err(e) = std::thread::Builder::new()
                .name(format!("latch-rotate-{n}"))
                .spawn(move || worker(&rx, &pool, &manager, &lock, backend))
            {
                tracing::error!(error = %e, "could not start a refresh token rotation thread");
            }
        }
        Self { tx: Mutex::new(tx) }
    }

    /// Rotates `old` into `new` at `now` (milliseconds) in the next batch; see
    /// [`latch_core::store::RefreshTokenRepo::rotate_refresh_token`].
    pub async fn rotate(&self, old: String, now: i64, new: RefreshRow) -> Result<bool, StoreError> {
        let (done, answer) = oneshot::channel();
        let job = Job {
            old,
            now,
            new,
            done,
        };
        let sent = self
            .tx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(job)
            .is_ok();
        if !sent {
            return Err(gone());
        }
        answer.await.unwrap_or_else(|_| Err(gone()))
    }
}

fn gone() -> StoreError {
    StoreError::Unavailable("the refresh token rotation threads stopped".into())
}

fn worker(
    rx: &Mutex<Receiver<Job>>,
    pool: &Pool<Manager>,
    manager: &Manager,
    write_lock: &Mutex<()>,
    backend: Backend,
) {
    loop {
        // One thread at a time gathers: it waits for the first rotation, then takes what else
        // is queued.
        let jobs = {
            let rx = rx.lock().unwrap_or_else(|p| p.into_inner());
            let Ok(first) = rx.recv() else {
                return;
            };
            let mut jobs = vec![first];
            while jobs.len() < BATCH {
                match rx.try_recv() {
                    Ok(j) => jobs.push(j),
                    Err(_) => break,
                }
            }
            jobs
        };
        let mut pending = jobs;
        while !pending.is_empty() {
            // The same old token twice: the second waits for the next batch.
            let mut seen = HashSet::new();
            let (batch, again): (Vec<Job>, Vec<Job>) = pending
                .into_iter()
                .partition(|j| seen.insert(j.old.clone()));
            write(batch, pool, manager, write_lock, backend);
            pending = again;
        }
    }
}

/// Writes one batch and answers each of its rotations. A batch that fails for a reason other
/// than an unreachable database is written again one rotation at a time, so that a rotation
/// fails only for its own reason.
fn write(
    batch: Vec<Job>,
    pool: &Pool<Manager>,
    manager: &Manager,
    write_lock: &Mutex<()>,
    backend: Backend,
) {
    let result = {
        let _turn = (backend == Backend::Sqlite)
            .then(|| write_lock.lock().unwrap_or_else(|p| p.into_inner()));
        match pool.get() {
            Ok(mut conn) => crate::checked(manager, &mut conn, |c| rotate_batch(c, &batch)),
            Err(e) => Err(StoreError::Unavailable(Box::new(e))),
        }
    };
    match result {
        Ok(rotated) => {
            for j in batch {
                let won = rotated.contains(&j.old);
                let _ = j.done.send(Ok(won));
            }
        }
        Err(e) if batch.len() > 1 && !matches!(e, StoreError::Unavailable(_)) => {
            tracing::warn!(error = %e, rotations = batch.len(), "a refresh token rotation batch failed; writing its rotations one by one");
            for j in batch {
                write(vec![j], pool, manager, write_lock, backend);
            }
        }
        Err(e) => {
            if batch.len() > 1 {
                tracing::warn!(error = %e, rotations = batch.len(), "refresh token rotation batch failed");
            }
            let mut batch = batch.into_iter();
            let first = batch.next();
            for j in batch {
                let _ = j
                    .done
                    .send(Err(StoreError::Unavailable(e.to_string().into())));
            }
            if let Some(j) = first {
                let _ = j.done.send(Err(e));
            }
        }
    }
}

/// The old ids of the batch that were rotated (their successors stored), in one transaction.
fn rotate_batch(
    conn: &mut PooledConnection<Manager>,
    batch: &[Job],
) -> Result<HashSet<String>, StoreError> {
    let err = crate::rows::db_err("refresh token", "digest");
    if let DbConnection::Pg(pg) = &mut **conn {
        let q = RotateBatchPg::new(batch);
        let rotated: Vec<String> = q.load(pg).map_err(err)?;
        return Ok(rotated.into_iter().collect());
    }
    conn.transaction::<_, diesel::result::Error, _>(|c| {
        let mut rotated = HashSet::new();
        for j in batch {
            let n = diesel::update(
                refresh_tokens::table
                    .find(&j.old)
                    .filter(refresh_tokens::rotated_at.is_null())
                    .filter(refresh_tokens::revoked_at.is_null())
                    .filter(refresh_tokens::expires_at.gt(j.now)),
            )
            .set(refresh_tokens::rotated_at.eq(Some(j.now)))
            .execute(c)?;
            if n == 1 {
                diesel::insert_into(refresh_tokens::table)
                    .values(&j.new)
                    .execute(c)?;
                rotated.insert(j.old.clone());
            }
        }
        Ok(rotated)
    })
    .map_err(err)
}

/// A batch of rotations on PostgreSQL as one statement: the rotations arrive as one array per
/// column (`unnest`). Returns the ids of the old tokens it rotated.
///
/// Planned at each execution, not prepared once per connection: a plan made while the table was
/// small joins the batch to a sequential scan of `refresh_tokens` and keeps doing so as the
/// table grows (measured: the refresh rate fell by half within 30 seconds). Planned with the
/// table's size at the time, it looks each old token up by its primary key; the planning is
/// shared by the batch's rotations.
struct RotateBatchPg {
    old: Vec<String>,
    now: Vec<i64>,
    id: Vec<String>,
    digest: Vec<String>,
    family_id: Vec<String>,
    user_id: Vec<String>,
    client_id: Vec<String>,
    session_id: Vec<Option<String>>,
    scope: Vec<String>,
    offline: Vec<bool>,
    created_at: Vec<i64>,
    expires_at: Vec<i64>,
    family_expires_at: Vec<i64>,
}

impl RotateBatchPg {
    fn new(batch: &[Job]) -> Self {
        let col = |f: fn(&Job) -> String| batch.iter().map(f).collect::<Vec<_>>();
        Self {
            old: col(|j| j.old.clone()),
            now: batch.iter().map(|j| j.now).collect(),
            id: col(|j| j.new.id.clone()),
            digest: col(|j| j.new.digest.clone()),
            family_id: col(|j| j.new.family_id.clone()),
            user_id: col(|j| j.new.user_id.clone()),
            client_id: col(|j| j.new.client_id.clone()),
            session_id: batch.iter().map(|j| j.new.session_id.clone()).collect(),
            scope: col(|j| j.new.scope.clone()),
            offline: batch.iter().map(|j| j.new.offline).collect(),
            created_at: batch.iter().map(|j| j.new.created_at).collect(),
            expires_at: batch.iter().map(|j| j.new.expires_at).collect(),
            family_expires_at: batch.iter().map(|j| j.new.family_expires_at).collect(),
        }
    }
}

impl diesel::query_builder::QueryId for RotateBatchPg {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl diesel::query_builder::Query for RotateBatchPg {
    type SqlType = diesel::sql_types::Text;
}

impl diesel::query_builder::QueryFragment<diesel::pg::Pg> for RotateBatchPg {
    fn walk_ast<'b>(
        &'b self,
        mut out: diesel::query_builder::AstPass<'_, 'b, diesel::pg::Pg>,
    ) -> diesel::QueryResult<()> {
        use diesel::sql_types::{Array, BigInt, Bool, Nullable, Text};
        out.unsafe_to_cache_prepared();
        out.push_sql("WITH i AS (SELECT * FROM unnest(");
        out.push_bind_param::<Array<Text>, _>(&self.old)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<BigInt>, _>(&self.now)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Text>, _>(&self.id)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Text>, _>(&self.digest)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Text>, _>(&self.family_id)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Text>, _>(&self.user_id)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Text>, _>(&self.client_id)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Nullable<Text>>, _>(&self.session_id)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Text>, _>(&self.scope)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Bool>, _>(&self.offline)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<BigInt>, _>(&self.created_at)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<BigInt>, _>(&self.expires_at)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<BigInt>, _>(&self.family_expires_at)?;
        out.push_sql(
            ") AS t(old, now, id, digest, family_id, user_id, client_id, session_id, scope, \
             offline, created_at, expires_at, family_expires_at)), \
             old AS (UPDATE refresh_tokens r SET rotated_at = i.now FROM i \
             WHERE r.id = i.old AND r.rotated_at IS NULL AND r.revoked_at IS NULL \
             AND r.expires_at > i.now RETURNING r.id), \
             new AS (INSERT INTO refresh_tokens (id, digest, family_id, user_id, client_id, \
             session_id, scope, offline, created_at, expires_at, family_expires_at, rotated_at, \
             revoked_at) SELECT i.id, i.digest, i.family_id, i.user_id, i.client_id, \
             i.session_id, i.scope, i.offline, i.created_at, i.expires_at, i.family_expires_at, \
             NULL, NULL FROM i JOIN old ON old.id = i.old) \
             SELECT id FROM old",
        );
        Ok(())
    }
}

impl diesel::RunQueryDsl<diesel::pg::PgConnection> for RotateBatchPg {}
