//! The on-host tree of one host: what the training process sees at `/opt/ml`.
//!
//! Each host `algo-k` of a job gets its own directory, laid out exactly as
//! `doc/contract/container.md` §2 prescribes, with the three config files written before the process
//! starts. The directory is later bind-mounted at `/opt/ml` in the host's private mount
//! namespace, so the same tree serves both the isolated and the fallback case.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};

use super::jobdir::{JobDir, host_name};
use crate::jobs::spec::{
    ChannelCompression, CreateTrainingJobRequest, Distribution, RecordWrapper,
};

/// The directories and files of one prepared host.
#[derive(Debug, Clone)]
pub struct HostLayout {
    /// `algo-k`.
    pub name: String,
    /// 0-based host index (`algo-1` → 0).
    pub index: usize,
    /// The tree bound at `/opt/ml`.
    pub root: PathBuf,
    /// The `/etc/hosts` replacement for this host.
    pub hosts_file: PathBuf,
    /// This host's log file.
    pub log_file: PathBuf,
    /// `inputdataconfig.json` content.
    pub input_data_config: Value,
    /// `resourceconfig.json` content.
    pub resource_config: Value,
}

impl HostLayout {
    /// `/opt/ml/input/data/<channel>` on the host side.
    pub fn channel_dir(&self, channel: &str) -> PathBuf {
        self.root.join("input/data").join(channel)
    }
    /// `/opt/ml/model` on the host side.
    pub fn model_dir(&self) -> PathBuf {
        self.root.join(MODEL_DIR)
    }
    /// `/opt/ml/output/data` on the host side.
    pub fn output_data_dir(&self) -> PathBuf {
        self.root.join(OUTPUT_DATA_DIR)
    }
    /// `/opt/ml/output/failure` on the host side.
    pub fn failure_file(&self) -> PathBuf {
        self.root.join("output/failure")
    }
}

/// Where `/opt/ml/model` is in a host tree.
pub const MODEL_DIR: &str = "model";
/// Where `/opt/ml/output/data` is in a host tree.
pub const OUTPUT_DATA_DIR: &str = "output/data";

/// Host names of a job: `algo-1..algo-N`.
pub fn host_names(count: usize) -> Vec<String> {
    (0..count).map(host_name).collect()
}

/// `inputdataconfig.json` (container.md §3.2): one entry per channel.
pub fn input_data_config(req: &CreateTrainingJobRequest) -> Value {
    let mut out = Map::new();
    for ch in req.input_data_config.iter().flatten() {
        let mut e = Map::new();
        if let Some(ct) = &ch.content_type {
            e.insert("ContentType".into(), json!(ct));
        }
        e.insert(
            "TrainingInputMode".into(),
            json!(req.channel_mode(ch).as_str()),
        );
        let dist = ch
            .data_source
            .s3_data_source
            .as_ref()
            .and_then(|s| s.s3_data_distribution_type)
            .unwrap_or(Distribution::FullyReplicated);
        e.insert("S3DistributionType".into(), json!(dist.as_str()));
        let wrapper = match ch.record_wrapper_type {
            Some(RecordWrapper::RecordIo) => "RecordIO",
            _ => "None",
        };
        e.insert("RecordWrapperType".into(), json!(wrapper));
        if ch.compression_type == Some(ChannelCompression::Gzip) {
            e.insert("CompressionType".into(), json!("Gzip"));
        }
        if let Some(s) = &ch.shuffle_config {
            e.insert("ShuffleConfig".into(), json!({"Seed": s.seed}));
        }
        out.insert(ch.channel_name.clone(), Value::Object(e));
    }
    Value::Object(out)
}

/// `resourceconfig.json` (container.md §3.3) for host `current`.
pub fn resource_config(
    req: &CreateTrainingJobRequest,
    current: &str,
    network_interface: &str,
) -> Value {
    let mut hosts = host_names(req.instance_count());
    hosts.sort();
    let instance_type = req
        .resource_config
        .as_ref()
        .and_then(|r| r.instance_type.clone())
        .unwrap_or_else(|| "local".into());
    json!({
        "current_host": current,
        "hosts": hosts,
        "network_interface_name": network_interface,
        "current_instance_type": instance_type,
        "current_group_name": "homogeneousCluster",
        "instance_groups": [{
            "instance_group_name": "homogeneousCluster",
            "instance_type": instance_type,
            "hosts": hosts,
        }],
    })
}

