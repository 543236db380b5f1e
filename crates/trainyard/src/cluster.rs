//! Running a job's hosts on a cluster manager instead of this machine's processes.
//!
//! Why: a team that outgrows one machine already has a cluster manager; trainyard places a
//! job's hosts on it rather than scheduling nodes itself. The seam is [`crate::executor`]:
//! above it nothing knows where hosts run. What: `protocol` is what a node and the server
//! say to each other (the node calls the server's API with a per-job token, so no shared file
//! system is needed), `node` is `trainyard host run` (one host of a job, run by the cluster
//! on a node), `slurm` places a job as one Slurm allocation with one task per host.

pub mod node;
pub mod protocol;
pub mod slurm;
