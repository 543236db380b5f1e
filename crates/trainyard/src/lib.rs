//! trainyard: a self-hosted training-job service with the contract of Amazon SageMaker
//! training. This crate holds the control plane (job spec, validation, state), the runner
//! (host trees, processes, artifacts) and the CLI; object storage and input modes live in
//! `trainyard-s3` and `trainyard-data`.

pub mod api;
pub mod authz;
/// The authorizing object client under its earlier path (`crate::authz::client`).
pub use authz::client as authz_client;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod db;
pub mod executor;
pub mod filesystems;
pub mod identity;
pub mod images;
pub mod instance_types;
pub mod jobs;
pub mod lifecycle;
pub mod remote;
pub mod runner;
pub mod scheduler;
pub mod storage;
pub mod warm_pools;
