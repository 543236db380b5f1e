//! Stage 1, plan: everything a host needs to know about its job, decided once.
//!
//! Why: the stored request is the user's text; the stages after this one need typed values
//! (parsed locations, each channel's mode and source, the command, the limits), and used to
//! re-derive them from strings at every use. A [`JobPlan`] is built once from the request
//! with the installation's tables (images, file systems, instance types); a plan that cannot
//! be built fails the job with a `ClientError` before any host starts. A cluster node builds
//! the same plan from the same request, so both executors run the same thing.

use std::path::{Path, PathBuf};
use std::time::Duration;

use trainyard_s3::Location;

use crate::config::Settings;
use crate::jobs::failure::FailureReason;
use crate::jobs::spec::{
    ChannelCompression, CreateTrainingJobRequest, Distribution, FileSystemAccessMode, InputMode,
    MetricDefinition, RecordWrapper, S3DataType,
};

/// A job, ready to run.
#[derive(Debug, Clone)]
pub struct JobPlan {
    /// `TrainingJobName`.
    pub name: String,
    /// The job's ARN.
    pub arn: String,
    /// The stored request (the config files and `SM_*` variables are derived from it).
    pub request: CreateTrainingJobRequest,
    /// `InstanceCount`.
    pub host_count: usize,
    /// `InstanceType` (`local` when absent).
    pub instance_type: String,
    /// Each host's memory limit in bytes, from the instance type; `None`: unlimited.
    pub memory_limit: Option<u64>,
    /// The instance type's memory, for messages.
    pub instance_memory_mib: u64,
    /// `MaxRuntimeInSeconds`.
    pub max_runtime: Duration,
    /// What runs on each host.
    pub command: Command,
    /// Input channels, in request order.
    pub channels: Vec<ChannelPlan>,
    /// `CheckpointConfig`.
    pub checkpoint: Option<CheckpointPlan>,
    /// `OutputDataConfig.S3OutputPath`.
    pub output: Target,
    /// `MetricDefinitions`.
    pub metric_definitions: Vec<MetricDefinition>,
}

/// The process of each host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// What it runs on.
    pub runtime: Runtime,
    /// `ContainerEntrypoint`, replacing the image's ENTRYPOINT.
    pub entrypoint: Option<Vec<String>>,
    /// `ContainerArguments`.
    pub arguments: Option<Vec<String>>,
}

/// Where a job's process comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Runtime {
    /// The `host` runtime (an image-table entry).
    Host {
        /// The entry's ENTRYPOINT.
        entrypoint: Vec<String>,
        /// The entry's working directory (else where the job was submitted from).
        workdir: Option<PathBuf>,
    },
    /// An OCI image, pulled before the host trains.
    Image {
        /// The reference as the request gives it.
        reference: String,
    },
}

impl Command {
    /// argv as `docker run <image> train` builds it (`doc/contract/container.md`):
    /// `ContainerEntrypoint` else the image's ENTRYPOINT, followed by `ContainerArguments`, or
    /// by `train` when neither is given (the image's CMD is replaced, as by docker's command
    /// argument).
    pub fn argv(&self, image_entrypoint: &[String]) -> Vec<String> {
        let mut argv = self
            .entrypoint
            .clone()
            .unwrap_or_else(|| image_entrypoint.to_vec());
        match &self.arguments {
            Some(args) => argv.extend(args.iter().cloned()),
            None if self.entrypoint.is_none() => argv.push("train".into()),
            None => {}
        }
        argv
    }
}

/// An object-store location, parsed, with the text the user wrote (for messages).
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// As written.
    pub uri: String,
    /// Parsed.
    pub location: Location,
}

/// One input channel.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelPlan {
    /// `ChannelName`.
    pub name: String,
    /// The channel's input mode (its own, else the job's).
    pub mode: InputMode,
    /// Where the data comes from.
    pub source: ChannelSource,
    /// `CompressionType: Gzip` (Pipe gunzips).
    pub gzip: bool,
    /// `RecordWrapperType: RecordIO` (Pipe frames records).
    pub recordio: bool,
    /// `ShuffleConfig.Seed`.
    pub shuffle_seed: Option<i64>,
}

