//! Threads that serve a queue of jobs in batches: a thread waits for the first job, takes every
//! other job waiting at that moment (up to a limit) and hands them to the batch's function. A
//! job that arrives while the database is idle is served at once; those that arrive while a batch
//! is under way make the next one. Used where many requests would each pay a thread hand-off, a
//! round trip and a commit for a few rows (refresh token lookups and rotations).

use std::collections::HashMap;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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

/// The batch connection's prepared statements keep a generic plan (see [`GenericPlans`]).
const PG_GENERIC: &str = "SET plan_cache_mode = force_generic_plan;";

/// A batch thread's own connection, opened at first use and again after one stops answering,
/// with the checks of its statements' plans. (Not from the pool: its settings would be left on
/// a connection other queries use.)
pub(crate) struct OwnConn {
    slot: Mutex<Option<(DbConnection, GenericPlans)>>,
    /// Whether its statements keep checked generic plans ([`GenericPlans`]) on PostgreSQL, or
    /// are planned at each execution for their values.
    generic: bool,
}

impl OwnConn {
    /// A connection whose statements keep checked generic plans (the refresh grant's).
    pub(crate) fn generic() -> Self {
        Self {
            slot: Mutex::new(None),
            generic: true,
        }
    }

    /// A connection whose statements are planned at each execution (a GTR's reads: their
    /// generic plans mostly fail the check, see `user_reads`).
    pub(crate) fn planned() -> Self {
        Self {
            slot: Mutex::new(None),
            generic: false,
        }
    }
}

/// Runs `f` on the thread's own connection (after the write turn on SQLite when `write`). A
/// failure after which the connection does not answer drops it (the next batch opens another)
/// and is "unavailable", as is a statement PostgreSQL cancelled at [`PG_LIMITS`].
pub(crate) fn with_conn<T>(
    db: &Db,
    own: &OwnConn,
    write: bool,
    f: impl FnOnce(&mut DbConnection, &mut GenericPlans) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    use diesel::r2d2::ManageConnection;
    let _turn = (write && db.backend == Backend::Sqlite)
        .then(|| db.write_lock.lock().unwrap_or_else(|p| p.into_inner()));
    let mut slot = own.slot.lock().unwrap_or_else(|p| p.into_inner());
    let (conn, plans) = match &mut *slot {
        Some((conn, plans)) => {
            // A connection whose generic plans failed their checks is replaced (when another
            // can be opened), so that its statements are prepared again and their plans made
            // for the tables as they are now.
            if plans.renewal_due()
                && let Ok(fresh) = open(db, own.generic)
            {
                *conn = fresh;
                plans.renewed();
            }
            (conn, plans)
        }
        None => {
            let plans = GenericPlans::new(db.manager.clone(), own.generic);
            let (conn, plans) = slot.insert((open(db, own.generic)?, plans));
            (conn, plans)
        }
    };
    let out = f(conn, plans);
    match out {
        Err(StoreError::Internal(e)) if db.manager.is_valid(conn).is_err() => {
            *slot = None;
            Err(StoreError::Unavailable(e))
        }
        Err(StoreError::Internal(e)) if cancelled(&*e) => Err(StoreError::Unavailable(e)),
        other => other,
    }
}

