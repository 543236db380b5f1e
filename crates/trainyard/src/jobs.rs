//! The training-job domain: the request (`spec`), its validation (`validate`), the status model
//! (`state`), the DescribeTrainingJob view (`describe`), and [`submit`], which turns a request
//! into a stored job or a SageMaker-shaped error.

pub mod describe;
pub mod failure;
pub mod spec;
pub mod state;
pub mod validate;

use std::path::Path;

use trainyard_s3::Location;

use crate::config::Settings;
use crate::db::{DbError, JobRecord, JobStore};
use crate::storage::Storage;
use spec::{CreateTrainingJobRequest, ParseError, S3DataType};
use validate::{ValidationError, ValidationErrors};

/// Why a job was not accepted. Each maps onto one SageMaker error type.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// The body is not a valid request (`ValidationException`).
    #[error("ValidationException: {0}")]
    Parse(#[from] ParseError),
    /// The request breaks a rule (`ValidationException`).
    #[error("ValidationException: {0}")]
    Invalid(#[from] ValidationErrors),
    /// The name is taken (`ResourceInUse`).
    #[error(
        "ResourceInUse: Training job names must be unique within an AWS account and region, and a training job with this name already exists ({0})"
    )]
    InUse(String),
    /// The job cannot be stored: the disk of trainyard's database is full.
    #[error("ServiceUnavailable: {0}")]
    DiskFull(String),
    /// Something on trainyard's side failed.
    #[error("InternalFailure: {0}")]
    Internal(String),
}

fn one(field: &str, value: Option<&str>, rule: String) -> SubmitError {
    SubmitError::Invalid(ValidationErrors(vec![ValidationError {
        field: field.into(),
        value: value.map(str::to_string),
        rule,
    }]))
}