/// What a channel reads.
#[derive(Debug, Clone, PartialEq)]
pub enum ChannelSource {
    /// `S3DataSource`.
    S3 {
        /// `S3Uri`.
        target: Target,
        /// `S3DataType`.
        data_type: S3DataType,
        /// `ShardedByS3Key`: each host gets every N-th object.
        sharded: bool,
        /// `AttributeNames` of an augmented manifest.
        attribute_names: Vec<String>,
    },
    /// `FileSystemDataSource`: a directory of this machine, bound as is.
    FileSystem {
        /// The directory.
        path: PathBuf,
        /// `ro`.
        read_only: bool,
    },
}

/// `CheckpointConfig`.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckpointPlan {
    /// `S3Uri`.
    pub target: Target,
    /// `LocalPath` (default `/opt/ml/checkpoints`).
    pub local_path: PathBuf,
    /// `LocalPath` relative to `/opt/ml`: where it is in a host's tree.
    pub relative_path: PathBuf,
}

fn target(field: &str, uri: &str) -> Result<Target, FailureReason> {
    let location = Location::parse(uri, Path::new("/"))
        .map_err(|e| FailureReason::client(format!("{field}: {e}")))?;
    Ok(Target {
        uri: uri.to_string(),
        location,
    })
}

impl JobPlan {
    /// Plans the job `request` (validated and stored) with the installation's tables.
    pub fn build(
        settings: &Settings,
        arn: &str,
        request: &CreateTrainingJobRequest,
    ) -> Result<JobPlan, FailureReason> {
        let algo = request
            .algorithm_specification
            .as_ref()
            .ok_or_else(|| FailureReason::client("AlgorithmSpecification is missing"))?;
        let command = command(settings, algo)?;
        let instance_type = request
            .resource_config
            .as_ref()
            .and_then(|r| r.instance_type.clone())
            .unwrap_or_else(|| "local".into());
        let row = settings
            .instance_types
            .resolve(&instance_type)
            .map_err(FailureReason::client)?;
        let memory_limit = crate::instance_types::host_memory_limit(
            row.as_ref(),
            crate::instance_types::machine_memory_mib(),
        );
        let mut channels = Vec::new();
        for ch in request.input_data_config.iter().flatten() {
            let source = match (
                &ch.data_source.s3_data_source,
                &ch.data_source.file_system_data_source,
            ) {
                (Some(s3), _) => ChannelSource::S3 {
                    target: target(&format!("channel {}", ch.channel_name), &s3.s3_uri)?,
                    data_type: s3.s3_data_type,
                    sharded: s3.s3_data_distribution_type == Some(Distribution::ShardedByS3Key),
                    attribute_names: s3.attribute_names.clone().unwrap_or_default(),
                },
                (None, Some(fs)) => ChannelSource::FileSystem {
                    path: settings.file_systems.resolve(fs).map_err(|(field, why)| {
                        FailureReason::client(format!(
                            "channel {} ({field}): {why}",
                            ch.channel_name
                        ))
                    })?,
                    read_only: fs.file_system_access_mode == FileSystemAccessMode::Ro,
                },
                (None, None) => {
                    return Err(FailureReason::client(format!(
                        "channel {} has no data source trainyard can read",
                        ch.channel_name
                    )));
                }
            };
            channels.push(ChannelPlan {
                name: ch.channel_name.clone(),
                mode: request.channel_mode(ch),
                source,
                gzip: ch.compression_type == Some(ChannelCompression::Gzip),
                recordio: ch.record_wrapper_type == Some(RecordWrapper::RecordIo),
                shuffle_seed: ch.shuffle_config.as_ref().map(|c| c.seed),
            });
        }
        let checkpoint = match &request.checkpoint_config {
            Some(c) => {
                let local_path =
                    PathBuf::from(c.local_path.as_deref().unwrap_or("/opt/ml/checkpoints"));
                Some(CheckpointPlan {
                    target: target("CheckpointConfig.S3Uri", &c.s3_uri)?,
                    relative_path: under_opt_ml(&local_path)?,
                    local_path,
                })
            }
            None => None,
        };
        Ok(JobPlan {
            name: request.training_job_name.clone(),
            arn: arn.to_string(),
            host_count: request.instance_count(),
            instance_memory_mib: row.as_ref().map_or(0, |t| t.memory_mib),
            instance_type,
            memory_limit,
            max_runtime: Duration::from_secs(request.max_runtime_seconds()),
            command,
            channels,
            checkpoint,
            output: target(
                "OutputDataConfig.S3OutputPath",
                &request.output_data_config.s3_output_path,
            )?,
            metric_definitions: algo.metric_definitions.clone().unwrap_or_default(),
            request: request.clone(),
        })
    }