/// A new connection for a batch thread, with [`PG_LIMITS`] on PostgreSQL, and [`PG_GENERIC`]
/// when its statements keep generic plans.
fn open(db: &Db, generic: bool) -> Result<DbConnection, StoreError> {
    use diesel::connection::SimpleConnection;
    use diesel::r2d2::ManageConnection;
    let mut conn = db
        .manager
        .connect()
        .map_err(|e| StoreError::Unavailable(Box::new(e)))?;
    if let DbConnection::Pg(pg) = &mut conn {
        let generic = if generic { PG_GENERIC } else { "" };
        pg.batch_execute(&format!("{PG_LIMITS} {generic}"))
            .map_err(|e| StoreError::Unavailable(Box::new(e)))?;
    }
    Ok(conn)
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

/// How often a batch connection checks the generic plan of each statement it keeps prepared.
const PLAN_CHECK_EVERY: Duration = Duration::from_secs(1);

/// A plan in use is checked again after this many executions, if that comes before
/// [`PLAN_CHECK_EVERY`]: while tables grow fast (a GTR bench's 8,000 users seeded in 5 s), a
/// second of executions with a plan gone stale held single-session GTR at about 1,000/s.
const PLAN_CHECK_RUNS: u32 = 64;

/// A table a checked generic plan scans whole may grow to twice the size it had when the plan
/// was first checked, or to this (8 pages of 8 KiB), whichever is larger.
const SEQ_SCAN_FREE_BYTES: i64 = 64 * 1024;

/// The highest estimated cost of a checked generic plan, in PostgreSQL's units (one sequential
/// page read is 1). A generic plan assumes 10 values in each `= ANY($n)` array and 10 rows from
/// each `unnest`, so the batch statements' right plans (index probes per assumed value and
/// joined table, about 8.4 each) cost 85–260; an index condition on a column that does not
/// narrow the read (the identities' connection alone, with issuer and subject left to a filter)
/// costs in proportion to the table, over 1,000 in the GTR bench.
const GENERIC_PLAN_MAX_COST: f64 = 500.0;

/// The refresh grant's batched PostgreSQL statements ([`OwnConn::generic`]), run prepared with
/// a generic plan while that plan is one whose cost does not grow with the tables, and planned
/// at each execution ([`Planned`]) otherwise.
///
/// Planning the batch statements at each execution took about a third of PostgreSQL's CPU in
/// the refresh bench. But a generic plan is made once, with the tables' sizes at that moment,
/// and PostgreSQL makes it again only when something invalidates it (an `ANALYZE`, a schema
/// change): one made while `refresh_tokens` was small scanned it sequentially as it grew (the
/// refresh rate fell by half within 30 seconds), and with sequential scans turned off, the
/// planner chose whole-index scans with a filter instead. So each connection checks the plan it
/// actually holds: at the first execution and then every [`PLAN_CHECK_EVERY`] or
/// [`PLAN_CHECK_RUNS`] executions, whichever comes first, it asks
/// PostgreSQL for the plan of its prepared statement (`EXPLAIN EXECUTE`) and keeps using it only
/// if its estimated cost is at most [`GENERIC_PLAN_MAX_COST`], it reads no index without an
/// index condition, and each table it scans whole is at most twice as large as when the plan
/// was first checked (or [`SEQ_SCAN_FREE_BYTES`]): the planner chose that scan over the index at
/// that size, so at twice the size it reads at most twice as much.
///
/// A plan that fails is not used again. The statement is planned at each execution, for its
/// binds' values, on a second connection of the thread's (opened when first needed, with the
/// same limits and PostgreSQL's default plan choice, which plans an unnamed statement for its
/// values; under `force_generic_plan` it would be planned without them, and the identities read
/// of a GTR, planned so, scanned every identity of the connection: 2,900 → 560 GTRs/s). The
/// first connection is replaced a little later (after [`PLAN_CHECK_EVERY`], doubling each time
/// up to [`RENEW_AFTER_MAX`]), so that its statements are prepared again with plans made for
/// the tables as they are then.
pub(crate) struct GenericPlans {
    /// Whether the statements keep generic plans at all ([`OwnConn::generic`]).
    enabled: bool,
    /// Opens the second connection.
    manager: Arc<Manager>,
    /// The second connection, for statements planned at each execution.
    planned: Option<diesel::PgConnection>,
    /// By statement text: its last check.
    checked: HashMap<String, Checked>,
    /// How old a check may be ([`PLAN_CHECK_EVERY`]).
    every: Duration,
    /// When the connection is to be replaced, set by a failed check.
    renew_at: Option<Instant>,
    /// How long after a failed check: [`PLAN_CHECK_EVERY`] at first, doubling with each
    /// replacement up to [`RENEW_AFTER_MAX`] (a statement whose generic plan is never good
    /// costs a new connection that often, and is planned per execution meanwhile).
    renew_after: Duration,
}

/// A statement's last plan check.
struct Checked {
    good: bool,
    at: Instant,
    /// Executions with its generic plan since.
    runs: u32,
    /// The size in bytes of each table its plan scans whole, when first seen in a check.
    scanned: HashMap<String, i64>,
}

/// The longest wait before a connection with a failed plan is replaced.
const RENEW_AFTER_MAX: Duration = Duration::from_secs(64);

impl GenericPlans {
    pub(crate) fn new(manager: Arc<Manager>, enabled: bool) -> Self {
        Self {
            enabled,
            manager,
            planned: None,
            checked: HashMap::new(),
            every: PLAN_CHECK_EVERY,
            renew_at: None,
            renew_after: PLAN_CHECK_EVERY,
        }
    }
}

/// The text of `q` as diesel prepares it.
fn sql_of<Q: diesel::query_builder::QueryFragment<diesel::pg::Pg>>(
    q: &Q,
) -> diesel::QueryResult<String> {
    use diesel::query_builder::QueryBuilder;
    let mut sql = diesel::pg::PgQueryBuilder::default();
    q.to_sql(&mut sql, &diesel::pg::Pg)?;
    Ok(sql.finish())
}

impl GenericPlans {
    /// `q.load(pg)`: prepared with its generic plan when that plan passed its last check, or
    /// planned for this execution.
    pub(crate) fn load<'q, Q, U>(
        &mut self,
        pg: &mut diesel::PgConnection,
        q: Q,
    ) -> diesel::QueryResult<Vec<U>>
    where
        Q: diesel::query_builder::QueryFragment<diesel::pg::Pg>
            + diesel::query_dsl::LoadQuery<'q, diesel::PgConnection, U>,
        Planned<Q>: diesel::query_dsl::LoadQuery<'q, diesel::PgConnection, U>,
    {
        use diesel::RunQueryDsl;
        if !self.enabled {
            return Planned(q).load(pg);
        }
        let sql = sql_of(&q)?;
        let generic = match self.checked.get_mut(&sql) {
            None => {
                // The first execution on this connection prepares the statement, and its
                // generic plan is made now, for the tables as they are; then it is checked.
                let rows = q.load(pg)?;
                self.check(pg, sql);
                return Ok(rows);
            }
            Some(c) if c.at.elapsed() < self.every && c.runs < PLAN_CHECK_RUNS => {
                c.runs += u32::from(c.good);
                c.good
            }
            Some(_) => self.check(pg, sql),
        };
        if generic {
            return q.load(pg);
        }
        let planned = match &mut self.planned {
            Some(c) => c,
            None => self.planned.insert(open_planned(&self.manager)?),
        };
        match Planned(q).load(planned) {
            // A second connection that failed and no longer answers is opened again next time,
            // and the failure is an unavailable database.
            Err(e) if diesel::connection::SimpleConnection::batch_execute(planned, "").is_err() => {
                self.planned = None;
                Err(diesel::result::Error::DatabaseError(
                    diesel::result::DatabaseErrorKind::ClosedConnection,
                    Box::new(e.to_string()),
                ))
            }
            out => out,
        }
    }
}

