//! Log events are many and small: a writer thread takes them from a queue and writes each batch
//! in one transaction, so a sign-in or a token exchange does not wait for its log row's commit.
//! Reading the log first waits until everything queued before the read is written.
//!
//! Log streams: in the same transaction, the writer queues each event for every stream whose
//! filters it passes and that was created when it occurred (`log_stream_events`), from a list of the streams it reads again every
//! [`STREAMS_TTL`] and at once after this store's own stream writes ([`LogQueue::streams_changed`]),
//! so a batch costs one more insert and no read per event. On PostgreSQL the queue inserts of all
//! instances commit in `seq` order ([`LOG_STREAM_QUEUE_LOCK`]), so a worker never sees a later
//! event of a stream before an earlier one.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use diesel::prelude::*;
use diesel::r2d2::Pool;

use crate::conn::{Backend, DbConnection, Manager};
use crate::rows::{LogRow, NewLogStreamEventRow, StreamFilterRow};
use crate::schema::{log_events, log_stream_events, log_streams};

/// How long the writer waits after the first event of a batch.
const LINGER: std::time::Duration = std::time::Duration::from_millis(20);

/// Most events written in one transaction.
const BATCH: usize = 512;

/// How long the writer uses its list of log streams before reading it again: a stream another
/// instance created gets this instance's events within it (this instance's own at once).
pub(crate) const STREAMS_TTL: std::time::Duration = std::time::Duration::from_secs(5);

/// The PostgreSQL advisory lock (`pg_advisory_xact_lock`) every instance's writer takes, in the
/// batch's transaction, just before it queues events for the log streams, and holds until the
/// commit. A queued event's `seq` is drawn when it is inserted, not when it commits: without
/// the lock a reader could see another instance's seq 101 committed while seq 100 is still
/// uncommitted, and send 101 first. With it, queue inserts commit in `seq` order. ("latch_ls".)
pub const LOG_STREAM_QUEUE_LOCK: i64 = 0x6c61_7463_685f_6c73;

enum Msg {
    Event(Box<LogRow>),
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// Events waiting for the writer, at most: when the database stalls, the queue stops growing
/// here and further events are dropped (counted, and reported at most once a minute) rather than
/// held in memory without bound or making requests wait. The queue is a channel that grows and
/// shrinks in small blocks with what waits in it (a bounded channel of this size would reserve
/// 1.2 MiB for its slots from the start), with a count of the events in it.
pub(crate) const QUEUE_LIMIT: usize = 50_000;

/// How long [`LogQueue::flush`] waits for the writer at most.
const FLUSH_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

#[derive(Clone)]
pub(crate) struct LogQueue {
    tx: Sender<Msg>,
    /// Events sent and not yet taken by the writer.
    queued: Arc<AtomicUsize>,
    /// Events dropped because the queue was full, over the process's life.
    dropped: Arc<AtomicU64>,
    /// When a drop was last reported.
    reported: Arc<Mutex<Option<Instant>>>,
    /// Set by this store's stream writes: the writer reads the streams again before its next batch.
    streams_stale: Arc<AtomicBool>,
}

impl LogQueue {
    pub fn start(pool: Pool<Manager>, write_lock: Arc<Mutex<()>>, backend: Backend) -> Self {
        let (tx, rx) = channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let streams_stale = Arc::new(AtomicBool::new(true));
        let (stale, taken) = (streams_stale.clone(), queued.clone());
        std::thread::Builder::new()
            .name("latch-log-writer".into())
            .spawn(move || writer(rx, taken, pool, write_lock, backend, stale))
            .map(|_| ())
            .unwrap_or_else(|e| tracing::error!(error = %e, "cannot start the log writer"));
        Self {
            tx,
            queued,
            dropped: Arc::default(),
            reported: Arc::default(),
            streams_stale,
        }
    }

    /// Events dropped because the writer fell [`QUEUE_LIMIT`] behind.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// A log stream was created, changed or deleted here: events queued from now on see it.
    pub fn streams_changed(&self) {
        self.streams_stale.store(true, Ordering::SeqCst);
    }