    /// The channels downloaded before the process starts (File mode, from S3).
    pub fn file_channels(&self) -> impl Iterator<Item = &ChannelPlan> {
        self.channels
            .iter()
            .filter(|c| c.mode == InputMode::File && matches!(c.source, ChannelSource::S3 { .. }))
    }
}

/// Where `LocalPath` is in a host's tree. Validation keeps it strictly under `/opt/ml`; a job
/// stored before that rule is refused here rather than given a directory of the host.
fn under_opt_ml(local_path: &Path) -> Result<PathBuf, FailureReason> {
    let refuse = || {
        FailureReason::client(format!(
            "CheckpointConfig.LocalPath {} must be a directory under /opt/ml",
            local_path.display()
        ))
    };
    let rel = local_path.strip_prefix("/opt/ml").map_err(|_| refuse())?;
    let plain = rel
        .components()
        .all(|c| matches!(c, std::path::Component::Normal(_)));
    if rel.as_os_str().is_empty() || !plain {
        return Err(refuse());
    }
    Ok(rel.to_path_buf())
}

/// `ContainerEntrypoint` + `ContainerArguments`, else the image's entry point and `train`, as
/// `docker run <image> train`.
fn command(
    settings: &Settings,
    algo: &crate::jobs::spec::AlgorithmSpecification,
) -> Result<Command, FailureReason> {
    let image_name = algo
        .training_image
        .as_deref()
        .ok_or_else(|| FailureReason::client("TrainingImage is missing"))?;
    let runtime = match settings
        .images
        .resolve(image_name)
        .map_err(FailureReason::client)?
    {
        crate::images::Resolved::Host(image) => Runtime::Host {
            entrypoint: image.entrypoint.clone(),
            workdir: image.workdir.clone(),
        },
        crate::images::Resolved::Oci { reference, .. } => Runtime::Image {
            reference: reference.to_string(),
        },
    };
    Ok(Command {
        runtime,
        entrypoint: algo.container_entrypoint.clone(),
        arguments: algo.container_arguments.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> (tempfile::TempDir, Settings) {
        let d = tempfile::tempdir().unwrap();
        let s = Settings::for_home(d.path()).unwrap();
        (d, s)
    }

    fn plan(settings: &Settings, json: &str) -> Result<JobPlan, FailureReason> {
        let mut r = CreateTrainingJobRequest::from_json(json).unwrap();
        r.apply_defaults();
        JobPlan::build(settings, "arn:j", &r)
    }

    const BASE: &str = r#""TrainingJobName":"j","RoleArn":"arn:aws:iam::000000000000:role/r","OutputDataConfig":{"S3OutputPath":"s3://bucket/out"},
        "ResourceConfig":{"InstanceType":"ml.m5.large","InstanceCount":2,"VolumeSizeInGB":1}"#;

    #[test]
    fn channels_are_typed_once() {
        let (_d, s) = settings();
        let p = plan(
            &s,
            &format!(
                r#"{{{BASE},"AlgorithmSpecification":{{"TrainingInputMode":"File","TrainingImage":"host","ContainerEntrypoint":["python3","t.py"]}},
                "InputDataConfig":[
                  {{"ChannelName":"train","DataSource":{{"S3DataSource":{{"S3DataType":"S3Prefix","S3Uri":"s3://bucket/train/","S3DataDistributionType":"ShardedByS3Key"}}}},"ShuffleConfig":{{"Seed":7}}}},
                  {{"ChannelName":"stream","InputMode":"Pipe","CompressionType":"Gzip","RecordWrapperType":"RecordIO","DataSource":{{"S3DataSource":{{"S3DataType":"S3Prefix","S3Uri":"s3://bucket/s/"}}}}}}]}}"#
            ),
        )
        .unwrap();
        assert_eq!(p.host_count, 2);
        assert_eq!(
            p.command.argv(&[]),
            ["python3", "t.py"],
            "no `train` after an entry point"
        );
        let [train, stream] = &p.channels[..] else {
            panic!("{:?}", p.channels)
        };
        assert_eq!((train.mode, train.shuffle_seed), (InputMode::File, Some(7)));
        assert!(
            matches!(&train.source, ChannelSource::S3 { sharded: true, target, .. } if target.uri == "s3://bucket/train/")
        );
        assert_eq!(
            (stream.mode, stream.gzip, stream.recordio),
            (InputMode::Pipe, true, true)
        );
        assert_eq!(p.file_channels().count(), 1);
        assert!(p.memory_limit.is_some(), "ml.m5.large has a memory size");
    }

    #[test]
    fn a_checkpoint_path_stays_in_the_host_tree() {
        assert_eq!(
            under_opt_ml(Path::new("/opt/ml/checkpoints")).unwrap(),
            PathBuf::from("checkpoints")
        );
        for bad in ["/tmp/ckpt", "/opt/ml", "/opt/ml/../../etc", "/opt/mlx/a"] {
            let e = under_opt_ml(Path::new(bad)).unwrap_err();
            assert!(e.message.contains("under /opt/ml"), "{bad}: {e}");
        }
    }

    #[test]
    fn what_cannot_be_planned_is_a_client_error_naming_the_member() {
        let (_d, s) = settings();
        let e = plan(
            &s,
            &format!(
                r#"{{{BASE},"AlgorithmSpecification":{{"TrainingInputMode":"File","TrainingImage":"host"}},
                "InputDataConfig":[{{"ChannelName":"fs","DataSource":{{"FileSystemDataSource":{{"FileSystemId":"fs-0123abcd","FileSystemAccessMode":"ro","FileSystemType":"EFS","DirectoryPath":"/x"}}}}}}]}}"#
            ),
        )
        .unwrap_err();
        assert_eq!(e.kind, crate::jobs::failure::FailureKind::Client);
        assert!(e.message.contains("channel fs (fileSystemId)"), "{e}");
        let p = plan(
            &s,
            &format!(
                r#"{{{BASE},"AlgorithmSpecification":{{"TrainingInputMode":"File","TrainingImage":"host"}}}}"#
            ),
        )
        .unwrap();
        assert_eq!(p.command.argv(&[]), ["train"]);
    }

    #[test]
    fn argv_follows_docker_run_image_train() {
        let cmd = |entrypoint: Option<&[&str]>, arguments: Option<&[&str]>| Command {
            runtime: Runtime::Image {
                reference: "x".into(),
            },
            entrypoint: entrypoint.map(|e| e.iter().map(|s| s.to_string()).collect()),
            arguments: arguments.map(|e| e.iter().map(|s| s.to_string()).collect()),
        };
        let image = ["/usr/bin/python3".to_string(), "/srv/run.py".to_string()];
        assert_eq!(
            cmd(None, None).argv(&image),
            ["/usr/bin/python3", "/srv/run.py", "train"]
        );
        assert_eq!(cmd(None, None).argv(&[]), ["train"]);
        assert_eq!(cmd(None, Some(&["--x"])).argv(&image)[2..], ["--x"]);
        assert_eq!(cmd(Some(&["sh"]), None).argv(&image), ["sh"]);
        assert_eq!(
            cmd(Some(&["sh"]), Some(&["-c", "true"])).argv(&image),
            ["sh", "-c", "true"]
        );
        let (_d, s) = settings();
        let p = plan(
            &s,
            &format!(
                r#"{{{BASE},"AlgorithmSpecification":{{"TrainingInputMode":"File","TrainingImage":"127.0.0.1:5000/acme/train@sha256:{}"}}}}"#,
                "a".repeat(64)
            ),
        )
        .unwrap();
        assert!(matches!(p.command.runtime, Runtime::Image { .. }));
    }
}
