//! A named thread that runs a task at a fixed interval until its handle drops (the SQLite
//! checkpoint threads of the store and of the embedded session file).

use std::sync::mpsc::{RecvTimeoutError, Sender, channel};
use std::thread::JoinHandle;
use std::time::Duration;

/// The handle of a [`Periodic::start`] thread. Dropping it stops the thread and waits for it,
/// so what the task holds (a pool and its connections) is released when the drop returns.
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
}
