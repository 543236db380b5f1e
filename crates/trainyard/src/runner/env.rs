//! The environment of the training process.
//!
//! Layers, later ones winning: the host's environment (the `host` runtime runs host programs,
//! which need `PATH`, `HOME`, a virtualenv...) minus credentials and trainyard's own settings;
//! the `SM_*` variables exactly as the sagemaker-training toolkit would derive them from the
//! config files (so scripts written against the toolkit run without it); the platform's
//! variables; the request's `Environment`. `TRAINING_JOB_NAME` and `TRAINING_JOB_ARN` are the
//! platform's and cannot be overridden (`doc/contract/container.md` §4.1).
//!
//! When the process cannot be given a private `/opt/ml` (no mount namespace), every path in
//! the derived variables is rewritten to the host tree, so the process still finds its files.

use std::collections::{BTreeMap, BTreeSet};

use crate::jobs::spec::CreateTrainingJobRequest;
use crate::runner::layout::HostLayout;
use crate::runner::process::OPT_ML;
use crate::runner::toolkit_env::{ToolkitInputs, toolkit_env};

/// Host variables never passed to a job: credentials (a job gets its own) and trainyard's
/// configuration.
fn withheld(key: &str) -> bool {
    matches!(
        key,
        "AWS_ACCESS_KEY_ID" | "AWS_SECRET_ACCESS_KEY" | "AWS_SESSION_TOKEN" | "AWS_SECURITY_TOKEN"
    ) || key.starts_with("TRAINYARD_")
        || key.starts_with("SM_")
}

/// Everything needed to build one host's environment.
#[derive(Debug)]
pub struct EnvInputs<'a> {
    /// The job request.
    pub request: &'a CreateTrainingJobRequest,
    /// Job ARN.
    pub arn: &'a str,
    /// The host.
    pub host: &'a HostLayout,
    /// Region given to the job.
    pub region: &'a str,
    /// Where the process sees the tree: `/opt/ml`, or the host path when not isolated.
    pub ml_root: &'a str,
    /// The base environment: trainyard's own (the `host` runtime) or the image's ENV.
    pub host_env: Vec<(String, String)>,
    /// Whether the base is trainyard's own environment, whose credentials and `TRAINYARD_*`
    /// variables are withheld (an image's ENV is the image author's and kept as it is).
    pub filter_base: bool,
    /// The S3 endpoint, when object storage is an S3-compatible service other than AWS.
    pub s3_endpoint: Option<&'a str>,
    /// Whether the host has a warm pool's persistent cache directory.
    pub warm_pool_cache: bool,
    /// Credentials the job's own code uses for the object store, if it gets any.
    pub credentials: Option<&'a trainyard_s3::S3Credentials>,
}

/// Builds the complete environment.
pub fn build(inp: &EnvInputs<'_>) -> Vec<(String, String)> {
    let mut env: BTreeMap<String, String> = inp
        .host_env
        .iter()
        .filter(|(k, _)| !inp.filter_base || !withheld(k))
        .cloned()
        .collect();
    let user = inp.request.environment.clone().unwrap_or_default();
    let hyperparameters = inp.request.hyper_parameters.clone().unwrap_or_default();
    let toolkit = toolkit_env(&ToolkitInputs {
        job_name: &inp.request.training_job_name,
        hyperparameters: &hyperparameters,
        input_data_config: &inp.host.input_data_config,
        resource_config: &inp.host.resource_config,
        num_cpus: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        num_gpus: count_gpus(),
        env: &user,
    });
    for (k, v) in toolkit {
        let v = if inp.ml_root == OPT_ML {
            v
        } else {
            v.replace(OPT_ML, inp.ml_root)
        };
        env.insert(k, v);
    }
    if inp.warm_pool_cache {
        let dir = crate::warm_pools::CACHE_MOUNT;
        let dir = if inp.ml_root == OPT_ML {
            dir.to_string()
        } else {
            dir.replace(OPT_ML, inp.ml_root)
        };
        env.insert(crate::warm_pools::CACHE_ENV.into(), dir);
    }
    env.insert("AWS_REGION".into(), inp.region.into());
    env.insert("AWS_DEFAULT_REGION".into(), inp.region.into());
    if let Some(endpoint) = inp.s3_endpoint {
        // Local mode sets the first, the toolkit reads the second (container.md §4.1).
        env.insert("AWS_ENDPOINT_URL_S3".into(), endpoint.into());
        env.insert("S3_ENDPOINT_URL".into(), endpoint.into());
    }
    if let Some(c) = inp.credentials {
        env.insert("AWS_ACCESS_KEY_ID".into(), c.access_key_id.clone());
        env.insert("AWS_SECRET_ACCESS_KEY".into(), c.secret_access_key.clone());
        if let Some(token) = &c.session_token {
            env.insert("AWS_SESSION_TOKEN".into(), token.clone());
        }
    }
    env.extend(user);
    env.insert(
        "TRAINING_JOB_NAME".into(),
        inp.request.training_job_name.clone(),
    );
    env.insert("TRAINING_JOB_ARN".into(), inp.arn.into());
    env.into_iter().collect()
}

