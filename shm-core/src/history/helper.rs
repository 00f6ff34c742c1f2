//! The store's helper thread: the system calls an append would otherwise make on the
//! publishing loop, made ahead of it. At the first record of each reserved step of a chunk
//! the writer asks it to reserve the next step's disk blocks and fault its pages in
//! (`chunk::Area::prepare`; a new chunk's first step at its first append), retention hands
//! it the chunks to delete, and a sealed chunk's mapping is unmapped there; the writer's
//! appends are then stores into pages already there (docs/BENCHMARKS.md has the cost).
//!
//! Nothing depends on it for correctness: a step the helper has not finished (or could not:
//! a full disk) is reserved by the writer itself when it gets there, as before, and returns
//! its error there; a job that finds the queue full is done by the writer at once.

use std::path::PathBuf;
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::history::chunk::Area;

/// Jobs waiting for the helper, at most: a writer makes one per step of a stream, so a queue
/// this long is never full but when the disk stalls, and then the writer does the work.
const QUEUE: usize = 64;

enum Job {
    /// Reserve and fault in records `from..upto` of a chunk.
    Prepare {
        area: Arc<Area>,
        from: u64,
        upto: u64,
    },
    /// Delete a chunk retention dropped.
    Remove(PathBuf),
    /// Drop a sealed chunk's file and mapping (its unmapping).
    Retire(Arc<Area>),
}

/// The helper of one store's writer. Dropping it finishes the queued jobs (the deletions a
/// clean stop must leave done) and ends the thread.
#[derive(Debug)]
pub(crate) struct Helper {
    tx: Option<SyncSender<Job>>,
    thread: Option<JoinHandle<()>>,
}

impl Helper {
    /// Starts the thread; if it cannot be started, the writer does every job itself.
    pub(crate) fn start() -> Helper {
        let (tx, rx) = sync_channel::<Job>(QUEUE);
        let thread = std::thread::Builder::new()
            .name("mtf-history".into())
            .spawn(move || {
                for job in rx {
                    match job {
                        // An error is the writer's to meet, when it reserves the step itself.
                        Job::Prepare { area, from, upto } => {
                            let _ = area.prepare(from, upto);
                        }
                        Job::Remove(path) => {
                            let _ = std::fs::remove_file(path);
                        }
                        Job::Retire(area) => drop(area),
                    }
                }
            });
        match thread {
            Ok(t) => Helper {
                tx: Some(tx),
                thread: Some(t),
            },
            Err(_) => Helper {
                tx: None,
                thread: None,
            },
        }
    }

    /// Asks for records `from..upto` of `area` to be made ready; dropped if the queue is full
    /// (the writer reserves them itself when it gets there).
    pub(crate) fn prepare(&self, area: &Arc<Area>, from: u64, upto: u64) {
        if let Some(tx) = &self.tx {
            let _ = tx.try_send(Job::Prepare {
                area: Arc::clone(area),
                from,
                upto,
            });
        }
    }

    /// Drops a sealed chunk's file and mapping, on the helper if it can take it, else here.
    pub(crate) fn retire(&self, area: Arc<Area>) {
        if let Some(tx) = &self.tx {
            let _ = tx.try_send(Job::Retire(area));
        }
    }

    /// Deletes `path`, on the helper if it can take it, else at once.
    pub(crate) fn remove(&self, path: PathBuf) {
        let queued = match &self.tx {
            Some(tx) => tx.try_send(Job::Remove(path)).map_err(|e| match e {
                TrySendError::Full(Job::Remove(p)) | TrySendError::Disconnected(Job::Remove(p)) => {
                    Some(p)
                }
                _ => None,
            }),
            None => Err(Some(path)),
        };
        if let Err(Some(path)) = queued {
            let _ = std::fs::remove_file(path);
        }
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        // Closing the queue ends the thread once it has done what is in it.
        drop(self.tx.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
