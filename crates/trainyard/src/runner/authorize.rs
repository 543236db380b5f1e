//! Stage 2, authorize: who the job's data plane acts as, and the storage it gets.
//!
//! Why a stage of its own: under ABAC every object access of a job is checked against its
//! execution role with the creating session's tags, and that decision must be the same
//! wherever the host runs. The server decides it here, once, from the stored record; the
//! result ([`Grant`]) is a plain value that travels in a cluster node's assignment, so a
//! Slurm node enforces exactly what the server would. A record whose creator session cannot
//! be read ([`CreatorRecord::parse`]) fails the job; it never runs with fewer tags than it
//! was created with.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::authz::{CreatorRecord, control};
use crate::config::Settings;
use crate::db::JobRecord;
use crate::identity::{Identity, JobPrincipal, SessionTag};
use crate::jobs::failure::FailureReason;
use crate::jobs::spec::CreateTrainingJobRequest;
use crate::storage::Storage;

/// What a job's data plane may do, decided by the server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Grant {
    /// `None` on an installation without access control: the job uses trainyard's storage
    /// as is, and its processes get the store's credentials (single tenant).
    pub principal: Option<PrincipalGrant>,
    /// The tags the job's session carries (chained from the creator), for warm-pool matching
    /// and the store's own STS.
    pub session_tags: Vec<(String, String)>,
}

/// The job principal in a form that crosses the executor seam.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PrincipalGrant {
    /// The session ARN (`arn:aws:sts::<acct>:assumed-role/<role>/SageMaker`).
    pub arn: String,
    /// The execution role.
    pub role_arn: String,
    /// The role's permission policies, as IAM documents.
    pub policies: Vec<serde_json::Value>,
    /// The session tags.
    pub tags: Vec<SessionTag>,
}

impl PrincipalGrant {
    fn of(principal: &JobPrincipal, role_arn: &str) -> Self {
        PrincipalGrant {
            arn: principal.arn().to_string(),
            role_arn: role_arn.to_string(),
            policies: principal
                .policies()
                .iter()
                .map(|p| serde_json::to_value(&**p).expect("policies serialize"))
                .collect(),
            tags: principal.tags().to_vec(),
        }
    }

    /// The principal again, on the other side of the seam.
    pub fn principal(&self) -> Result<JobPrincipal, FailureReason> {
        let policies = self
            .policies
            .iter()
            .map(|p| {
                trainyard_iam::Policy::from_json_value(p)
                    .map(Arc::new)
                    .map_err(|e| FailureReason::internal(format!("the job's policy: {e}")))
            })
            .collect::<Result<_, _>>()?;
        Ok(JobPrincipal::new(
            self.arn.clone(),
            policies,
            self.tags.clone(),
        ))
    }
}

/// Decides the grant of a stored job. Under access control, the job's session must also be
/// allowed to mount the job's file systems (checked at creation, and again here since the
/// role's policies or the file system's tags may have changed since).
pub fn decide(
    settings: &Settings,
    identity: Option<&Identity>,
    rec: &JobRecord,
    creator: Option<&str>,
) -> Result<Grant, FailureReason> {
    let session = creator.map(CreatorRecord::parse).transpose().map_err(|e| {
        FailureReason::internal(format!(
            "the session that created the job cannot be read from the job record: {e}"
        ))
    })?;
    let creator_tags = session
        .as_ref()
        .map_or(&[][..], CreatorRecord::session_tags);
    let chained: Vec<SessionTag> = if rec.request.tag_chaining() {
        creator_tags.to_vec()
    } else {
        Vec::new()
    };
    let session_tags = chained
        .iter()
        .map(|t| (t.key.clone(), t.value.clone()))
        .collect();
    let Some(identity) = identity else {
        return Ok(Grant {
            principal: None,
            session_tags,
        });
    };
    let principal = identity
        .job_principal(
            &rec.request.role_arn,
            creator_tags,
            rec.request.tag_chaining(),
        )
        .map_err(|e| {
            FailureReason::client(format!(
                "the execution role cannot be assumed for this job: {e}"
            ))
        })?;
    file_systems(settings, &principal, &rec.request)?;
    Ok(Grant {
        principal: Some(PrincipalGrant::of(&principal, &rec.request.role_arn)),
        session_tags,
    })
}

/// `Ok` when `principal` may mount every file-system channel of `request`
/// ([`control::authorize_job`]); the failure names the action and the file system.
pub fn file_systems(
    settings: &Settings,
    principal: &JobPrincipal,
    request: &CreateTrainingJobRequest,
) -> Result<(), FailureReason> {
    let uses = control::FileSystemUse::of_request(request, |id| settings.file_systems.tags(id));
    let decision = control::authorize_job(principal, &uses, control::Account::of(settings));
    match decision.denial() {
        None => Ok(()),
        Some(denial) => Err(FailureReason::client(format!(
            "the job may not mount its file system: {denial}"
        ))),
    }
}

