//! Group commit for the single SQLite writer connection.
//!
//! With `synchronous = FULL` every commit waits for the disk, and SQLite has one writer at a
//! time, so commits one after another spend most of their time waiting. Writes that arrive
//! while the writer is busy queue up; the next thread to take the writer runs every queued
//! write in one transaction, each inside its own savepoint, and commits once. A write that
//! fails is rolled back to its savepoint alone; if the commit fails, every write of the group
//! hears so. No write is answered before the commit that holds it is durable.

use std::sync::{Mutex, MutexGuard};

use rusqlite::Connection;

use super::{BACKEND, db_err};
use crate::{Result, StoreError};

/// A write waiting for its group.
trait PendingWrite: Send {
    /// Runs the write inside the group's transaction; false if it failed, so its savepoint is
    /// rolled back.
    fn run(&mut self, conn: &Connection) -> bool;
    /// Hands the answer over once the group's commit is decided (`Err`: it did not commit).
    fn finish(self: Box<Self>, committed: std::result::Result<(), String>);
}

struct Write<F, T> {
    work: Option<F>,
    outcome: Option<Result<T>>,
    reply: tokio::sync::oneshot::Sender<Result<T>>,
}

impl<F, T> PendingWrite for Write<F, T>
where
    F: FnOnce(&Connection) -> Result<T> + Send,
    T: Send,
{
    fn run(&mut self, conn: &Connection) -> bool {
        let Some(work) = self.work.take() else {
            return false;
        };
        let outcome = work(conn);
        let ok = outcome.is_ok();
        self.outcome = Some(outcome);
        ok
    }

    fn finish(self: Box<Self>, committed: std::result::Result<(), String>) {
        let answer = match (committed, self.outcome) {
            (_, Some(Err(e))) => Err(e),
            (Ok(()), Some(Ok(value))) => Ok(value),
            (Err(reason), _) => Err(StoreError::Backend {
                backend: BACKEND,
                reason: format!("the transaction did not commit: {reason}"),
            }),
            (Ok(()), None) => Err(StoreError::Backend {
                backend: BACKEND,
                reason: "the write never ran".into(),
            }),
        };
        // The caller may have gone away (request cancelled); its write stands regardless.
        let _ = self.reply.send(answer);
    }
}

/// The writer connection and the writes queued for it.
pub(super) struct GroupWriter {
    conn: Mutex<Connection>,
    queue: Mutex<Vec<Box<dyn PendingWrite>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic inside a write poisons the lock; the connection itself stays usable (an open
    // transaction left behind is rolled back before the next group).
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl GroupWriter {
    pub(super) fn new(conn: Connection) -> GroupWriter {
        GroupWriter {
            conn: Mutex::new(conn),
            queue: Mutex::new(Vec::new()),
        }
    }

    /// Queues `work` for the next group; the receiver gets its answer after that group's
    /// commit. Call [`GroupWriter::commit_queued`] (on a blocking thread) to make progress.
    pub(super) fn enqueue<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> tokio::sync::oneshot::Receiver<Result<T>> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        lock(&self.queue).push(Box::new(Write {
            work: Some(work),
            outcome: None,
            reply,
        }));
        answer
    }

    /// Takes the writer and commits every queued write as one group. Returns at once with
    /// nothing to do when another thread already took this caller's write into its group.
    pub(super) fn commit_queued(&self) {
        let conn = lock(&self.conn);
        let mut group = std::mem::take(&mut *lock(&self.queue));
        if group.is_empty() {
            return;
        }
        let committed = run_group(&conn, &mut group);
        drop(conn);
        for write in group {
            write.finish(committed.clone());
        }
    }

    /// Runs `work` on the writer connection outside any transaction, while no group runs (for
    /// checkpoints that need the writer to pause).
    pub(super) fn between_groups<T>(
        &self,
        work: impl FnOnce(&Connection) -> Result<T>,
    ) -> Result<T> {
        let conn = lock(&self.conn);
        rollback_abandoned(&conn).map_err(db_err)?;
        work(&conn)
    }

    /// Runs `work` in a transaction of its own, now, on the calling thread (for maintenance).
    pub(super) fn run_alone<T>(&self, work: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let conn = lock(&self.conn);
        rollback_abandoned(&conn).map_err(db_err)?;
        conn.execute_batch("BEGIN IMMEDIATE").map_err(db_err)?;
        match work(&conn) {
            Ok(value) => match conn.execute_batch("COMMIT") {
                Ok(()) => Ok(value),
                Err(e) => {
                    let _ = conn.execute_batch("ROLLBACK");
                    Err(db_err(e))
                }
            },
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                Err(e)
            }
        }
    }
}

/// Rolls back a transaction a panicking write left open.
fn rollback_abandoned(conn: &Connection) -> rusqlite::Result<()> {
    if conn.is_autocommit() {
        Ok(())
    } else {
        conn.execute_batch("ROLLBACK")
    }
}