/// A batch thread's second connection on PostgreSQL, with [`PG_LIMITS`].
fn open_planned(manager: &Manager) -> diesel::QueryResult<diesel::PgConnection> {
    use diesel::connection::SimpleConnection;
    use diesel::r2d2::ManageConnection;
    let unavailable = |e: String| {
        diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::ClosedConnection,
            Box::new(e),
        )
    };
    match manager.connect() {
        Ok(DbConnection::Pg(mut pg)) => {
            pg.batch_execute(PG_LIMITS)?;
            Ok(pg)
        }
        Ok(DbConnection::Sqlite(_)) => Err(unavailable("not a PostgreSQL store".into())),
        Err(e) => Err(unavailable(e.to_string())),
    }
}

impl GenericPlans {
    /// Checks the generic plan of `sql`, notes the answer, and sets the connection's
    /// replacement when it fails.
    fn check(&mut self, pg: &mut diesel::PgConnection, sql: String) -> bool {
        let (was, mut scanned) = match self.checked.remove(&sql) {
            Some(c) => (Some(c.good), c.scanned),
            None => (None, HashMap::new()),
        };
        let good = generic_plan_is_good(pg, &sql, &mut scanned);
        if was != Some(good) {
            tracing::debug!(statement = %sql, generic = good, "a batch statement's generic plan was checked");
        }
        if !good && self.renew_at.is_none() {
            self.renew_at = Some(Instant::now() + self.renew_after);
        }
        let at = Instant::now();
        let runs = u32::from(good);
        self.checked.insert(
            sql,
            Checked {
                good,
                at,
                runs,
                scanned,
            },
        );
        good
    }

    /// Whether the connection is due for replacement.
    fn renewal_due(&self) -> bool {
        self.renew_at.is_some_and(|at| Instant::now() >= at)
    }