/// Validates, normalises and stores a request; the job is then in `InProgress/Starting`.
///
/// Relative `file://` URIs are made absolute against `base_dir`, so the stored job means the
/// same thing wherever it later runs. S3Prefix channels must match at least one object, checked
/// now as SageMaker does at creation.
pub async fn submit(
    settings: &Settings,
    store: &dyn JobStore,
    storage: &Storage,
    mut req: CreateTrainingJobRequest,
    base_dir: &Path,
    caller: Option<&str>,
) -> Result<JobRecord, SubmitError> {
    validate::validate(&req, true)?;
    validate::unsupported(&req)?;
    if let Some(image) = req
        .algorithm_specification
        .as_ref()
        .and_then(|a| a.training_image.as_deref())
    {
        let resolved = settings
            .images
            .resolve(image)
            .map_err(|e| one("algorithmSpecification.trainingImage", Some(image), e))?;
        if caller.is_some()
            && matches!(
                resolved,
                crate::images::Resolved::Oci {
                    local_layout: true,
                    ..
                }
            )
        {
            return Err(one(
                "algorithmSpecification.trainingImage",
                Some(image),
                "an oci: layout is a directory of the server's machine and is not accepted under access control; push the image to a registry".to_string(),
            ));
        }
    }
    if let Some(ty) = req
        .resource_config
        .as_ref()
        .and_then(|r| r.instance_type.as_deref())
    {
        let row = settings
            .instance_types
            .resolve(ty)
            .map_err(|e| one("resourceConfig.instanceType", Some(ty), e))?;
        // Jobs of the local executor run here: a type whose GPUs this machine lacks cannot.
        if let Some(row) = row.filter(|_| settings.executor == crate::config::ExecutorKind::Local) {
            let here = crate::runner::env::count_gpus();
            if row.gpus as usize > here {
                return Err(one(
                    "resourceConfig.instanceType",
                    Some(ty),
                    format!(
                        "{ty} has {} GPU(s) and this machine has {here} (/dev/nvidia*); choose a type without GPUs or run on a machine that has them",
                        row.gpus
                    ),
                ));
            }
        }
    }
    absolutize(&mut req.output_data_config.s3_output_path, base_dir);
    // Bucket names and paths must be usable before a job trains, not only when it uploads.
    Location::parse(&req.output_data_config.s3_output_path, base_dir).map_err(|e| {
        one(
            "outputDataConfig.s3OutputPath",
            Some(&req.output_data_config.s3_output_path),
            e.reason,
        )
    })?;
    if let Some(cp) = &req.checkpoint_config {
        Location::parse(&cp.s3_uri, base_dir)
            .map_err(|e| one("checkpointConfig.s3Uri", Some(&cp.s3_uri), e.reason))?;
    }
    for (i, ch) in req.input_data_config.iter().flatten().enumerate() {
        if let Some(fs) = &ch.data_source.file_system_data_source {
            if let Err((field, why)) = settings.file_systems.resolve(fs) {
                return Err(one(
                    &format!(
                        "inputDataConfig.{}.member.dataSource.fileSystemDataSource.{field}",
                        i + 1
                    ),
                    None,
                    why,
                ));
            }
        }
    }
    for (i, ch) in req.input_data_config.iter_mut().flatten().enumerate() {
        let Some(s3) = ch.data_source.s3_data_source.as_mut() else {
            continue;
        };
        absolutize(&mut s3.s3_uri, base_dir);
        let field = format!(
            "inputDataConfig.{}.member.dataSource.s3DataSource.s3Uri",
            i + 1
        );
        let loc = Location::parse(&s3.s3_uri, base_dir)
            .map_err(|e| one(&field, Some(&s3.s3_uri), e.reason))?;
        let res = storage.resolve(&loc);
        let found = match s3.s3_data_type {
            S3DataType::S3Prefix => {
                use futures::StreamExt;
                let mut stream = res.client.list_all(&res.bucket, &res.key);
                let mut found = false;
                while let Some(item) = stream.next().await {
                    match item {
                        Ok(o) if !o.key.ends_with('/') => {
                            found = true;
                            break;
                        }
                        Ok(_) => {}
                        Err(trainyard_s3::ObjectError::NoSuchBucket { .. }) => {
                            break;
                        }
                        Err(e @ trainyard_s3::ObjectError::AccessDenied { .. }) => {
                            return Err(one(
                                &field,
                                Some(&s3.s3_uri),
                                format!("the job's role may not list it: {e}"),
                            ));
                        }
                        Err(e) => {
                            return Err(SubmitError::Internal(format!(
                                "listing {}: {e}",
                                s3.s3_uri
                            )));
                        }
                    }
                }
                found
            }
            _ => res.client.head(&res.bucket, &res.key).await.is_ok(),
        };
        if !found {
            return Err(one(
                &field,
                Some(&s3.s3_uri),
                format!(
                    "No S3 objects found under S3 URL \"{}\" given in input data source. Please ensure that the bucket exists in the selected region ({}), that objects exist under that S3 prefix, and that the role has \"s3:ListBucket\" permissions on the bucket.",
                    s3.s3_uri, settings.region
                ),
            ));
        }
    }
    req.apply_defaults();
    let name = req.training_job_name.clone();
    let arn = settings.job_arn(&name);
    store
        .create(
            &name,
            &arn,
            &req,
            "Launching requested ML instances",
            caller,
        )
        .map_err(|e| match e {
            DbError::AlreadyExists(n) => SubmitError::InUse(n),
            e if e.is_disk_full() => SubmitError::DiskFull(format!(
                "the job cannot be recorded: {e}; free space on that disk and retry"
            )),
            other => SubmitError::Internal(other.to_string()),
        })
}

/// Rewrites a relative `file://` URI to an absolute one.
fn absolutize(uri: &mut String, base: &Path) {
    if let Ok(Location::File(p)) = Location::parse(uri, base) {
        let trailing = uri.ends_with('/') && !p.to_string_lossy().ends_with('/');
        *uri = format!("file://{}{}", p.display(), if trailing { "/" } else { "" });
    }
}