    pub fn push(&self, row: LogRow) {
        if self.queued.fetch_add(1, Ordering::AcqRel) >= QUEUE_LIMIT {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            let total = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            let mut reported = self.reported.lock().unwrap_or_else(|p| p.into_inner());
            if reported.is_none_or(|t| t.elapsed() >= std::time::Duration::from_secs(60)) {
                *reported = Some(Instant::now());
                tracing::error!(
                    dropped_total = total,
                    limit = QUEUE_LIMIT,
                    "log writer behind (database slow or down); log events dropped"
                );
            }
            return;
        }
        if self.tx.send(Msg::Event(Box::new(row))).is_err() {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            tracing::error!("log writer stopped; event dropped");
        }
    }

    /// Waits until every event queued so far is written.
    pub async fn flush(&self) {
        let (ack, done) = tokio::sync::oneshot::channel();
        // Bounded: with the database down the writer may be far behind, and a caller (a log
        // search, a purge) goes on with what is written rather than wait for all of it.
        if self.tx.send(Msg::Flush(ack)).is_ok() {
            let _ = tokio::time::timeout(FLUSH_WAIT, done).await;
        }
    }
}

/// The writer's view of the log streams: each one's id, filters and creation (events dated
/// before a stream was created are not queued for it).
#[derive(Default)]
struct Streams {
    list: Vec<(String, Vec<String>, i64)>,
    read_at: Option<Instant>,
}

impl Streams {
    /// Reads the streams again when this store changed them or the list is older than
    /// [`STREAMS_TTL`]; on failure the old list stays (and is read again next batch).
    fn refresh(&mut self, conn: &mut DbConnection, stale: &AtomicBool) {
        let expired = self.read_at.is_none_or(|t| t.elapsed() >= STREAMS_TTL);
        // Cleared before the read: a change during it marks the list stale again.
        if !stale.swap(false, Ordering::SeqCst) && !expired {
            return;
        }
        let read = log_streams::table
            .select(StreamFilterRow::as_select())
            .load(conn)
            .map_err(|e| e.to_string())
            .and_then(|rows| {
                rows.into_iter()
                    .map(|r| {
                        serde_json::from_str::<Vec<String>>(&r.filters)
                            .map(|f| (r.id, f, r.created_at))
                            .map_err(|e| e.to_string())
                    })
                    .collect::<Result<Vec<_>, _>>()
            });
        match read {
            Ok(list) => {
                self.list = list;
                self.read_at = Some(Instant::now());
            }
            Err(e) => {
                stale.store(true, Ordering::SeqCst);
                tracing::warn!(error = %e, "could not read the log streams; using the last list");
            }
        }
    }