    /// The connection was replaced: its statements are prepared afresh.
    fn renewed(&mut self) {
        self.checked.clear();
        self.renew_at = None;
        self.renew_after = (self.renew_after * 2).min(RENEW_AFTER_MAX);
    }
}

/// Whether the generic plan `pg` holds for its prepared statement `sql` passes (see
/// [`GenericPlans`]); `scanned` holds the sizes of the tables it scans whole when first seen,
/// and gains those seen now for the first time. No such statement, or any error, is a no.
fn generic_plan_is_good(
    pg: &mut diesel::PgConnection,
    sql: &str,
    scanned: &mut HashMap<String, i64>,
) -> bool {
    use diesel::sql_types::{Array, BigInt, Integer, Text};
    use diesel::{OptionalExtension, RunQueryDsl};
    #[derive(diesel::QueryableByName)]
    struct Prepared {
        #[diesel(sql_type = Text)]
        name: String,
        #[diesel(sql_type = Integer)]
        params: i32,
    }
    #[derive(diesel::QueryableByName)]
    struct Plan {
        #[diesel(sql_type = Text, column_name = "QUERY PLAN")]
        plan: String,
    }
    #[derive(diesel::QueryableByName)]
    struct Size {
        #[diesel(sql_type = Text)]
        relation: String,
        #[diesel(sql_type = BigInt)]
        bytes: i64,
    }
    let prepared = diesel::sql_query(
        "SELECT name, coalesce(cardinality(parameter_types), 0) AS params \
         FROM pg_prepared_statements WHERE statement = $1 AND NOT from_sql",
    )
    .bind::<Text, _>(sql)
    .get_result::<Prepared>(pg)
    .optional();
    let Ok(Some(prepared)) = prepared else {
        return false;
    };
    let params = vec!["NULL"; usize::try_from(prepared.params).unwrap_or_default()].join(", ");
    let explain = format!(
        "EXPLAIN (FORMAT JSON) EXECUTE \"{}\"({params})",
        prepared.name.replace('"', "\"\"")
    );
    let Ok(plan) = diesel::sql_query(explain).get_result::<Plan>(pg) else {
        return false;
    };
    let Some(whole) = whole_scans(&plan.plan) else {
        return false;
    };
    if whole.is_empty() {
        return true;
    }
    let sizes = diesel::sql_query(
        "SELECT t AS relation, coalesce(pg_relation_size(to_regclass(quote_ident(t))), 0)::bigint \
         AS bytes FROM unnest($1) AS t",
    )
    .bind::<Array<Text>, _>(whole)
    .load::<Size>(pg);
    let Ok(sizes) = sizes else {
        return false;
    };
    sizes.into_iter().all(|Size { relation, bytes }| {
        let first = *scanned.entry(relation).or_insert(bytes);
        bytes <= SEQ_SCAN_FREE_BYTES.max(first.saturating_mul(2))
    })
}

/// The tables an `EXPLAIN (FORMAT JSON)` plan scans whole (sequential scans), or `None` when it
/// reads an index without an index condition (a whole-index scan), costs more than
/// [`GENERIC_PLAN_MAX_COST`], or cannot be read.
fn whole_scans(plan: &str) -> Option<Vec<String>> {
    fn walk(node: &serde_json::Value, whole: &mut Vec<String>) -> Option<()> {
        match node.get("Node Type")?.as_str()? {
            "Seq Scan" | "Sample Scan" | "Tid Range Scan" => {
                whole.push(node.get("Relation Name")?.as_str()?.to_owned());
            }
            "Index Scan" | "Index Only Scan" | "Bitmap Index Scan" => {
                node.get("Index Cond")?;
            }
            _ => {}
        }
        for child in node
            .get("Plans")
            .and_then(serde_json::Value::as_array)
            .into_iter()
            .flatten()
        {
            walk(child, whole)?;
        }
        Some(())
    }
    let plan: serde_json::Value = serde_json::from_str(plan).ok()?;
    let root = plan.get(0)?.get("Plan")?;
    if root.get("Total Cost")?.as_f64()? > GENERIC_PLAN_MAX_COST {
        return None;
    }
    let mut whole = Vec::new();
    walk(root, &mut whole)?;
    Some(whole)
}