/// GPUs visible to the host, counted from the NVIDIA device nodes (`/dev/nvidia0`, ...).
pub fn count_gpus() -> usize {
    let Ok(rd) = std::fs::read_dir("/dev") else {
        return 0;
    };
    let names: BTreeSet<String> = rd
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names
        .iter()
        .filter(|n| {
            n.strip_prefix("nvidia")
                .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
        })
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::layout::prepare_host;

    #[test]
    fn platform_variables_win_and_secrets_are_withheld() {
        let mut req = CreateTrainingJobRequest::from_json(
            r#"{"TrainingJobName":"job-1","RoleArn":"arn:aws:iam::000000000000:role/r","OutputDataConfig":{"S3OutputPath":"s3://b/o"},
                "AlgorithmSpecification":{"TrainingInputMode":"File","TrainingImage":"host"},
                "ResourceConfig":{"InstanceType":"ml.m5.large","InstanceCount":1,"VolumeSizeInGB":1},
                "Environment":{"TRAINING_JOB_NAME":"spoof","MY_VAR":"x"},
                "InputDataConfig":[{"ChannelName":"train","DataSource":{"S3DataSource":{"S3DataType":"S3Prefix","S3Uri":"s3://b/p"}}}]}"#,
        )
        .unwrap();
        req.apply_defaults();
        let d = tempfile::tempdir().unwrap();
        let host = prepare_host(
            &crate::runner::jobdir::JobDir::at(d.path().to_path_buf()),
            &req,
            0,
        )
        .unwrap();
        let root = host.root.to_string_lossy().into_owned();
        let host_env = vec![
            ("PATH".to_string(), "/usr/bin".to_string()),
            ("AWS_SECRET_ACCESS_KEY".to_string(), "secret".to_string()),
            ("TRAINYARD_HOME".to_string(), "/h".to_string()),
        ];
        for (ml_root, want_channel) in [
            ("/opt/ml", "/opt/ml/input/data/train".to_string()),
            (root.as_str(), format!("{root}/input/data/train")),
        ] {
            let env: BTreeMap<String, String> = build(&EnvInputs {
                request: &req,
                arn: "arn:x",
                host: &host,
                region: "us-east-1",
                ml_root,
                host_env: host_env.clone(),
                filter_base: true,
                s3_endpoint: Some("http://127.0.0.1:3900"),
                credentials: None,
                warm_pool_cache: false,
            })
            .into_iter()
            .collect();
            assert_eq!(env["TRAINING_JOB_NAME"], "job-1");
            assert_eq!(env["MY_VAR"], "x");
            assert_eq!(env["PATH"], "/usr/bin");
            assert!(
                !env.contains_key("AWS_SECRET_ACCESS_KEY") && !env.contains_key("TRAINYARD_HOME")
            );
            assert_eq!(env["SM_CHANNEL_TRAIN"], want_channel);
            assert_eq!(env["SM_CURRENT_HOST"], "algo-1");
            assert_eq!(env["S3_ENDPOINT_URL"], "http://127.0.0.1:3900");
        }
        // Credentials reach the job only when given for it, never from the host's environment.
        let given = trainyard_s3::S3Credentials {
            access_key_id: "AKIDJOB".into(),
            secret_access_key: "job-secret".into(),
            session_token: Some("job-token".into()),
        };
        let env: BTreeMap<String, String> = build(&EnvInputs {
            request: &req,
            arn: "arn:x",
            host: &host,
            region: "us-east-1",
            ml_root: "/opt/ml",
            host_env,
            filter_base: true,
            s3_endpoint: Some("http://127.0.0.1:3900"),
            credentials: Some(&given),
            warm_pool_cache: true,
        })
        .into_iter()
        .collect();
        assert_eq!(env["AWS_ACCESS_KEY_ID"], "AKIDJOB");
        assert_eq!(env["AWS_SECRET_ACCESS_KEY"], "job-secret");
        assert_eq!(env["AWS_SESSION_TOKEN"], "job-token");
    }
}
