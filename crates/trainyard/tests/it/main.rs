//! Integration tests: real jobs through the real `trainyard` binary, real processes, the real
//! embedded store and SQLite, each test with its own `$TRAINYARD_HOME`.

/// Shared helpers: a per-test home, running the binary, building requests.
mod common;

/// Channel data: File mode from the embedded store, hostile keys, sharding across hosts.
mod channels;
/// Checkpoints restored before start, synced while running, resumed by the next job.
mod checkpoints;
/// Requests refused at submission, one per rule family, and the `s3` helper.
mod cli;
/// What the training process sees: /opt/ml, config files, env, host name resolution.
mod container;
/// A disk that fills during a job (a small tmpfs as `$TRAINYARD_HOME`): the job fails saying
/// so, and a new job is refused naming the cause.
mod disk_full;
/// The bundled example, end to end, with its artifacts unpacked.
mod example;
/// File-system data sources bound read-only or read-write.
mod filesystems;
/// OCI images from a real registry: the container contract, one pull for many jobs, failed
/// pulls, a locally built image.
mod images;
/// Status lifecycle: failures, failure reasons, MaxRuntime, stop on signal, duplicate names.
mod lifecycle;
/// Several hosts: each in its own network namespace, resolving each other by name.
mod multihost;
/// File-mode jobs against a real S3 server (garage), directly and through a fault proxy.
mod s3_server;
/// `--endpoint` against `trainyard serve` with an `iam.json`: requests signed from the AWS
/// credential environment, and a clear refusal without it.
mod signed_cli;
/// Pipe and FastFile channels and manifests through real jobs.
mod streaming;
/// Warm pools: kept after a job, taken over by a matching one, released by expiry or update.
mod warm_pools;
