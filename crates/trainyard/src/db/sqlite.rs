//! SQLite implementation of [`JobStore`].
//!
//! One connection behind a mutex: SQLite allows one writer at a time anyway, and job
//! bookkeeping is a few small statements per status change. WAL mode lets other processes
//! (`trainyard jobs list` while a job runs) read without blocking the writer; a busy timeout
//! covers two writers from different processes.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, params};

use super::{DbError, JobRecord, JobStore, MetricValue, Move, Timestamp, Transition, now};
use crate::jobs::spec::CreateTrainingJobRequest;
use crate::jobs::state::Phase;
use crate::warm_pools::{PoolState, WarmPool};

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS jobs (
    name TEXT NOT NULL PRIMARY KEY COLLATE NOCASE,
    arn TEXT NOT NULL,
    request TEXT NOT NULL,
    status TEXT NOT NULL,
    secondary_status TEXT NOT NULL,
    failure_reason TEXT,
    creation_time REAL NOT NULL,
    training_start_time REAL,
    training_end_time REAL,
    last_modified_time REAL NOT NULL,
    metrics TEXT NOT NULL DEFAULT '[]',
    caller TEXT
);
CREATE TABLE IF NOT EXISTS transitions (
    job TEXT NOT NULL COLLATE NOCASE,
    seq INTEGER NOT NULL,
    status TEXT NOT NULL,
    start_time REAL NOT NULL,
    end_time REAL,
    message TEXT NOT NULL,
    PRIMARY KEY (job, seq)
);
CREATE INDEX IF NOT EXISTS jobs_by_creation ON jobs (creation_time);
CREATE TABLE IF NOT EXISTS metric_points (
    job TEXT NOT NULL COLLATE NOCASE,
    name TEXT NOT NULL,
    timestamp REAL NOT NULL,
    value REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS metric_points_by_job ON metric_points (job, name, timestamp);
CREATE TABLE IF NOT EXISTS warm_pools (
    job TEXT NOT NULL PRIMARY KEY COLLATE NOCASE,
    pool_id TEXT NOT NULL,
    state TEXT NOT NULL,
    match_key TEXT NOT NULL,
    keep_alive INTEGER NOT NULL,
    available_at REAL,
    ended_at REAL,
    reused_by TEXT
);
"#;

/// Job records in one SQLite file.
#[derive(Debug)]
pub struct SqliteStore {
    conn: Mutex<Connection>,
    /// A file of [`RESERVE_BYTES`] beside the database, given up when a status move finds the
    /// disk full, so that the jobs that are running can still be ended (`None` in memory).
    reserve: Option<PathBuf>,
    /// The database file (`None` in memory).
    path: Option<PathBuf>,
}

/// `e`, or [`DbError::DiskFull`] when it is `SQLITE_FULL` or an I/O error while the file
/// system holding `path` has no space left.
fn classify(path: Option<&Path>, e: DbError) -> DbError {
    let Some(path) = path else {
        return e;
    };
    let io_error = matches!(&e, DbError::Sqlite(rusqlite::Error::SqliteFailure(f, _)) if f.code == rusqlite::ErrorCode::SystemIoFailure);
    let dir = path.parent().unwrap_or(Path::new("."));
    let full = e.is_disk_full()
        || (io_error && nix::sys::statvfs::statvfs(dir).is_ok_and(|s| s.blocks_available() == 0));
    if full && !matches!(e, DbError::DiskFull { .. }) {
        DbError::DiskFull {
            path: path.to_path_buf(),
            message: e.to_string(),
        }
    } else {
        e
    }
}

/// Room kept for ending jobs on a full disk: far more than the few pages a status move
/// writes, even with the WAL growing.
pub const RESERVE_BYTES: usize = 4 << 20;

/// Makes the reserve file if it is missing (best effort: on a full disk it stays missing).
fn make_reserve(path: &Path) {
    if path.exists() {
        return;
    }
    let tmp = path.with_extension("reserve-new");
    let made = std::fs::write(&tmp, vec![0u8; RESERVE_BYTES]).and_then(|()| {
        std::fs::File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, path)
    });
    if let Err(e) = made {
        let _ = std::fs::remove_file(&tmp);
        tracing::warn!(reserve = %path.display(), "cannot reserve space for ending jobs on a full disk: {e}");
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<Self, DbError> {
        let full = |e| classify(Some(path), e);
        let conn = Connection::open(path).map_err(|e| full(e.into()))?;
        let reserve = path.with_extension("db-reserve");
        make_reserve(&reserve);
        let mut store = Self::init(conn).map_err(full)?;
        store.reserve = Some(reserve);
        store.path = Some(path.to_path_buf());
        Ok(store)
    }

    /// An in-memory database (tests).
    pub fn in_memory() -> Result<Self, DbError> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(conn: Connection) -> Result<Self, DbError> {
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.execute_batch(SCHEMA)?;
        Ok(SqliteStore {
            conn: Mutex::new(conn),
            reserve: None,
            path: None,
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Inserts a new job row and its first history entry.
    fn create_row(
        &self,
        name: &str,
        arn: &str,
        request: &CreateTrainingJobRequest,
        message: &str,
        caller: Option<&str>,
    ) -> Result<JobRecord, DbError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let t: Timestamp = now();
        let body = serde_json::to_string(request).map_err(|e| DbError::Corrupt {
            name: name.into(),
            message: e.to_string(),
        })?;
        let inserted = tx.execute(
            "INSERT INTO jobs (name, arn, request, status, secondary_status, creation_time, last_modified_time, caller)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, ?7) ON CONFLICT (name) DO NOTHING",
            params![name, arn, body, Phase::Starting.status().as_str(), Phase::Starting.secondary(), t, caller],
        )?;
        if inserted == 0 {
            return Err(DbError::AlreadyExists(name.to_string()));
        }
        tx.execute(
            "INSERT INTO transitions (job, seq, status, start_time, message) VALUES (?1, 0, ?2, ?3, ?4)",
            params![name, Phase::Starting.secondary(), t, message],
        )?;
        let rec = load(&tx, name)?.ok_or_else(|| DbError::NotFound(name.into()))?;
        tx.commit()?;
        Ok(rec)
    }

    /// One status move, in one immediate transaction.
    fn try_move(&self, name: &str, mv: Move<'_>) -> Result<JobRecord, DbError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let current = load(&tx, name)?.ok_or_else(|| DbError::NotFound(name.into()))?;
        if mv.to == current.phase && !mv.to.is_terminal() {
            // The same status with a new message (SageMaker updates the current transition's
            // `StatusMessage`, e.g. once the training image is pulled).
            let seq = current.transitions.len() as i64 - 1;
            let t = now().max(current.last_modified_time);
            tx.execute(
                "UPDATE transitions SET message = ?1 WHERE job = ?2 AND seq = ?3",
                params![mv.message, name, seq],
            )?;
            tx.execute(
                "UPDATE jobs SET last_modified_time = ?1 WHERE name = ?2",
                params![t, name],
            )?;
            let rec = load(&tx, name)?.ok_or_else(|| DbError::NotFound(name.into()))?;
            tx.commit()?;
            return Ok(rec);
        }
        if !current.phase.can_move_to(mv.to) {
            return Err(DbError::IllegalTransition {
                name: current.name,
                from: current.phase,
                to: mv.to,
            });
        }
        let t = now().max(current.last_modified_time);
        let seq = current.transitions.len() as i64;
        tx.execute(
            "UPDATE transitions SET end_time = ?1 WHERE job = ?2 AND seq = ?3",
            params![t, name, seq - 1],
        )?;
        let end = mv.to.is_terminal().then_some(t);
        tx.execute(
            "INSERT INTO transitions (job, seq, status, start_time, end_time, message) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![name, seq, mv.to.secondary(), t, end, mv.message],
        )?;
        let starts_training = matches!(mv.to, Phase::Downloading | Phase::Training);
        tx.execute(
            "UPDATE jobs SET status = ?1, secondary_status = ?2, last_modified_time = ?3,
                 training_start_time = CASE WHEN ?4 AND training_start_time IS NULL THEN ?3 ELSE training_start_time END,
                 training_end_time = CASE WHEN ?5 THEN ?3 ELSE training_end_time END,
                 failure_reason = COALESCE(?6, failure_reason)
             WHERE name = ?7",
            params![
                mv.to.status().as_str(),
                mv.to.secondary(),
                t,
                starts_training,
                mv.to.is_terminal(),
                mv.failure_reason.filter(|_| mv.to == Phase::Failed),
                name
            ],
        )?;
        let rec = load(&tx, name)?.ok_or_else(|| DbError::NotFound(name.into()))?;
        tx.commit()?;
        Ok(rec)
    }
}

fn load(conn: &Connection, name: &str) -> Result<Option<JobRecord>, DbError> {
    // Cached: Describe runs this on every call, and compiling the SQL was a measurable share.
    let row = conn
        .prepare_cached(
            "SELECT name, arn, request, status, secondary_status, failure_reason, creation_time,
                    training_start_time, training_end_time, last_modified_time, metrics
             FROM jobs WHERE name = ?1",
        )?
        .query_row(params![name], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, Option<String>>(5)?,
                r.get::<_, f64>(6)?,
                r.get::<_, Option<f64>>(7)?,
                r.get::<_, Option<f64>>(8)?,
                r.get::<_, f64>(9)?,
                r.get::<_, String>(10)?,
            ))
        })
        .optional()?;
    let Some((name, arn, request, status, secondary, failure_reason, ct, ts, te, lm, metrics)) =
        row
    else {
        return Ok(None);
    };
    let corrupt = |message: String| DbError::Corrupt {
        name: name.clone(),
        message,
    };
    let (request, dropped) =
        CreateTrainingJobRequest::from_stored(&request).map_err(|e| corrupt(e.to_string()))?;
    if !dropped.is_empty() {
        tracing::warn!(job = %name, ?dropped, "stored request members that do not fit the request shape are left out");
    }
    let phase = Phase::from_pair(&status, &secondary)
        .ok_or_else(|| corrupt(format!("unknown status {status}/{secondary}")))?;
    let metrics: Vec<(String, f64, f64)> =
        serde_json::from_str(&metrics).map_err(|e| corrupt(e.to_string()))?;
    let mut stmt = conn.prepare_cached(
        "SELECT status, start_time, end_time, message FROM transitions WHERE job = ?1 ORDER BY seq",
    )?;
    let transitions = stmt
        .query_map(params![name], |r| {
            Ok(Transition {
                status: r.get(0)?,
                start_time: r.get(1)?,
                end_time: r.get(2)?,
                message: r.get(3)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(JobRecord {
        name,
        arn,
        request,
        phase,
        failure_reason,
        creation_time: ct,
        training_start_time: ts,
        training_end_time: te,
        last_modified_time: lm,
        transitions,
        metrics: metrics
            .into_iter()
            .map(|(name, value, timestamp)| MetricValue {
                name,
                value,
                timestamp,
            })
            .collect(),
    }))
}

impl JobStore for SqliteStore {
    fn create(
        &self,
        name: &str,
        arn: &str,
        request: &CreateTrainingJobRequest,
        message: &str,
        caller: Option<&str>,
    ) -> Result<JobRecord, DbError> {
        self.create_row(name, arn, request, message, caller)
            .map_err(|e| classify(self.path.as_deref(), e))
    }

    fn get(&self, name: &str) -> Result<Option<JobRecord>, DbError> {
        load(&self.conn(), name)
    }

    fn caller(&self, name: &str) -> Result<Option<String>, DbError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT caller FROM jobs WHERE name = ?1",
                params![name],
                |r| r.get::<_, Option<String>>(0),
            )
            .optional()?
            .flatten())
    }

    fn summaries(&self) -> Result<Vec<super::JobSummary>, DbError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT name, arn, status, secondary_status, creation_time, last_modified_time, training_end_time
             FROM jobs ORDER BY creation_time, name",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, f64>(4)?,
                r.get::<_, f64>(5)?,
                r.get::<_, Option<f64>>(6)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (name, arn, status, secondary, ct, lm, te) = row?;
            let phase = Phase::from_pair(&status, &secondary).ok_or_else(|| DbError::Corrupt {
                name: name.clone(),
                message: format!("unknown status {status}/{secondary}"),
            })?;
            out.push(super::JobSummary {
                name,
                arn,
                phase,
                creation_time: ct,
                last_modified_time: lm,
                training_end_time: te,
            });
        }
        Ok(out)
    }

    fn list(&self) -> Result<Vec<JobRecord>, DbError> {
        let conn = self.conn();
        let names: Vec<String> = conn
            .prepare_cached("SELECT name FROM jobs ORDER BY creation_time, name")?
            .query_map([], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        names
            .iter()
            .filter_map(|n| load(&conn, n).transpose())
            .collect()
    }

    fn move_to(&self, name: &str, mv: Move<'_>) -> Result<JobRecord, DbError> {
        match self
            .try_move(name, mv.clone())
            .map_err(|e| classify(self.path.as_deref(), e))
        {
            // The disk is full: give up the reserve so a job can still end rather than stay in
            // its status for ever. Only a move to a terminal status uses it: the room is for
            // ending jobs, not for carrying on (a job whose next step finds the disk full is
            // failed, `Lifecycle::fail_after`); new jobs are refused meanwhile (`create` never
            // uses it). The reserve is made again when the database is next opened.
            Err(e) if e.is_disk_full() && mv.to.is_terminal() => match &self.reserve {
                Some(reserve) if std::fs::remove_file(reserve).is_ok() => {
                    tracing::error!(job = name, reserve = %reserve.display(), "the job database's disk is full; released the reserved space to record a status move");
                    self.try_move(name, mv)
                        .map_err(|e| classify(self.path.as_deref(), e))
                }
                _ => Err(e),
            },
            other => other,
        }
    }

    fn set_metric_series(&self, name: &str, points: &[MetricValue]) -> Result<(), DbError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute("DELETE FROM metric_points WHERE job = ?1", params![name])?;
        {
            let mut insert = tx.prepare(
                "INSERT INTO metric_points (job, name, timestamp, value) VALUES (?1, ?2, ?3, ?4)",
            )?;
            for point in points {
                insert.execute(params![name, point.name, point.timestamp, point.value])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn metric_series(&self, name: &str) -> Result<Vec<MetricValue>, DbError> {
        let conn = self.conn();
        let mut query = conn.prepare(
            "SELECT name, timestamp, value FROM metric_points WHERE job = ?1 \
             ORDER BY name, timestamp, rowid",
        )?;
        let rows = query.query_map(params![name], |row| {
            Ok(MetricValue {
                name: row.get(0)?,
                timestamp: row.get(1)?,
                value: row.get(2)?,
            })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    fn set_metrics(&self, name: &str, metrics: &[MetricValue]) -> Result<(), DbError> {
        let body: Vec<(&str, f64, f64)> = metrics
            .iter()
            .map(|m| (m.name.as_str(), m.value, m.timestamp))
            .collect();
        let body = serde_json::to_string(&body).map_err(|e| DbError::Corrupt {
            name: name.into(),
            message: e.to_string(),
        })?;
        let n = self.conn().execute(
            "UPDATE jobs SET metrics = ?1 WHERE name = ?2",
            params![body, name],
        )?;
        if n == 0 {
            return Err(DbError::NotFound(name.into()));
        }
        Ok(())
    }

    fn warm_pools(&self) -> Result<Vec<WarmPool>, DbError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!("{POOL_COLUMNS} ORDER BY job"))?;
        let rows = stmt.query_map([], pool_row)?;
        rows.map(|r| r?.into_pool()).collect()
    }

    fn warm_pool(&self, job: &str) -> Result<Option<WarmPool>, DbError> {
        let conn = self.conn();
        pool_of(&conn, job)
    }

    fn start_warm_pool(
        &self,
        job: &str,
        match_key: &str,
        keep_alive: u64,
        now: Timestamp,
    ) -> Result<WarmPool, DbError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        if let Some(existing) = pool_of(&tx, job)? {
            // A restarted run of the same job keeps the row it had.
            return Ok(existing);
        }
        // The oldest available pool that has not expired and matches.
        let taken: Option<String> = tx
            .query_row(
                "SELECT job FROM warm_pools
                 WHERE state = 'Available' AND match_key = ?1 AND available_at + keep_alive > ?2
                 ORDER BY available_at LIMIT 1",
                params![match_key, now],
                |r| r.get(0),
            )
            .optional()?;
        let (pool_id, state) = match &taken {
            Some(old) => {
                tx.execute(
                    "UPDATE warm_pools SET state = 'Reused', ended_at = ?2, reused_by = ?3
                     WHERE job = ?1",
                    params![old, now, job],
                )?;
                let id: String = tx.query_row(
                    "SELECT pool_id FROM warm_pools WHERE job = ?1",
                    params![old],
                    |r| r.get(0),
                )?;
                (id, PoolState::InUse)
            }
            None => (job.to_string(), PoolState::Cold),
        };
        tx.execute(
            "INSERT INTO warm_pools (job, pool_id, state, match_key, keep_alive)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![job, pool_id, state.as_str(), match_key, keep_alive as i64],
        )?;
        let row = pool_of(&tx, job)?.ok_or_else(|| DbError::NotFound(job.into()))?;
        tx.commit()?;
        Ok(row)
    }

    fn end_warm_pool(&self, job: &str, keep: bool, now: Timestamp) -> Result<(), DbError> {
        let (state, available_at, ended_at) = if keep {
            (PoolState::Available, Some(now), None)
        } else {
            (PoolState::Terminated, None, Some(now))
        };
        self.conn().execute(
            "UPDATE warm_pools SET state = ?2, available_at = ?3, ended_at = ?4
             WHERE job = ?1 AND state IN ('Cold', 'InUse')",
            params![job, state.as_str(), available_at, ended_at],
        )?;
        Ok(())
    }

    fn set_keep_alive(
        &self,
        job: &str,
        keep_alive: u64,
        now: Timestamp,
    ) -> Result<Option<WarmPool>, DbError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let Some(pool) = pool_of(&tx, job)? else {
            return Ok(None);
        };
        match pool.state_at(now) {
            PoolState::Available if keep_alive == 0 => {
                tx.execute(
                    "UPDATE warm_pools SET state = 'Terminated', ended_at = ?2 WHERE job = ?1",
                    params![job, now],
                )?;
            }
            PoolState::Available | PoolState::Cold | PoolState::InUse => {
                tx.execute(
                    "UPDATE warm_pools SET keep_alive = ?2 WHERE job = ?1",
                    params![job, keep_alive as i64],
                )?;
            }
            PoolState::Reused | PoolState::Terminated => {}
        }
        let row = pool_of(&tx, job)?;
        tx.commit()?;
        Ok(row)
    }
}

const POOL_COLUMNS: &str = "SELECT job, pool_id, state, match_key, keep_alive, available_at,
    ended_at, reused_by FROM warm_pools";

/// A warm-pool row as read, before its state is parsed.
struct PoolRow {
    job: String,
    pool_id: String,
    state: String,
    match_key: String,
    keep_alive: i64,
    available_at: Option<f64>,
    ended_at: Option<f64>,
    reused_by: Option<String>,
}

impl PoolRow {
    fn into_pool(self) -> Result<WarmPool, DbError> {
        let state = PoolState::parse(&self.state).ok_or_else(|| DbError::Corrupt {
            name: self.job.clone(),
            message: format!("unknown warm pool state {:?}", self.state),
        })?;
        Ok(WarmPool {
            job: self.job,
            pool_id: self.pool_id,
            state,
            match_key: self.match_key,
            keep_alive: self.keep_alive.max(0) as u64,
            available_at: self.available_at,
            ended_at: self.ended_at,
            reused_by: self.reused_by,
        })
    }
}

fn pool_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<PoolRow> {
    Ok(PoolRow {
        job: r.get(0)?,
        pool_id: r.get(1)?,
        state: r.get(2)?,
        match_key: r.get(3)?,
        keep_alive: r.get(4)?,
        available_at: r.get(5)?,
        ended_at: r.get(6)?,
        reused_by: r.get(7)?,
    })
}

fn pool_of(conn: &Connection, job: &str) -> Result<Option<WarmPool>, DbError> {
    conn.prepare_cached(&format!("{POOL_COLUMNS} WHERE job = ?1"))?
        .query_row(params![job], pool_row)
        .optional()?
        .map(PoolRow::into_pool)
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(name: &str) -> CreateTrainingJobRequest {
        CreateTrainingJobRequest::from_json(&format!(
            r#"{{"TrainingJobName":"{name}","RoleArn":"arn:aws:iam::000000000000:role/r","OutputDataConfig":{{"S3OutputPath":"s3://b/o"}}}}"#
        ))
        .unwrap()
    }

    fn mv(to: Phase) -> Move<'static> {
        Move {
            to,
            message: "m",
            failure_reason: Some("boom"),
        }
    }

    #[test]
    fn a_request_stored_with_a_malformed_member_is_still_readable() {
        // Earlier versions stored DebugHookConfig and its kin as unchecked JSON.
        let db = SqliteStore::in_memory().unwrap();
        db.create("old", "arn", &request("old"), "Launching", None)
            .unwrap();
        let mut stored = serde_json::to_value(request("old")).unwrap();
        stored["DebugHookConfig"] = serde_json::json!("x");
        db.conn()
            .execute(
                "UPDATE jobs SET request = ?1 WHERE name = 'old'",
                params![stored.to_string()],
            )
            .unwrap();
        let j = db.get("old").unwrap().unwrap();
        assert!(j.request.debug_hook_config.is_none());
        assert_eq!(db.list().unwrap().len(), 1);
    }

    #[test]
    fn lifecycle_is_recorded_with_contiguous_history() {
        let db = SqliteStore::in_memory().unwrap();
        db.create(
            "job-1",
            "arn",
            &request("job-1"),
            "Launching",
            Some(r#"{"AccessKeyId":"AK"}"#),
        )
        .unwrap();
        assert!(matches!(
            db.create("JOB-1", "arn", &request("JOB-1"), "x", None),
            Err(DbError::AlreadyExists(_))
        ));
        for p in [
            Phase::Downloading,
            Phase::Training,
            Phase::Uploading,
            Phase::Failed,
        ] {
            db.move_to("job-1", mv(p)).unwrap();
        }
        let j = db.get("JOB-1").unwrap().unwrap();
        assert_eq!(j.phase, Phase::Failed);
        assert_eq!(j.failure_reason.as_deref(), Some("boom"));
        let names: Vec<&str> = j.transitions.iter().map(|t| t.status.as_str()).collect();
        assert_eq!(
            names,
            ["Starting", "Downloading", "Training", "Uploading", "Failed"]
        );
        for w in j.transitions.windows(2) {
            assert_eq!(w[0].end_time, Some(w[1].start_time));
        }
        let last = j.transitions.last().unwrap();
        assert_eq!(last.end_time, Some(last.start_time));
        assert_eq!(j.training_start_time, Some(j.transitions[1].start_time));
        assert_eq!(j.training_end_time, Some(last.start_time));
        assert!(matches!(
            db.move_to("job-1", mv(Phase::Training)),
            Err(DbError::IllegalTransition { .. })
        ));
    }

    #[test]
    fn metrics_and_listing() {
        let db = SqliteStore::in_memory().unwrap();
        db.create("a", "arn-a", &request("a"), "", None).unwrap();
        db.create("b", "arn-b", &request("b"), "", None).unwrap();
        assert_eq!(
            db.summaries()
                .unwrap()
                .iter()
                .map(|j| j.arn.as_str())
                .collect::<Vec<_>>(),
            ["arn-a", "arn-b"]
        );
        assert_eq!(db.caller("a").unwrap(), None);
        assert_eq!(
            db.summaries()
                .unwrap()
                .iter()
                .map(|j| j.arn.as_str())
                .collect::<Vec<_>>(),
            ["arn-a", "arn-b"]
        );
        db.set_metrics(
            "a",
            &[MetricValue {
                name: "loss".into(),
                value: 0.5,
                timestamp: 1.0,
            }],
        )
        .unwrap();
        assert_eq!(db.get("a").unwrap().unwrap().metrics[0].value, 0.5);
        let point = |name: &str, timestamp: f64, value: f64| MetricValue {
            name: name.into(),
            value,
            timestamp,
        };
        db.set_metric_series("a", &[point("loss", 2.0, 0.5), point("acc", 1.0, 0.1)])
            .unwrap();
        db.set_metric_series("A", &[point("loss", 2.0, 0.4), point("loss", 1.0, 0.9)])
            .unwrap();
        let series = db.metric_series("a").unwrap();
        assert_eq!(
            series
                .iter()
                .map(|p| (p.name.as_str(), p.timestamp, p.value))
                .collect::<Vec<_>>(),
            [("loss", 1.0, 0.9), ("loss", 2.0, 0.4)],
            "replaced, case-insensitively, and ordered by time"
        );
        assert!(db.metric_series("b").unwrap().is_empty());
        assert_eq!(
            db.list()
                .unwrap()
                .iter()
                .map(|j| j.name.as_str())
                .collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert_eq!(db.unfinished().unwrap().len(), 2);
    }
}
