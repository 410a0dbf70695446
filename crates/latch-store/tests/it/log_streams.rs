//! Log-stream queues with more than one instance on one database: what only two stores (or a
//! store and a transaction of the test's own) can show.
//!
//! - PostgreSQL: a queued event's `seq` is drawn when it is inserted, not when it commits. An
//!   ack deletes exactly the events sent, so one committed late below them survives; and the
//!   log writers queue under one advisory lock, so queue rows commit in `seq` order.
//! - Both backends: events an instance queued for a stream another instance deleted (its list
//!   of streams a few seconds old) are purged, and nothing else.

use diesel::sql_types::BigInt;
use diesel::{Connection, QueryableByName, RunQueryDsl};
use latch_core::model::{
    ContentFormat, DEFAULT_CONTENT_TYPE, LogEvent, LogQuery, LogStream, LogStreamSink,
    LogStreamStatus,
};
use latch_core::store::{LogRepo, LogStreamRepo};
use latch_store::{LOG_STREAM_QUEUE_LOCK, SqlStore};
use latch_testkit::env::{PgSchema, TempDir, unique};
use latch_testkit::fixtures::now;
use time::Duration;

use super::open;

fn stream(tag: &str) -> LogStream {
    LogStream {
        id: format!("lst_{tag}"),
        name: format!("stream {tag}"),
        status: LogStreamStatus::Active,
        sink: LogStreamSink {
            endpoint: format!("https://sink.example/{tag}"),
            content_type: DEFAULT_CONTENT_TYPE.into(),
            content_format: ContentFormat::JsonLines,
            authorization: None,
            headers: Vec::new(),
        },
        filters: Vec::new(),
        suspended_reason: None,
        created_at: now(),
        updated_at: now(),
        failures: 0,
        failing_since: None,
        last_error: None,
        next_attempt_at: None,
    }
}

/// Records one event on `store` (dated after every stream of the test was created).
async fn record(store: &SqlStore, description: &str) -> LogEvent {
    let e = LogEvent::new(now() + Duration::milliseconds(5), "s", description);
    store.insert_log(&e).await.unwrap();
    e
}

/// Waits until `store`'s log writer has written everything recorded on it so far.
async fn flush(store: &SqlStore) {
    store
        .list_logs(&LogQuery {
            per_page: 1,
            ..LogQuery::default()
        })
        .await
        .unwrap();
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// A PostgreSQL connection of the test's own, used from blocking threads; `BEGIN` and `COMMIT`
/// are plain statements, so a transaction stays open across the test's awaits.
struct Raw(Option<diesel::PgConnection>);

impl Raw {
    async fn open(url: &str) -> Self {
        let url = url.to_owned();
        Self(Some(
            tokio::task::spawn_blocking(move || diesel::PgConnection::establish(&url).unwrap())
                .await
                .unwrap(),
        ))
    }

    async fn exec(&mut self, sql: String) {
        let mut c = self.0.take().unwrap();
        self.0 = Some(
            tokio::task::spawn_blocking(move || {
                diesel::sql_query(sql).execute(&mut c).unwrap();
                c
            })
            .await
            .unwrap(),
        );
    }

    async fn count(&mut self, sql: String) -> i64 {
        let mut c = self.0.take().unwrap();
        let (c, n) = tokio::task::spawn_blocking(move || {
            let n = diesel::sql_query(sql)
                .get_result::<Count>(&mut c)
                .unwrap()
                .n;
            (c, n)
        })
        .await
        .unwrap();
        self.0 = Some(c);
        n
    }
}

/// The review's sequence, on two instances: instance X queues event n and has not committed;
/// instance Y queues n+1 and commits; a worker claims and sends n+1 alone; X commits n; the
/// worker's ack must leave n queued (an ack "up to n+1" deleted it unsent). Then the lock: while
/// one writer holds it between its queue insert and its commit, another instance's writer waits,
/// so no reader ever sees the later event without the earlier one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_rows_commit_in_seq_order_and_acks_delete_only_what_was_sent() {
    let test = "log_streams::queue_rows_commit_in_seq_order_and_acks_delete_only_what_was_sent";
    let Some(base) = latch_testkit::env::postgres_url(test) else {
        return;
    };
    let schema = tokio::task::spawn_blocking(move || PgSchema::create(&base))
        .await
        .unwrap();
    let store = open(&schema.url).await;
    let app = format!("latch_order_{}", unique());
    let other = open(&format!("{}&application_name={app}", schema.url)).await;
    let st = stream(&unique());
    store.insert_log_stream(&st).await.unwrap();
    let mut x = Raw::open(&schema.url).await;
    let mut watch = Raw::open(&schema.url).await;
    let queue_row = |log_id: &str| {
        format!(
            "INSERT INTO log_stream_events (stream_id, log_id, date, payload) \
             VALUES ('{}', '{log_id}', {}, '{{}}')",
            st.id,
            latch_core::clock::to_millis(now())
        )
    };

    // X queues an event and keeps its transaction open (as a writer that took no lock would).
    x.exec("BEGIN".into()).await;
    x.exec(queue_row("late")).await;
    // Y (the other store's writer) queues the next event and commits.
    let next = record(&other, "next").await;
    flush(&other).await;
    let t0 = now();
    let lease = t0 + Duration::seconds(30);
    let (_, seen) = store
        .claim_log_stream(t0, lease, 100)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        seen.iter().map(|e| e.log_id.as_str()).collect::<Vec<_>>(),
        [next.log_id.as_str()],
        "the uncommitted event is not seen"
    );
    x.exec("COMMIT".into()).await;
    let sent: Vec<i64> = seen.iter().map(|e| e.seq).collect();
    assert!(store.ack_log_stream(&st.id, lease, &sent).await.unwrap());
    let (_, left) = store
        .claim_log_stream(t0, lease, 100)
        .await
        .unwrap()
        .expect("the late event is still queued");
    assert_eq!(
        left.iter().map(|e| e.log_id.as_str()).collect::<Vec<_>>(),
        ["late"]
    );
    assert!(left[0].seq < sent[0]);
    let late: Vec<i64> = left.iter().map(|e| e.seq).collect();
    assert!(store.ack_log_stream(&st.id, lease, &late).await.unwrap());

    // X again, now as a writer does: the lock, then its queue insert; not committed yet.
    x.exec("BEGIN".into()).await;
    x.exec(format!(
        "SELECT pg_advisory_xact_lock({LOG_STREAM_QUEUE_LOCK})"
    ))
    .await;
    x.exec(queue_row("first")).await;
    // Y's writer must wait for X's commit before it queues anything.
    let second = record(&other, "second").await;
    let waiting = format!(
        "SELECT count(*) AS n FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
         WHERE l.locktype = 'advisory' AND NOT l.granted AND a.application_name = '{app}'"
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while watch.count(waiting.clone()).await == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the other instance's writer queued without waiting for the lock"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(
        store
            .claim_log_stream(t0, lease, 100)
            .await
            .unwrap()
            .is_none(),
        "a later event was visible before an earlier one"
    );
    x.exec("COMMIT".into()).await;
    flush(&other).await;
    let (_, both) = store
        .claim_log_stream(t0, lease, 100)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        both.iter().map(|e| e.log_id.as_str()).collect::<Vec<_>>(),
        ["first", second.log_id.as_str()]
    );
    assert!(both[0].seq < both[1].seq);
    drop(schema);
}