    /// One queue row per (event, stream whose filters it passes), events in order.
    fn queue(&self, rows: &[LogRow]) -> Vec<NewLogStreamEventRow> {
        let mut out = Vec::new();
        if self.list.is_empty() {
            return out;
        }
        for r in rows {
            let mut payload = None;
            for (id, filters, created_at) in &self.list {
                if r.date < *created_at || !latch_core::model::accepts(filters, &r.event_type) {
                    continue;
                }
                let Some(p) = payload.get_or_insert_with(|| api_payload(r)) else {
                    continue;
                };
                out.push(NewLogStreamEventRow {
                    stream_id: id.clone(),
                    log_id: r.log_id.clone(),
                    date: r.date,
                    payload: p.clone(),
                });
            }
        }
        out
    }
}

/// The event as `GET /api/v2/logs` shows it (what was stored: times to the millisecond).
fn api_payload(r: &LogRow) -> Option<String> {
    let e = LogRow {
        log_id: r.log_id.clone(),
        date: r.date,
        event_type: r.event_type.clone(),
        description: r.description.clone(),
        user_id: r.user_id.clone(),
        client_id: r.client_id.clone(),
        connection: r.connection.clone(),
        ip: r.ip.clone(),
        details: r.details.clone(),
    }
    .into_domain()
    .map_err(|e| tracing::error!(error = %e, "log event not queued for the log streams"))
    .ok()?;
    Some(e.api_json().to_string())
}

fn writer(
    rx: Receiver<Msg>,
    queued: Arc<AtomicUsize>,
    pool: Pool<Manager>,
    write_lock: Arc<Mutex<()>>,
    backend: Backend,
    streams_stale: Arc<AtomicBool>,
) {
    let mut streams = Streams::default();
    while let Ok(first) = rx.recv() {
        // Let a batch gather: one wake-up and one commit for many events.
        if matches!(first, Msg::Event(_)) {
            std::thread::sleep(LINGER);
        }
        let mut rows = Vec::new();
        let mut acks = Vec::new();
        let mut next = Some(first);
        while let Some(m) = next {
            match m {
                Msg::Event(r) => {
                    queued.fetch_sub(1, Ordering::AcqRel);
                    rows.push(*r);
                }
                Msg::Flush(a) => acks.push(a),
            }
            next = if rows.len() < BATCH {
                rx.try_recv().ok()
            } else {
                None
            };
        }
        if !rows.is_empty() {
            let _turn = (backend == Backend::Sqlite)
                .then(|| write_lock.lock().unwrap_or_else(|p| p.into_inner()));
            let result = pool.get().map_err(|e| e.to_string()).and_then(|mut conn| {
                streams.refresh(&mut conn, &streams_stale);
                let queued = streams.queue(&rows);
                conn.transaction::<_, diesel::result::Error, _>(|c| {
                    match &mut **c {
                        // COPY: the batch in one round trip, with nothing to parse or plan
                        // per row (a multi-row INSERT's VALUES list is planned row by row).
                        DbConnection::Pg(pg) => {
                            diesel::copy_from(log_events::table)
                                .from_insertable(&rows)
                                .execute(pg)?;
                            if !queued.is_empty() {
                                // Held from here to the commit: queue rows commit in seq order.
                                diesel::sql_query("SELECT pg_advisory_xact_lock($1)")
                                    .bind::<diesel::sql_types::BigInt, _>(LOG_STREAM_QUEUE_LOCK)
                                    .execute(pg)?;
                                diesel::copy_from(log_stream_events::table)
                                    .from_insertable(&queued)
                                    .execute(pg)?;
                            }
                        }
                        // In-process: a prepared statement per row costs no round trip.
                        DbConnection::Sqlite(lite) => {
                            for r in &rows {
                                diesel::insert_into(log_events::table)
                                    .values(r)
                                    .execute(lite)?;
                            }
                            for q in &queued {
                                diesel::insert_into(log_stream_events::table)
                                    .values(q)
                                    .execute(lite)?;
                            }
                        }
                    }
                    Ok(())
                })
                .map_err(|e| e.to_string())
            });
            if let Err(e) = result {
                tracing::error!(error = %e, events = rows.len(), "could not write log events");
            }
        }
        for a in acks {
            let _ = a.send(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(i: usize) -> LogRow {
        LogRow {
            log_id: format!("log-{i}"),
            date: 0,
            event_type: "s".into(),
            description: String::new(),
            user_id: None,
            client_id: None,
            connection: None,
            ip: None,
            details: "{}".into(),
        }
    }

    /// With the writer stalled, the queue holds `QUEUE_LIMIT` events and drops (and counts) the
    /// rest; as the writer takes events, room comes back.
    #[test]
    fn a_full_queue_drops_and_counts() {
        let (tx, rx) = channel();
        let q = LogQueue {
            tx,
            queued: Arc::default(),
            dropped: Arc::default(),
            reported: Arc::default(),
            streams_stale: Arc::default(),
        };
        for i in 0..QUEUE_LIMIT + 3 {
            q.push(row(i));
        }
        assert_eq!(q.dropped(), 3);
        assert_eq!(q.queued.load(Ordering::Acquire), QUEUE_LIMIT);
        // The writer's side: taking an event makes room for one more.
        let Ok(Msg::Event(first)) = rx.try_recv() else {
            panic!("the first event")
        };
        assert_eq!(first.log_id, "log-0");
        q.queued.fetch_sub(1, Ordering::AcqRel);
        q.push(row(0));
        assert_eq!(q.dropped(), 3);
        q.push(row(0));
        assert_eq!(q.dropped(), 4);
        assert_eq!(rx.try_iter().count(), QUEUE_LIMIT);
    }
}