/// A query diesel does not keep prepared: PostgreSQL plans it at this execution, with the
/// tables' sizes at this time (under the batch connections' `force_generic_plan`, without the
/// binds' values). See [`GenericPlans`] for when the batch statements run so.
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

    /// What the check reads off a plan: the tables scanned whole, and a whole-index scan (an
    /// index read without a condition) as a failure wherever it sits.
    #[test]
    fn whole_scans_reads_the_plan_tree() {
        let costing = |root: &str, cost: f64| {
            let mut v: serde_json::Value = serde_json::from_str(root).unwrap();
            v["Total Cost"] = cost.into();
            format!(r#"[{{"Plan": {v}}}]"#)
        };
        let plan = |root: &str| costing(root, 84.6);
        let index = r#"{"Node Type": "Index Scan", "Relation Name": "users", "Index Name": "users_pkey", "Index Cond": "(user_id = r.user_id)"}"#;
        let seq = r#"{"Node Type": "Seq Scan", "Relation Name": "refresh_tokens"}"#;
        let whole_index = r#"{"Node Type": "Index Scan", "Relation Name": "refresh_tokens", "Index Name": "refresh_tokens_user", "Filter": "(digest = ANY ($1))"}"#;
        let bitmap = r#"{"Node Type": "Bitmap Heap Scan", "Relation Name": "grants", "Recheck Cond": "x", "Plans": [{"Node Type": "Bitmap Index Scan", "Index Name": "grants_user", "Index Cond": "x"}]}"#;
        let join = |outer: &str, inner: &str| {
            format!(r#"{{"Node Type": "Nested Loop", "Plans": [{outer}, {inner}]}}"#)
        };
        assert_eq!(whole_scans(&plan(index)), Some(vec![]));
        assert_eq!(whole_scans(&plan(bitmap)), Some(vec![]));
        assert_eq!(
            whole_scans(&plan(&join(seq, index))),
            Some(vec!["refresh_tokens".to_owned()])
        );
        assert_eq!(whole_scans(&plan(&join(index, whole_index))), None);
        let modify = format!(
            r#"{{"Node Type": "ModifyTable", "Operation": "Update", "Relation Name": "refresh_tokens", "Plans": [{}]}}"#,
            join(bitmap, index)
        );
        assert_eq!(whole_scans(&plan(&modify)), Some(vec![]));
        assert_eq!(whole_scans(&costing(index, 1132.7)), None, "too costly");
        assert_eq!(
            whole_scans(&plan(index).replace("Total Cost", "Startup Cost")),
            None
        );
        assert_eq!(whole_scans("not json"), None);
        assert_eq!(whole_scans("[]"), None);
    }

    diesel::table! {
        plan_probe (id) {
            id -> Text,
            note -> Text,
        }
    }

    diesel::table! {
        plan_wide (id) {
            id -> Text,
            grp -> Integer,
            note -> Text,
        }
    }

    /// On PostgreSQL: the refresh grant's batch connections keep generic plans, a GTR's reads'
    /// do not (their unnamed statements are planned for their values).
    #[test]
    fn only_generic_batch_connections_force_generic_plans() {
        let Some(base) = latch_testkit::env::postgres_url("generic_batch_connections") else {
            return;
        };
        let schema = latch_testkit::env::PgSchema::create(&base);
        let db = Db {
            manager: Arc::new(Manager::new(&schema.url).unwrap()),
            write_lock: Arc::new(Mutex::new(())),
            backend: Backend::Postgres,
        };
        #[derive(diesel::QueryableByName)]
        struct Mode {
            #[diesel(sql_type = diesel::sql_types::Text)]
            plan_cache_mode: String,
        }
        let mode = |own: &OwnConn| {
            with_conn(&db, own, false, |conn, _| {
                let DbConnection::Pg(pg) = conn else {
                    panic!("a PostgreSQL store");
                };
                let m: Mode = diesel::RunQueryDsl::get_result(
                    diesel::sql_query(
                        "SELECT current_setting('plan_cache_mode') AS plan_cache_mode",
                    ),
                    pg,
                )
                .unwrap();
                Ok(m.plan_cache_mode)
            })
            .unwrap()
        };
        assert_eq!(mode(&OwnConn::generic()), "force_generic_plan");
        assert_eq!(mode(&OwnConn::planned()), "auto");
    }

    /// How many times PostgreSQL ran the generic plan of the prepared statement `sql`.
    fn generic_runs(pg: &mut diesel::PgConnection, sql: &str) -> i64 {
        use diesel::RunQueryDsl;
        #[derive(diesel::QueryableByName)]
        struct Runs {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        diesel::sql_query(
            "SELECT coalesce(sum(generic_plans), 0)::bigint AS n FROM pg_prepared_statements \
             WHERE statement = $1",
        )
        .bind::<diesel::sql_types::Text, _>(sql)
        .get_result::<Runs>(pg)
        .unwrap()
        .n
    }

    /// On PostgreSQL: statements run prepared while their generic plans pass; a plan that
    /// scans a table whole fails once the table has grown past twice its size (PostgreSQL
    /// keeps the plan: nothing made it plan again), and the statement runs planned, with the
    /// same answers; a new connection plans for the grown table; and a plan whose index
    /// condition does not narrow the read fails on its cost.
    #[test]
    fn generic_plans_are_used_only_while_their_cost_does_not_grow_with_the_table() {
        use diesel::connection::SimpleConnection;
        use diesel::{Connection, ExpressionMethods, QueryDsl};
        let Some(base) = latch_testkit::env::postgres_url("generic_plans") else {
            return;
        };
        let schema = latch_testkit::env::PgSchema::create(&base);
        let manager = Arc::new(Manager::new(&schema.url).unwrap());
        let connect = || {
            let mut pg = diesel::PgConnection::establish(&schema.url).unwrap();
            pg.batch_execute(&format!("{PG_LIMITS} {PG_GENERIC}"))
                .unwrap();
            pg
        };
        let mut pg = connect();
        let fill = "INSERT INTO plan_probe SELECT 'id' || n, 'note' || n \
                    FROM generate_series(1, 5000) AS n";
        pg.batch_execute(&format!(
            "CREATE TABLE plan_probe (id TEXT PRIMARY KEY, note TEXT NOT NULL); {fill}; \
             ANALYZE plan_probe"
        ))
        .unwrap();
        let ids = vec!["id7".to_owned(), "id4242".to_owned(), "nobody".to_owned()];
        let by_id = || {
            plan_probe::table
                .filter(plan_probe::id.eq_any(ids.clone()))
                .select(plan_probe::note)
                .order(plan_probe::note)
        };
        let by_note = || {
            plan_probe::table
                .filter(plan_probe::note.eq_any(vec!["note7".to_owned(), "note4242".to_owned()]))
                .select(plan_probe::id)
                .order(plan_probe::id)
        };
        let (id_sql, note_sql) = (sql_of(&by_id()).unwrap(), sql_of(&by_note()).unwrap());

        let mut plans = GenericPlans {
            every: Duration::from_secs(3600),
            ..GenericPlans::new(manager.clone(), true)
        };
        for _ in 0..4 {
            let notes: Vec<String> = plans.load(&mut pg, by_id()).unwrap();
            assert_eq!(notes, ["note4242", "note7"]);
            let found: Vec<String> = plans.load(&mut pg, by_note()).unwrap();
            assert_eq!(found, ["id4242", "id7"]);
        }
        assert!(plans.checked[&id_sql].good, "an index condition passes");
        assert!(
            plans.checked[&note_sql].good,
            "a whole scan the planner chose for the table as it is passes"
        );
        // The first execution and the check's EXPLAIN, then three more executions each.
        assert!(generic_runs(&mut pg, &id_sql) >= 5);
        assert!(generic_runs(&mut pg, &note_sql) >= 5);

        // The table grows to three times its size, with no ANALYZE: PostgreSQL keeps the
        // plan, which now reads three times as much, and its next check fails. The statement's
        // later executions are planned, not run prepared.
        pg.batch_execute(&fill.replace("1, 5000", "5001, 15000"))
            .unwrap();
        // Checked again within PLAN_CHECK_RUNS executions, though the hour is not up.
        for _ in 0..PLAN_CHECK_RUNS {
            let found: Vec<String> = plans.load(&mut pg, by_note()).unwrap();
            assert_eq!(found, ["id4242", "id7"]);
        }
        assert!(!plans.checked[&note_sql].good, "three times the size fails");
        let runs = generic_runs(&mut pg, &note_sql);
        for _ in 0..3 {
            let found: Vec<String> = plans.load(&mut pg, by_note()).unwrap();
            assert_eq!(found, ["id4242", "id7"]);
        }
        assert_eq!(generic_runs(&mut pg, &note_sql), runs);
        // They ran on the second connection, where PostgreSQL plans each for its values.
        #[derive(diesel::QueryableByName)]
        struct Mode {
            #[diesel(sql_type = diesel::sql_types::Text)]
            plan_cache_mode: String,
        }
        let planned = plans
            .planned
            .as_mut()
            .expect("the second connection is open");
        let mode: Mode = diesel::RunQueryDsl::get_result(
            diesel::sql_query("SELECT current_setting('plan_cache_mode') AS plan_cache_mode"),
            planned,
        )
        .unwrap();
        assert_eq!(mode.plan_cache_mode, "auto");

        // A statement an index serves, whose plan made on one row scans the table whole: the
        // table grows, the check fails and calls for a new connection, whose plan is made for the
        // grown table and passes. (A new table, analyzed with its one row.)
        pg.batch_execute(
            "DROP TABLE plan_probe; \
             CREATE TABLE plan_probe (id TEXT PRIMARY KEY, note TEXT NOT NULL); \
             INSERT INTO plan_probe VALUES ('id7', 'note7'); ANALYZE plan_probe",
        )
        .unwrap();
        let mut plans = GenericPlans {
            every: Duration::ZERO,
            renew_after: Duration::ZERO,
            ..GenericPlans::new(manager.clone(), true)
        };
        let notes: Vec<String> = plans.load(&mut pg, by_id()).unwrap();
        assert_eq!(notes, ["note7"]);
        assert!(plans.checked[&id_sql].good);
        assert!(!plans.renewal_due());
        pg.batch_execute(&fill.replace("1, 5000", "8, 50000"))
            .unwrap();
        let notes: Vec<String> = plans.load(&mut pg, by_id()).unwrap();
        assert_eq!(notes, ["note4242", "note7"]);
        assert!(
            !plans.checked[&id_sql].good,
            "a whole scan of 50,000 rows fails"
        );
        assert!(plans.renewal_due());
        let mut pg = connect();
        plans.renewed();
        assert!(!plans.renewal_due());
        let notes: Vec<String> = plans.load(&mut pg, by_id()).unwrap();
        assert_eq!(notes, ["note4242", "note7"]);
        assert!(
            plans.checked[&id_sql].good,
            "the new plan reads through the index"
        );
        assert_eq!(plans.renew_after, Duration::ZERO, "doubled from zero");

        // Every table reached through an index condition, but one that does not narrow the
        // read enough (50 groups of 2,000 rows, the note left to a filter): its cost grows with
        // the table, and it fails.
        pg.batch_execute(
            "CREATE TABLE plan_wide (id TEXT PRIMARY KEY, grp INT NOT NULL, note TEXT NOT NULL); \
             CREATE INDEX plan_wide_grp ON plan_wide (grp); \
             INSERT INTO plan_wide SELECT 'id' || n, n % 50, 'note' || n \
             FROM generate_series(1, 100000) AS n; ANALYZE plan_wide",
        )
        .unwrap();
        let by_group = plan_wide::table
            .filter(plan_wide::grp.eq_any(vec![7]))
            .filter(plan_wide::note.eq_any(vec!["note7".to_owned()]))
            .select(plan_wide::id);
        let group_sql = sql_of(&by_group).unwrap();
        let found: Vec<String> = plans.load(&mut pg, by_group).unwrap();
        assert_eq!(found, ["id7"]);
        assert!(!plans.checked[&group_sql].good, "a costly index read fails");
        pg.batch_execute(&format!("PREPARE wide AS {group_sql}"))
            .unwrap();
        #[derive(diesel::QueryableByName)]
        struct Line {
            #[diesel(sql_type = diesel::sql_types::Text, column_name = "QUERY PLAN")]
            line: String,
        }
        let plan: Vec<Line> = diesel::RunQueryDsl::load(
            diesel::sql_query("EXPLAIN EXECUTE wide(NULL, NULL)"),
            &mut pg,
        )
        .unwrap();
        let plan = plan
            .into_iter()
            .map(|l| l.line)
            .collect::<Vec<_>>()
            .join("\n");
        assert!(
            plan.contains("Index Cond") && !plan.contains("Seq Scan"),
            "the plan reads through an index: {plan}"
        );
    }

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
