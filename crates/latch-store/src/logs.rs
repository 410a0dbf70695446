//! Log events are many and small: a writer thread takes them from a queue and writes each batch
//! in one transaction, so a sign-in or a token exchange does not wait for its log row's commit.
//! Reading the log first waits until everything queued before the read is written.

use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};

use diesel::prelude::*;
use diesel::r2d2::Pool;

use crate::conn::{Backend, DbConnection, Manager};
use crate::rows::LogRow;
use crate::schema::log_events;

/// How long the writer waits after the first event of a batch.
const LINGER: std::time::Duration = std::time::Duration::from_millis(20);

/// Most events written in one transaction.
const BATCH: usize = 512;

enum Msg {
    Event(Box<LogRow>),
    Flush(tokio::sync::oneshot::Sender<()>),
}

#[derive(Clone)]
pub(crate) struct LogQueue {
    tx: Sender<Msg>,
}

impl LogQueue {
    pub fn start(pool: Pool<Manager>, write_lock: Arc<Mutex<()>>, backend: Backend) -> Self {
        let (tx, rx) = channel();
        std::thread::Builder::new()
            .name("latch-log-writer".into())
            .spawn(move || writer(rx, pool, write_lock, backend))
            .map(|_| ())
            .unwrap_or_else(|e| tracing::error!(error = %e, "cannot start the log writer"));
        Self { tx }
    }

    pub fn push(&self, row: LogRow) {
        if self.tx.send(Msg::Event(Box::new(row))).is_err() {
            tracing::error!("log writer stopped; event dropped");
        }
    }

    /// Waits until every event queued so far is written.
    pub async fn flush(&self) {
        let (ack, done) = tokio::sync::oneshot::channel();
        if self.tx.send(Msg::Flush(ack)).is_ok() {
            let _ = done.await;
        }
    }
}

fn writer(rx: Receiver<Msg>, pool: Pool<Manager>, write_lock: Arc<Mutex<()>>, backend: Backend) {
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
                Msg::Event(r) => rows.push(*r),
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
                conn.transaction::<_, diesel::result::Error, _>(|c| {
                    match &mut **c {
                        // COPY: the batch in one round trip, with nothing to parse or plan
                        // per row (a multi-row INSERT's VALUES list is planned row by row).
                        DbConnection::Pg(pg) => {
                            diesel::copy_from(log_events::table)
                                .from_insertable(&rows)
                                .execute(pg)?;
                        }
                        // In-process: a prepared statement per row costs no round trip.
                        DbConnection::Sqlite(lite) => {
                            for r in &rows {
                                diesel::insert_into(log_events::table)
                                    .values(r)
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