/// Instance B still lists a stream instance A just deleted (B reads the list again every few
/// seconds), so B queues an event for it: the purge deletes that event and only that.
async fn orphans(url: &str, raw_count: impl AsyncFn(String) -> i64) {
    let a = open(url).await;
    let b = open(url).await;
    let live = stream(&format!("live{}", unique()));
    let gone = stream(&format!("gone{}", unique()));
    for s in [&live, &gone] {
        a.insert_log_stream(s).await.unwrap();
    }
    // B reads the streams at its first batch: both.
    record(&b, "one").await;
    flush(&b).await;
    assert!(a.delete_log_stream(&gone.id).await.unwrap());
    // Within B's list's lifetime (5 s): queued for the deleted stream too.
    record(&b, "two").await;
    flush(&b).await;
    let queued =
        |id: &str| format!("SELECT count(*) AS n FROM log_stream_events WHERE stream_id = '{id}'");
    assert_eq!(raw_count(queued(&gone.id)).await, 1, "no orphan to purge");
    assert_eq!(a.count_log_stream_events(&live.id).await.unwrap(), 2);

    assert_eq!(a.purge_orphan_log_stream_events().await.unwrap(), 1);
    assert_eq!(raw_count(queued(&gone.id)).await, 0);
    assert_eq!(a.count_log_stream_events(&live.id).await.unwrap(), 2);
    assert_eq!(b.purge_orphan_log_stream_events().await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orphans_of_a_stale_list_are_purged_sqlite() {
    let dir = TempDir::new();
    let path = dir.path().join("latch.db").to_string_lossy().into_owned();
    let p = path.clone();
    orphans(&path, async move |sql: String| {
        let p = p.clone();
        tokio::task::spawn_blocking(move || {
            let mut c = diesel::SqliteConnection::establish(&p).unwrap();
            diesel::sql_query(sql)
                .get_result::<Count>(&mut c)
                .unwrap()
                .n
        })
        .await
        .unwrap()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orphans_of_a_stale_list_are_purged_postgres() {
    let Some(base) = latch_testkit::env::postgres_url(
        "log_streams::orphans_of_a_stale_list_are_purged_postgres",
    ) else {
        return;
    };
    let schema = tokio::task::spawn_blocking(move || PgSchema::create(&base))
        .await
        .unwrap();
    let url = schema.url.clone();
    orphans(&schema.url, async move |sql: String| {
        let url = url.clone();
        tokio::task::spawn_blocking(move || {
            let mut c = diesel::PgConnection::establish(&url).unwrap();
            diesel::sql_query(sql)
                .get_result::<Count>(&mut c)
                .unwrap()
                .n
        })
        .await
        .unwrap()
    })
    .await;
    drop(schema);
}