fn run_group(
    conn: &Connection,
    group: &mut [Box<dyn PendingWrite>],
) -> std::result::Result<(), String> {
    rollback_abandoned(conn).map_err(|e| e.to_string())?;
    conn.execute_batch("BEGIN IMMEDIATE")
        .map_err(|e| e.to_string())?;
    let result = group.iter_mut().try_for_each(|write| {
        conn.execute_batch("SAVEPOINT write")?;
        if !write.run(conn) {
            if conn.is_autocommit() {
                // Some errors (disk full, I/O) make SQLite roll back the whole transaction,
                // taking the group's earlier writes with it.
                return Err(rusqlite::Error::SqliteFailure(
                    rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ABORT),
                    Some("the database rolled back the transaction after a failed write".into()),
                ));
            }
            conn.execute_batch("ROLLBACK TO write")?;
        }
        conn.execute_batch("RELEASE write")
    });
    match result.and_then(|()| conn.execute_batch("COMMIT")) {
        Ok(()) => Ok(()),
        Err(e) => {
            let _ = rollback_abandoned(conn);
            Err(e.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writer() -> GroupWriter {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT NOT NULL)")
            .unwrap();
        GroupWriter::new(conn)
    }

    fn insert(k: i64, v: &'static str) -> impl FnOnce(&Connection) -> Result<usize> + Send {
        move |c| {
            c.execute(
                "INSERT INTO t (k, v) VALUES (?1, ?2)",
                rusqlite::params![k, v],
            )
            .map_err(|e| StoreError::Backend {
                backend: BACKEND,
                reason: e.to_string(),
            })
        }
    }

    fn rows(w: &GroupWriter) -> Vec<(i64, String)> {
        let conn = lock(&w.conn);
        let mut stmt = conn.prepare("SELECT k, v FROM t ORDER BY k").unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    #[test]
    fn a_failed_write_is_rolled_back_alone() {
        let w = writer();
        let first = w.enqueue(insert(1, "a"));
        // Writes a row, then fails: its row must go with it.
        let failing = w.enqueue(|c: &Connection| -> Result<()> {
            c.execute("INSERT INTO t (k, v) VALUES (2, 'b')", [])
                .unwrap();
            c.execute("INSERT INTO t (k, v) VALUES (1, 'dup')", [])
                .map_err(db_err)?;
            Ok(())
        });
        let third = w.enqueue(insert(3, "c"));
        w.commit_queued();
        assert_eq!(first.blocking_recv().unwrap().unwrap(), 1);
        let err = failing.blocking_recv().unwrap().unwrap_err();
        assert!(err.to_string().contains("UNIQUE"), "{err}");
        assert_eq!(third.blocking_recv().unwrap().unwrap(), 1);
        assert_eq!(rows(&w), vec![(1, "a".into()), (3, "c".into())]);
    }

    #[test]
    fn one_commit_answers_every_queued_write_and_later_calls_find_nothing_to_do() {
        let w = writer();
        let answers: Vec<_> = (0..10).map(|k| w.enqueue(insert(k, "x"))).collect();
        w.commit_queued();
        w.commit_queued();
        for a in answers {
            assert_eq!(a.blocking_recv().unwrap().unwrap(), 1);
        }
        assert_eq!(rows(&w).len(), 10);
    }

    #[test]
    fn a_write_that_panics_loses_only_its_group_and_the_writer_recovers() {
        let w = std::sync::Arc::new(writer());
        let lost = w.enqueue(insert(1, "a"));
        let panicking = w.enqueue(|_: &Connection| -> Result<()> { panic!("bug in a write") });
        let w2 = w.clone();
        assert!(
            std::thread::spawn(move || w2.commit_queued())
                .join()
                .is_err()
        );
        // The group's answers were dropped with the panicking thread: callers see an error.
        assert!(lost.blocking_recv().is_err());
        assert!(panicking.blocking_recv().is_err());
        // The transaction the panic left open is rolled back; the next group commits.
        let next = w.enqueue(insert(2, "b"));
        w.commit_queued();
        assert_eq!(next.blocking_recv().unwrap().unwrap(), 1);
        assert_eq!(rows(&w), vec![(2, "b".into())]);
    }

    #[test]
    fn run_alone_commits_or_rolls_back() {
        let w = writer();
        w.run_alone(insert(1, "a")).unwrap();
        let err = w
            .run_alone(|c: &Connection| -> Result<()> {
                c.execute("INSERT INTO t (k, v) VALUES (2, 'b')", [])
                    .unwrap();
                Err(StoreError::Corrupt("stop".into()))
            })
            .unwrap_err();
        assert!(matches!(err, StoreError::Corrupt(_)));
        assert_eq!(rows(&w), vec![(1, "a".into())]);
    }
}
