//! The instance-type table: what `ResourceConfig.InstanceType` gives a host here.
//!
//! Why: a job written for `ml.m5.large` expects 8 GiB and should fail the way it would on
//! SageMaker when it needs more, not take the whole machine; and an executor that places
//! hosts on a cluster needs CPUs, GPUs and memory per type. The built-in rows are the public
//! SageMaker figures for common training types; `$TRAINYARD_HOME/instance-types.json`
//! (`{"instance_types": {"ml.x.y": {"vcpus": 4, "memory_mib": 16384, "gpus": 0}}}`) adds
//! rows or replaces them. `local` and `local_gpu` (SageMaker local mode's names) mean the
//! whole machine: no limits.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::config::{TableError, read_table};
use serde::Deserialize;

/// What one instance of a type has.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceType {
    /// Virtual CPUs.
    pub vcpus: u32,
    /// Memory in MiB.
    pub memory_mib: u64,
    /// GPUs.
    #[serde(default)]
    pub gpus: u32,
    /// Slurm partition for hosts of this type (the Slurm executor; default: the configured one).
    #[serde(default)]
    pub slurm_partition: Option<String>,
    /// Slurm `--constraint` for hosts of this type (node features, e.g. `a100`).
    #[serde(default)]
    pub slurm_constraint: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TableFile {
    instance_types: BTreeMap<String, InstanceType>,
}

/// Type name → resources.
#[derive(Debug, Clone)]
pub struct InstanceTypes {
    types: BTreeMap<String, InstanceType>,
    source: PathBuf,
}

/// (name, vCPUs, GiB, GPUs) of the built-in rows.
const BUILT_IN: &[(&str, u32, u64, u32)] = &[
    ("ml.t3.medium", 2, 4, 0),
    ("ml.t3.large", 2, 8, 0),
    ("ml.t3.xlarge", 4, 16, 0),
    ("ml.t3.2xlarge", 8, 32, 0),
    ("ml.m5.large", 2, 8, 0),
    ("ml.m5.xlarge", 4, 16, 0),
    ("ml.m5.2xlarge", 8, 32, 0),
    ("ml.m5.4xlarge", 16, 64, 0),
    ("ml.m5.12xlarge", 48, 192, 0),
    ("ml.m5.24xlarge", 96, 384, 0),
    ("ml.m6i.large", 2, 8, 0),
    ("ml.m6i.xlarge", 4, 16, 0),
    ("ml.m6i.2xlarge", 8, 32, 0),
    ("ml.m6i.4xlarge", 16, 64, 0),
    ("ml.c5.large", 2, 4, 0),
    ("ml.c5.xlarge", 4, 8, 0),
    ("ml.c5.2xlarge", 8, 16, 0),
    ("ml.c5.4xlarge", 16, 32, 0),
    ("ml.c5.9xlarge", 36, 72, 0),
    ("ml.c5.18xlarge", 72, 144, 0),
    ("ml.r5.large", 2, 16, 0),
    ("ml.r5.xlarge", 4, 32, 0),
    ("ml.r5.2xlarge", 8, 64, 0),
    ("ml.r5.4xlarge", 16, 128, 0),
    ("ml.g4dn.xlarge", 4, 16, 1),
    ("ml.g4dn.2xlarge", 8, 32, 1),
    ("ml.g4dn.4xlarge", 16, 64, 1),
    ("ml.g4dn.12xlarge", 48, 192, 4),
    ("ml.g5.xlarge", 4, 16, 1),
    ("ml.g5.2xlarge", 8, 32, 1),
    ("ml.g5.4xlarge", 16, 64, 1),
    ("ml.g5.12xlarge", 48, 192, 4),
    ("ml.g5.48xlarge", 192, 768, 8),
    ("ml.p3.2xlarge", 8, 61, 1),
    ("ml.p3.8xlarge", 32, 244, 4),
    ("ml.p3.16xlarge", 64, 488, 8),
    ("ml.p4d.24xlarge", 96, 1152, 8),
    ("ml.p5.48xlarge", 192, 2048, 8),
];

impl InstanceTypes {
    /// The built-in table merged with `path` if it exists.
    pub fn load(path: &Path) -> Result<Self, TableError> {
        let mut types: BTreeMap<String, InstanceType> = BUILT_IN
            .iter()
            .map(|&(name, vcpus, gib, gpus)| {
                (
                    name.to_string(),
                    InstanceType {
                        vcpus,
                        memory_mib: gib * 1024,
                        gpus,
                        slurm_partition: None,
                        slurm_constraint: None,
                    },
                )
            })
            .collect();
        if let Some(file) = read_table::<TableFile>(path)? {
            for (name, t) in &file.instance_types {
                if t.vcpus == 0 || t.memory_mib == 0 {
                    return Err(TableError::Invalid {
                        path: path.to_path_buf(),
                        message: format!(
                            "instance type {name:?} needs vcpus and memory_mib above 0"
                        ),
                    });
                }
            }
            types.extend(file.instance_types);
        }
        Ok(InstanceTypes {
            types,
            source: path.to_path_buf(),
        })
    }

