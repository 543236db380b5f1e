//! Test doubles for object storage, shared by every crate's tests (feature `mock`).
//!
//! Each crate used to write its own in-memory client, its own failing wrapper and its own
//! HTTP fault proxy; they drifted apart and each covered a different subset of failures. This
//! module is the one copy: [`MemStore`] keeps objects in memory, [`FaultyClient`] injects
//! failures into any client and counts its calls, and [`FaultProxy`] injects them on the wire
//! in front of a real S3-compatible server. Crates enable it as a dev-dependency:
//! `trainyard-s3 = { path = "...", features = ["mock"] }`.

mod faulty;
mod mem_store;
mod proxy;

pub use faulty::{Fault, FaultyClient, Op};
pub use mem_store::MemStore;
pub use proxy::{Cut, FaultProxy, HttpFault, ProxyError, ProxyPlan, ProxyStats};