/// Creates host `index`'s tree in the job directory and writes its config files.
pub fn prepare_host(
    job_dir: &JobDir,
    req: &CreateTrainingJobRequest,
    index: usize,
) -> std::io::Result<HostLayout> {
    let name = host_name(index);
    let root = job_dir.host_root(index);
    for d in ["input/config", "input/data", MODEL_DIR, OUTPUT_DATA_DIR] {
        std::fs::create_dir_all(root.join(d))?;
    }
    let input = input_data_config(req);
    let resource = resource_config(req, &name, "lo");
    let hp = serde_json::to_value(req.hyper_parameters.clone().unwrap_or_default())?;
    let config = root.join("input/config");
    write_json(&config.join("hyperparameters.json"), &hp)?;
    write_json(&config.join("inputdataconfig.json"), &input)?;
    write_json(&config.join("resourceconfig.json"), &resource)?;

    let hosts_file = job_dir.hosts_file(index);
    let mut hosts =
        String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    for h in host_names(req.instance_count()) {
        hosts.push_str(&format!("127.0.0.1\t{h}\n"));
    }
    std::fs::write(&hosts_file, hosts)?;
    std::fs::create_dir_all(job_dir.logs())?;
    Ok(HostLayout {
        log_file: job_dir.host_log(&name),
        name,
        index,
        root,
        hosts_file,
        input_data_config: input,
        resource_config: resource,
    })
}

/// Points a prepared host at the job network: `algo-k` resolves to each host's address and
/// `resourceconfig.json` names `eth0`, the interface of the host's namespace.
pub fn use_network(
    host: &mut HostLayout,
    req: &CreateTrainingJobRequest,
    hosts_entries: &str,
) -> std::io::Result<()> {
    let mut hosts =
        String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    hosts.push_str(hosts_entries);
    std::fs::write(&host.hosts_file, hosts)?;
    host.resource_config = resource_config(req, &host.name, "eth0");
    write_json(
        &host.root.join("input/config/resourceconfig.json"),
        &host.resource_config,
    )
}

fn write_json(path: &Path, v: &Value) -> std::io::Result<()> {
    std::fs::write(path, serde_json::to_vec_pretty(v)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(json: &str) -> CreateTrainingJobRequest {
        let mut r = CreateTrainingJobRequest::from_json(json).unwrap();
        r.apply_defaults();
        r
    }

    #[test]
    fn config_files_match_the_contract() {
        let r = req(
            r#"{"TrainingJobName":"j","RoleArn":"arn:aws:iam::000000000000:role/r","OutputDataConfig":{"S3OutputPath":"s3://b/o"},
               "AlgorithmSpecification":{"TrainingInputMode":"File","TrainingImage":"host"},
               "ResourceConfig":{"InstanceType":"ml.m5.large","InstanceCount":10,"VolumeSizeInGB":1},
               "HyperParameters":{"epochs":"3"},
               "InputDataConfig":[{"ChannelName":"train","ContentType":"text/csv","DataSource":{"S3DataSource":{"S3DataType":"S3Prefix","S3Uri":"s3://b/p","S3DataDistributionType":"ShardedByS3Key"}}}]}"#,
        );
        let d = tempfile::tempdir().unwrap();
        let h = prepare_host(&JobDir::at(d.path().to_path_buf()), &r, 1).unwrap();
        assert_eq!(h.name, "algo-2");
        let read = |f: &str| -> Value {
            serde_json::from_slice(&std::fs::read(h.root.join("input/config").join(f)).unwrap())
                .unwrap()
        };
        assert_eq!(read("hyperparameters.json"), json!({"epochs": "3"}));
        assert_eq!(
            read("inputdataconfig.json"),
            json!({"train": {"ContentType": "text/csv", "TrainingInputMode": "File", "S3DistributionType": "ShardedByS3Key", "RecordWrapperType": "None"}})
        );
        let rc = read("resourceconfig.json");
        assert_eq!(rc["current_host"], "algo-2");
        assert_eq!(rc["hosts"][1], "algo-10", "hosts sort lexicographically");
        assert_eq!(rc["current_group_name"], "homogeneousCluster");
        for d in ["model", "output/data", "input/data"] {
            assert!(h.root.join(d).is_dir(), "{d}");
        }
        assert!(
            std::fs::read_to_string(&h.hosts_file)
                .unwrap()
                .contains("127.0.0.1\talgo-10\n")
        );
    }
}