/// The storage a job's data plane uses under `grant`, and whether its processes get the
/// store's own credentials (only without access control: they would bypass it).
pub fn storage(
    settings: &Settings,
    base: &Storage,
    grant: &Grant,
    job: &str,
) -> Result<(Storage, bool), FailureReason> {
    let Some(p) = &grant.principal else {
        return Ok((base.clone(), true));
    };
    // With the store's own STS, the store checks the job's session too.
    let base = match base.assuming(settings, &p.role_arn, job, &grant.session_tags) {
        None => base.clone(),
        Some(Ok(s)) => s,
        Some(Err(e)) => {
            return Err(FailureReason::client(format!(
                "configuring object storage as {}: {e}",
                p.role_arn
            )));
        }
    };
    Ok((base.authorized(p.principal()?), false))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 15 item 3 at run time: the grant's principal must be allowed to mount each
    /// file system, by its tags, as the caller was at creation.
    #[test]
    fn the_job_principal_mounts_only_its_tenants_file_systems() {
        let home = tempfile::tempdir().unwrap();
        let data = home.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        std::fs::write(
            home.path().join("filesystems.json"),
            serde_json::json!({
                "fs-aaaa1111": {"path": data, "tags": {"tenant-id": "a"}},
                "fs-bbbb2222": {"path": data, "tags": {"tenant-id": "b"}},
            })
            .to_string(),
        )
        .unwrap();
        let settings = Settings::for_home(home.path()).unwrap();
        let policy = trainyard_iam::Policy::parse(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"elasticfilesystem:ClientMount","Resource":"*","Condition":{"StringEquals":{"aws:ResourceTag/tenant-id":"${aws:PrincipalTag/tenant-id}"}}}]}"#,
        )
        .unwrap();
        let grant = PrincipalGrant::of(
            &JobPrincipal::new(
                "arn:aws:sts::1:assumed-role/exec/SageMaker",
                vec![Arc::new(policy)],
                vec![SessionTag::new("tenant-id", "a")],
            ),
            "arn:aws:iam::1:role/exec",
        );
        let principal = grant.principal().unwrap();
        let request = |id: &str, mode: &str| {
            CreateTrainingJobRequest::from_json(
                &serde_json::json!({
                    "TrainingJobName": "j", "RoleArn": "arn:aws:iam::1:role/exec",
                    "OutputDataConfig": {"S3OutputPath": "s3://b/o"},
                    "InputDataConfig": [{"ChannelName": "fs", "DataSource": {"FileSystemDataSource": {
                        "FileSystemId": id, "FileSystemType": "EFS", "FileSystemAccessMode": mode,
                        "DirectoryPath": "/"}}}]
                })
                .to_string(),
            )
            .unwrap()
        };
        file_systems(&settings, &principal, &request("fs-aaaa1111", "ro")).unwrap();
        let refused = file_systems(&settings, &principal, &request("fs-bbbb2222", "ro"))
            .unwrap_err()
            .to_string();
        assert!(
            refused.contains("elasticfilesystem:ClientMount")
                && refused.contains("file-system/fs-bbbb2222")
                && refused.starts_with("ClientError"),
            "{refused}"
        );
        let refused = file_systems(&settings, &principal, &request("fs-aaaa1111", "rw"))
            .unwrap_err()
            .to_string();
        assert!(
            refused.contains("elasticfilesystem:ClientWrite"),
            "{refused}"
        );
    }

    #[test]
    fn a_grant_carries_the_principal_across_the_seam() {
        let policy = trainyard_iam::Policy::parse(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/${aws:PrincipalTag/tenant-id}/*"}]}"#,
        )
        .unwrap();
        let p = JobPrincipal::new(
            "arn:aws:sts::1:assumed-role/exec/SageMaker",
            vec![Arc::new(policy)],
            vec![SessionTag::new("tenant-id", "acme")],
        );
        let grant = PrincipalGrant::of(&p, "arn:aws:iam::1:role/exec");
        let wire = serde_json::to_string(&grant).unwrap();
        let back: PrincipalGrant = serde_json::from_str(&wire).unwrap();
        let again = back.principal().unwrap();
        again
            .authorize("s3:GetObject", "arn:aws:s3:::b/acme/x", &[])
            .unwrap();
        assert!(
            again
                .authorize("s3:GetObject", "arn:aws:s3:::b/other/x", &[])
                .is_err()
        );
    }
}