    /// The resources of `name`: `Ok(None)` for `local`/`local_gpu` (the whole machine), an
    /// error naming the table for a type it does not have.
    pub fn resolve(&self, name: &str) -> Result<Option<InstanceType>, String> {
        if matches!(name, "local" | "local_gpu") {
            return Ok(None);
        }
        self.types.get(name).cloned().map(Some).ok_or_else(|| {
            format!(
                "InstanceType {name:?} is not in the instance-type table; add it to {} as {{\"instance_types\": {{\"{name}\": {{\"vcpus\": N, \"memory_mib\": N, \"gpus\": N}}}}}}",
                self.source.display()
            )
        })
    }
}

/// What trainyard keeps for itself out of an instance's memory: 5%, at least 256 MiB.
pub fn reserve_mib(memory_mib: u64) -> u64 {
    (memory_mib / 20).max(256)
}

/// The memory limit of one host, in bytes: the type's memory (at most the machine's) less the
/// reserve. `None` when the type has no limit.
pub fn host_memory_limit(t: Option<&InstanceType>, machine_mib: Option<u64>) -> Option<u64> {
    let t = t?;
    let mib = machine_mib.map_or(t.memory_mib, |m| m.min(t.memory_mib));
    Some(mib.saturating_sub(reserve_mib(mib)).max(64) * 1024 * 1024)
}

/// This machine's memory in MiB (`MemTotal` of `/proc/meminfo`).
pub fn machine_memory_mib() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_rows_overrides_and_local() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("instance-types.json");
        let t = InstanceTypes::load(&p).unwrap();
        let m5 = t.resolve("ml.m5.large").unwrap().unwrap();
        assert_eq!((m5.vcpus, m5.memory_mib, m5.gpus), (2, 8192, 0));
        assert_eq!(t.resolve("local").unwrap(), None);
        let err = t.resolve("ml.zz.huge").unwrap_err();
        assert!(
            err.contains("ml.zz.huge") && err.contains("instance-types.json"),
            "{err}"
        );

        std::fs::write(
            &p,
            r#"{"instance_types": {"ml.tiny.test": {"vcpus": 1, "memory_mib": 300, "slurm_partition": "cpu", "slurm_constraint": "avx512"}, "ml.m5.large": {"vcpus": 2, "memory_mib": 4096, "gpus": 0}}}"#,
        )
        .unwrap();
        let t = InstanceTypes::load(&p).unwrap();
        let tiny = t.resolve("ml.tiny.test").unwrap().unwrap();
        assert_eq!(tiny.memory_mib, 300);
        assert_eq!(tiny.slurm_partition.as_deref(), Some("cpu"));
        assert_eq!(tiny.slurm_constraint.as_deref(), Some("avx512"));
        assert_eq!(t.resolve("ml.m5.large").unwrap().unwrap().memory_mib, 4096);
        std::fs::write(
            &p,
            r#"{"instance_types": {"ml.bad.x": {"vcpus": 0, "memory_mib": 1}}}"#,
        )
        .unwrap();
        assert!(InstanceTypes::load(&p).is_err());
        std::fs::write(&p, r#"{"instance_types": {"ml.bad.x": {"cpus": 1}}}"#).unwrap();
        assert!(
            InstanceTypes::load(&p).is_err(),
            "unknown fields are refused"
        );
    }

    #[test]
    fn limits_keep_a_reserve_and_fit_the_machine() {
        let t = |mib| {
            Some(InstanceType {
                vcpus: 2,
                memory_mib: mib,
                gpus: 0,
                slurm_partition: None,
                slurm_constraint: None,
            })
        };
        assert_eq!(
            host_memory_limit(t(8192).as_ref(), None),
            Some((8192 - 409) << 20)
        );
        assert_eq!(
            host_memory_limit(t(1024).as_ref(), None),
            Some((1024 - 256) << 20)
        );
        assert_eq!(
            host_memory_limit(t(1_179_648).as_ref(), Some(16384)),
            Some((16384 - 819) << 20),
            "capped at the machine"
        );
        assert_eq!(host_memory_limit(None, Some(16384)), None);
    }
}
