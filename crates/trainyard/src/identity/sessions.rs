//! Temporary credentials issued by `AssumeRole`, kept in SQLite.
//!
//! A client that assumed a role keeps using its `ASIA…` key for up to 12 hours, across
//! restarts of the server, so sessions are persisted: a `sessions` table in the same
//! database file as the jobs (`$TRAINYARD_HOME/trainyard.db`), opened through its own
//! connection in WAL mode with a busy timeout so that it never blocks the job store for
//! long. The secret access key must be stored as it is (verifying a SigV4 signature needs
//! it); the session token is stored only as its SHA-256, since comparing a presented token
//! needs nothing more. Expired sessions are purged whenever a new one is stored.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};
use time::OffsetDateTime;

use super::secret::{Secret, constant_time_eq, sha256_hex};
use crate::authz::principal::SessionTag;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS sessions (
    access_key_id TEXT NOT NULL PRIMARY KEY,
    secret_access_key TEXT NOT NULL,
    session_token_sha256 TEXT NOT NULL,
    role_arn TEXT NOT NULL,
    role_session_name TEXT NOT NULL,
    tags TEXT NOT NULL,
    transitive_tag_keys TEXT NOT NULL,
    source_arn TEXT NOT NULL,
    source_access_key_id TEXT NOT NULL,
    source_identity TEXT,
    session_policy TEXT,
    chained INTEGER NOT NULL,
    issued INTEGER NOT NULL,
    expiration INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_by_expiration ON sessions (expiration);
"#;

/// What failed in the session table.
#[derive(Debug, thiserror::Error)]
pub enum SessionStoreError {
    /// SQLite refused.
    #[error("session store {path}: {source}")]
    Sqlite {
        /// The database file (`:memory:` for tests).
        path: PathBuf,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// A stored row does not decode (edited by hand, or written by a newer version).
    #[error("session store {path}: session {access_key_id} is corrupt: {message}")]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// The session's access key id.
        access_key_id: String,
        /// What does not decode.
        message: String,
    },
}

/// One role session as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSession {
    /// Temporary access key id (`ASIA…`).
    pub access_key_id: String,
    /// Secret access key (redacted in `Debug`).
    pub secret_access_key: Secret,
    /// Hex SHA-256 of the session token.
    pub session_token_sha256: String,
    /// ARN of the assumed role.
    pub role_arn: String,
    /// `RoleSessionName`.
    pub role_session_name: String,
    /// Session tags: explicit ones and incoming transitive ones, merged.
    pub tags: Vec<SessionTag>,
    /// Keys of `tags` that pass on to chained sessions.
    pub transitive_tag_keys: Vec<String>,
    /// ARN of the principal that called `AssumeRole` (a user, or the parent session).
    pub source_arn: String,
    /// Access key id that principal signed with.
    pub source_access_key_id: String,
    /// `SourceIdentity`, if set on this session or inherited.
    pub source_identity: Option<String>,
    /// Inline session policy (`Policy` parameter), as JSON text.
    pub session_policy: Option<String>,
    /// Whether the caller was itself a role session.
    pub chained: bool,
    /// When the session was issued.
    pub issued: OffsetDateTime,
    /// When the credentials expire.
    pub expiration: OffsetDateTime,
}

impl StoredSession {
    /// Whether `token` is this session's token (compared in constant time).
    pub fn token_matches(&self, token: &str) -> bool {
        constant_time_eq(
            sha256_hex(token.as_bytes()).as_bytes(),
            self.session_token_sha256.as_bytes(),
        )
    }

    /// Whether the credentials have expired at `now`.
    pub fn is_expired(&self, now: OffsetDateTime) -> bool {
        now >= self.expiration
    }
}

/// The `sessions` table.
#[derive(Debug)]
pub struct SessionStore {
    path: PathBuf,
    conn: Mutex<Connection>,
}

impl SessionStore {
    /// Opens (creating the table if needed) the database at `path`, normally
    /// `$TRAINYARD_HOME/trainyard.db`.
    pub fn open(path: &Path) -> Result<Self, SessionStoreError> {
        let conn = Connection::open(path).map_err(|source| SessionStoreError::Sqlite {
            path: path.to_path_buf(),
            source,
        })?;
        Self::init(conn, path.to_path_buf())
    }

