//! A named thread that runs a task at a fixed interval until its handle drops (the SQLite
//! checkpoint threads of the store and of the embedded session file).

use std::sync::mpsc::{RecvTimeoutError, Sender, channel};
use std::thread::JoinHandle;
use std::time::Duration;

/// What a SQLite checkpoint thread runs, on a connection of its own, each time (the store's
/// and the session file's). `PASSIVE` first: it copies the WAL's pages into the database file
/// beside the readers and the writer, waiting for neither. Under a steady stream of writes it
/// never catches up (pages are appended while it copies), and the WAL starts again from its
/// beginning only after a checkpoint that did; so `RESTART` next: it takes the write lock,
/// copies the few pages written meanwhile, and waits for the readers of older pages, after which
/// the next write starts the WAL over. Writers wait while it holds the lock, so it waits for
/// others at most 50 ms (`busy_timeout`), and a RESTART that could not finish in that time is
/// tried again at the next run. Measured on the refresh bench (embedded): with `PASSIVE` alone
/// the WAL grew by about 23 KiB per rotation without end (412 MB by the end of the first round),
/// and the writes into a growing file cost a fifth of the rotation thread's time.
pub const SQLITE_WAL_CHECKPOINT: &str =
    "PRAGMA busy_timeout = 50; PRAGMA wal_checkpoint(PASSIVE); PRAGMA wal_checkpoint(RESTART);";

/// The handle of a [`Periodic::start`] thread. Dropping it stops the thread and waits for it,
/// so what the task holds (a connection) is released when the drop returns.
pub struct Periodic {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Periodic {
    /// Starts a thread named `name` that runs `task` every `every`, the first time one interval
    /// after the start. A run that is under way when the handle drops finishes first.
    pub fn start(
        name: &str,
        every: Duration,
        mut task: impl FnMut() + Send + 'static,
    ) -> std::io::Result<Self> {
        let (stop, stopped) = channel::<()>();
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(every) {
                    task();
                }
            })?;
        Ok(Self {
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// [`Periodic::start`] with a state the task keeps between runs (a connection of its own):
    /// opened at the first run, and again at the next run after `open` or `run` failed. A failure
    /// is a warning naming `what`; the thread goes on.
    pub fn with_state<S: Send + 'static, E: std::fmt::Display>(
        name: &str,
        every: Duration,
        what: &'static str,
        mut open: impl FnMut() -> Result<S, E> + Send + 'static,
        mut run: impl FnMut(&mut S) -> Result<(), E> + Send + 'static,
    ) -> std::io::Result<Self> {
        let mut state: Option<S> = None;
        Self::start(name, every, move || {
            let done = match &mut state {
                Some(s) => run(s),
                None => open().and_then(|s| run(state.insert(s))),
            };
            if let Err(e) = done {
                state = None;
                tracing::warn!(error = %e, "{what} failed");
            }
        })
    }
}

impl Drop for Periodic {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl std::fmt::Debug for Periodic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Periodic")
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::mpsc::sync_channel;
    use std::time::Duration;

    use super::Periodic;

    /// The task runs again and again; once the handle has dropped, the thread has ended and what
    /// the task held is released.
    #[test]
    fn runs_until_dropped_and_releases_what_it_holds() {
        let held = Arc::new(());
        let (ran, runs) = sync_channel::<()>(16);
        let p = Periodic::start("periodic-test", Duration::from_millis(1), {
            let held = held.clone();
            move || {
                let _ = &held;
                let _ = ran.try_send(());
            }
        })
        .unwrap();
        for _ in 0..3 {
            runs.recv_timeout(Duration::from_secs(10)).unwrap();
        }
        assert_eq!(Arc::strong_count(&held), 2);
        drop(p);
        assert_eq!(
            Arc::strong_count(&held),
            1,
            "the task is gone with the handle"
        );
    }

    /// The state is opened once and kept; a failed run drops it, and the next run opens another.
    #[test]
    fn state_is_kept_and_opened_again_after_a_failure() {
        let (ran, runs) = sync_channel::<(u32, u32)>(16);
        let mut opened = 0;
        let p = Periodic::with_state(
            "periodic-state",
            Duration::from_millis(1),
            "test task",
            move || {
                opened += 1;
                Ok::<_, String>((opened, 0))
            },
            move |s: &mut (u32, u32)| {
                s.1 += 1;
                let _ = ran.try_send(*s);
                if s.1 == 2 {
                    Err("second run".into())
                } else {
                    Ok(())
                }
            },
        )
        .unwrap();
        let seen: Vec<(u32, u32)> = (0..4)
            .map(|_| runs.recv_timeout(Duration::from_secs(10)).unwrap())
            .collect();
        drop(p);
        assert_eq!(seen, [(1, 1), (1, 2), (2, 1), (2, 2)]);
    }
}
