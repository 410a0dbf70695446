//! The orphan purge of the log streams' queues runs every minute on every instance: its lookup
//! must use the `(stream_id, seq)` index, never read the whole queue (which holds up to
//! `LATCH_LOG_RETENTION_DAYS` of events of a paused stream). Checked on the query plans, with
//! the statement it replaced as the counter-example.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use diesel::sql_types::{BigInt, Text};
use diesel::{QueryableByName, RunQueryDsl};

use crate::SqlStore;
use crate::conn::DbConnection;
use crate::repos::{ORPHAN_LOG_STREAMS_PG, ORPHAN_LOG_STREAMS_SQLITE};

/// The statement before: a full read of the queue.
const FULL_SCAN: &str =
    "DELETE FROM log_stream_events WHERE stream_id NOT IN (SELECT id FROM log_streams)";

/// Queues `n` events for each of `streams` (none of which exists), so the queue is not tiny.
fn fill(conn: &mut DbConnection, streams: &[&str], n: i64) {
    for id in streams {
        let sql = format!(
            "WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k WHERE i < {n}) \
             INSERT INTO log_stream_events (stream_id, log_id, date, payload) \
             SELECT '{id}', 'log_' || i, i, '{{}}' FROM k"
        );
        diesel::sql_query(sql).execute(conn).unwrap();
    }
}

#[derive(QueryableByName)]
struct LitePlan {
    #[diesel(sql_type = Text)]
    detail: String,
}

/// The plan of `sql`, given its one parameter if it has one.
fn lite_plan(conn: &mut DbConnection, sql: &str) -> Vec<String> {
    let DbConnection::Sqlite(lite) = conn else {
        panic!("not SQLite")
    };
    let q = diesel::sql_query(format!("EXPLAIN QUERY PLAN {sql}"));
    let rows: Vec<LitePlan> = if sql.contains("?1") {
        q.bind::<BigInt, _>(10_000i64).load(lite)
    } else {
        q.load(lite)
    }
    .unwrap();
    rows.into_iter().map(|p| p.detail).collect()
}

/// Does every step that reads the queue go through an index?
fn lite_indexed(plan: &[String]) -> bool {
    plan.iter()
        .filter(|d| {
            d.contains("log_stream_events")
                || d.starts_with("SEARCH e ")
                || d.starts_with("SCAN e ")
        })
        .all(|d| d.contains("INDEX"))
}

#[tokio::test]
async fn sqlite_orphan_lookup_probes_the_index() {
    let dir = latch_testkit::env::TempDir::new();
    let s = SqlStore::for_test(&dir.path().join("latch.db").to_string_lossy()).await;
    let mut conn = s.pool.get().unwrap();
    fill(&mut conn, &["lst_a", "lst_b"], 2_000);
    diesel::sql_query("ANALYZE").execute(&mut *conn).unwrap();

    let plan = lite_plan(&mut conn, ORPHAN_LOG_STREAMS_SQLITE);
    assert!(lite_indexed(&plan), "{plan:#?}");
    assert!(
        plan.iter()
            .any(|d| d.contains("SEARCH") && d.contains("log_stream_events_stream")),
        "each step seeks in the index: {plan:#?}"
    );
    let before = lite_plan(&mut conn, FULL_SCAN);
    assert!(
        !lite_indexed(&before),
        "the check sees a full scan: {before:#?}"
    );

    // And it finds the ids: two streams the queue holds events of, neither of which exists.
    let DbConnection::Sqlite(lite) = &mut *conn else {
        panic!("not SQLite")
    };
    let ids: Vec<Id> = diesel::sql_query(ORPHAN_LOG_STREAMS_SQLITE)
        .bind::<BigInt, _>(10_000i64)
        .load(lite)
        .unwrap();
    assert_eq!(
        ids.into_iter().map(|i| i.id).collect::<Vec<_>>(),
        ["lst_a", "lst_b"]
    );
}

#[derive(QueryableByName)]
struct Id {
    #[diesel(sql_type = Text)]
    id: String,
}

#[derive(QueryableByName)]
struct PgPlan {
    #[diesel(sql_type = Text, column_name = "QUERY PLAN")]
    line: String,
}

/// The plan of `sql`, given its one parameter if it has one.
fn pg_plan(conn: &mut DbConnection, sql: &str) -> String {
    let DbConnection::Pg(pg) = conn else {
        panic!("not PostgreSQL")
    };
    let q = diesel::sql_query(format!("EXPLAIN {sql}"));
    let rows: Vec<PgPlan> = if sql.contains("$1") {
        q.bind::<BigInt, _>(10_000i64).load(pg)
    } else {
        q.load(pg)
    }
    .unwrap();
    rows.into_iter()
        .map(|p| p.line)
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn postgres_orphan_lookup_probes_the_index() {
    let Some(base) = latch_testkit::env::postgres_url("postgres_orphan_lookup_probes_the_index")
    else {
        return;
    };
    let schema = tokio::task::spawn_blocking(move || latch_testkit::env::PgSchema::create(&base))
        .await
        .unwrap();
    let s = SqlStore::for_test(&schema.url).await;
    let mut conn = s.pool.get().unwrap();
    fill(&mut conn, &["lst_a", "lst_b"], 20_000);
    diesel::sql_query("ANALYZE log_stream_events")
        .execute(&mut *conn)
        .unwrap();

    let plan = pg_plan(&mut conn, ORPHAN_LOG_STREAMS_PG);
    assert!(!plan.contains("Seq Scan on log_stream_events"), "{plan}");
    assert!(plan.contains("using log_stream_events_stream"), "{plan}");
    let before = pg_plan(&mut conn, FULL_SCAN);
    assert!(before.contains("Seq Scan on log_stream_events"), "{before}");

    let DbConnection::Pg(pg) = &mut *conn else {
        panic!("not PostgreSQL")
    };
    let ids: Vec<Id> = diesel::sql_query(ORPHAN_LOG_STREAMS_PG)
        .bind::<BigInt, _>(10_000i64)
        .load(pg)
        .unwrap();
    assert_eq!(
        ids.into_iter().map(|i| i.id).collect::<Vec<_>>(),
        ["lst_a", "lst_b"]
    );
    drop(conn);
    drop(s);
    drop(schema);
}