    /// A store in memory (tests).
    pub fn in_memory() -> Result<Self, SessionStoreError> {
        let path = PathBuf::from(":memory:");
        let conn = Connection::open_in_memory().map_err(|source| SessionStoreError::Sqlite {
            path: path.clone(),
            source,
        })?;
        Self::init(conn, path)
    }

    fn init(conn: Connection, path: PathBuf) -> Result<Self, SessionStoreError> {
        let setup = || -> rusqlite::Result<()> {
            conn.busy_timeout(Duration::from_secs(10))?;
            conn.pragma_update(None, "journal_mode", "WAL")?;
            conn.pragma_update(None, "synchronous", "NORMAL")?;
            conn.execute_batch(SCHEMA)
        };
        setup().map_err(|source| SessionStoreError::Sqlite {
            path: path.clone(),
            source,
        })?;
        Ok(SessionStore {
            path,
            conn: Mutex::new(conn),
        })
    }

    fn sqlite(&self) -> impl Fn(rusqlite::Error) -> SessionStoreError + '_ {
        |source| SessionStoreError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stores a new session and deletes those that expired before `now`.
    pub fn insert(&self, s: &StoredSession, now: OffsetDateTime) -> Result<(), SessionStoreError> {
        let tags = serde_json::to_string(&s.tags).map_err(|e| self.corrupt(s, e))?;
        let keys = serde_json::to_string(&s.transitive_tag_keys).map_err(|e| self.corrupt(s, e))?;
        let conn = self.conn();
        conn.execute(
            "DELETE FROM sessions WHERE expiration <= ?1",
            params![now.unix_timestamp()],
        )
        .map_err(self.sqlite())?;
        conn.execute(
            "INSERT INTO sessions (access_key_id, secret_access_key, session_token_sha256, role_arn,
                 role_session_name, tags, transitive_tag_keys, source_arn, source_access_key_id,
                 source_identity, session_policy, chained, issued, expiration)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
            params![
                s.access_key_id,
                s.secret_access_key.expose(),
                s.session_token_sha256,
                s.role_arn,
                s.role_session_name,
                tags,
                keys,
                s.source_arn,
                s.source_access_key_id,
                s.source_identity,
                s.session_policy,
                s.chained,
                s.issued.unix_timestamp(),
                s.expiration.unix_timestamp(),
            ],
        )
        .map_err(self.sqlite())?;
        Ok(())
    }

    fn corrupt(&self, s: &StoredSession, e: impl std::fmt::Display) -> SessionStoreError {
        SessionStoreError::Corrupt {
            path: self.path.clone(),
            access_key_id: s.access_key_id.clone(),
            message: e.to_string(),
        }
    }

    /// The session of a temporary access key id, expired or not.
    pub fn get(&self, access_key_id: &str) -> Result<Option<StoredSession>, SessionStoreError> {
        type Row = (
            String,
            String,
            String,
            String,
            String,
            String,
            String,
            String,
            Option<String>,
            Option<String>,
            bool,
            i64,
            i64,
        );
        let row: Option<Row> = self
            .conn()
            .query_row(
                "SELECT secret_access_key, session_token_sha256, role_arn, role_session_name, tags,
                        transitive_tag_keys, source_arn, source_access_key_id, source_identity,
                        session_policy, chained, issued, expiration
                 FROM sessions WHERE access_key_id = ?1",
                params![access_key_id],
                |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                        r.get(6)?,
                        r.get(7)?,
                        r.get(8)?,
                        r.get(9)?,
                        r.get(10)?,
                        r.get(11)?,
                        r.get(12)?,
                    ))
                },
            )
            .optional()
            .map_err(self.sqlite())?;
        let Some((
            secret,
            token,
            role_arn,
            name,
            tags,
            keys,
            src,
            src_key,
            si,
            policy,
            chained,
            issued,
            exp,
        )) = row
        else {
            return Ok(None);
        };
        let corrupt = |message: String| SessionStoreError::Corrupt {
            path: self.path.clone(),
            access_key_id: access_key_id.to_owned(),
            message,
        };
        let time = |t: i64| {
            OffsetDateTime::from_unix_timestamp(t)
                .map_err(|e| corrupt(format!("timestamp {t}: {e}")))
        };
        Ok(Some(StoredSession {
            access_key_id: access_key_id.to_owned(),
            secret_access_key: Secret::new(secret),
            session_token_sha256: token,
            role_arn,
            role_session_name: name,
            tags: serde_json::from_str(&tags).map_err(|e| corrupt(format!("tags: {e}")))?,
            transitive_tag_keys: serde_json::from_str(&keys)
                .map_err(|e| corrupt(format!("transitive_tag_keys: {e}")))?,
            source_arn: src,
            source_access_key_id: src_key,
            source_identity: si,
            session_policy: policy,
            chained,
            issued: time(issued)?,
            expiration: time(exp)?,
        }))
    }

    /// Deletes the sessions that expired before `now`; returns how many.
    pub fn purge_expired(&self, now: OffsetDateTime) -> Result<usize, SessionStoreError> {
        self.conn()
            .execute(
                "DELETE FROM sessions WHERE expiration <= ?1",
                params![now.unix_timestamp()],
            )
            .map_err(self.sqlite())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(key: &str, expiration: OffsetDateTime) -> StoredSession {
        StoredSession {
            access_key_id: key.to_owned(),
            secret_access_key: Secret::new("s3cr3t"),
            session_token_sha256: sha256_hex(b"token"),
            role_arn: "arn:aws:iam::111122223333:role/r".into(),
            role_session_name: "sess".into(),
            tags: vec![SessionTag::new("tenant-id", "a")],
            transitive_tag_keys: vec!["tenant-id".into()],
            source_arn: "arn:aws:iam::111122223333:user/u".into(),
            source_access_key_id: "AKIAUUUUUUUUUUUUUUUU".into(),
            source_identity: None,
            session_policy: Some(r#"{"Statement":[]}"#.into()),
            chained: false,
            issued: OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap(),
            expiration,
        }
    }

    #[test]
    fn sessions_survive_reopening_the_database() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("trainyard.db");
        let now = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        let s = sample("ASIAAAAAAAAAAAAAAAAA", now + time::Duration::hours(1));
        SessionStore::open(&path).unwrap().insert(&s, now).unwrap();
        let reopened = SessionStore::open(&path).unwrap();
        let got = reopened.get("ASIAAAAAAAAAAAAAAAAA").unwrap().unwrap();
        assert_eq!(got, s);
        assert!(got.token_matches("token"));
        assert!(!got.token_matches("tokem"));
        assert!(!got.is_expired(now));
        assert!(got.is_expired(now + time::Duration::hours(1)));
        assert!(reopened.get("ASIABBBBBBBBBBBBBBBB").unwrap().is_none());
    }

    #[test]
    fn the_job_table_and_the_session_table_share_one_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("trainyard.db");
        let jobs = crate::db::SqliteStore::open(&path).unwrap();
        let sessions = SessionStore::open(&path).unwrap();
        let now = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        sessions
            .insert(
                &sample("ASIAAAAAAAAAAAAAAAAA", now + time::Duration::hours(1)),
                now,
            )
            .unwrap();
        drop(jobs);
        assert!(sessions.get("ASIAAAAAAAAAAAAAAAAA").unwrap().is_some());
    }

    #[test]
    fn expired_sessions_are_purged() {
        let store = SessionStore::in_memory().unwrap();
        let now = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        store
            .insert(
                &sample("ASIAOLD0000000000000", now + time::Duration::minutes(15)),
                now,
            )
            .unwrap();
        let later = now + time::Duration::hours(1);
        store
            .insert(
                &sample("ASIANEW0000000000000", later + time::Duration::hours(1)),
                later,
            )
            .unwrap();
        assert!(store.get("ASIAOLD0000000000000").unwrap().is_none());
        assert!(store.get("ASIANEW0000000000000").unwrap().is_some());
        assert_eq!(
            store
                .purge_expired(later + time::Duration::hours(2))
                .unwrap(),
            1
        );
    }
}
