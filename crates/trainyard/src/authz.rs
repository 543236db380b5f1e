//! Authorization in one home: who is calling, what the caller may do with the API, and what a
//! job's data plane may touch.
//!
//! Why one module: tenants share one server, so every path by which one tenant could reach
//! another's jobs or data goes through a decision, and a reader (or a reviewer of a policy
//! change) should find all of those decisions, and the one way each is made, in one place.
//! Every decision is an IAM evaluation by `trainyard-iam`, and a denial is a value with its
//! reasons (which statement allowed, which `Deny` refused, or that nothing allowed), never an
//! error; only the edges (the API, the object client) turn it into a refusal.
//!
//! | module | decides |
//! |---|---|
//! | [`sigv4`] | who sent a request: the one parser of SigV4 credentials (header or presigned query), verification, and the signer the CLI uses |
//! | [`control`] | what an API caller may do: the IAM requests of each operation (job ARN, tags, log group), decision and diagnostics, `ListTrainingJobs` filtering |
//! | [`principal`] | the actors: an API caller ([`principal::Principal`]) and a job's execution-role session ([`principal::JobPrincipal`], built by `Identity::job_principal`) |
//! | [`client`] | what a job touches: [`client::AuthorizingClient`] evaluates every object access as the job principal before it reaches storage |
//!
//! The *state* these decisions read, `iam.json`, the session table and `AssumeRole`, stays in
//! [`crate::identity`], which re-exports the principal types under their old paths.

pub mod client;
pub mod control;
pub mod principal;
pub mod sigv4;

use serde::{Deserialize, Serialize};

use crate::identity::{Identity, Principal, SessionTag};
use sigv4::{AuthError, Claim, SignedRequest};

/// Who is calling, as far as the server can tell.
#[derive(Debug)]
pub enum Caller {
    /// No identity configuration: the access key as the request claims it, unverified.
    Unverified(Option<Claim>),
    /// A verified signature: the principal behind the key.
    Verified(Box<Principal>),
}

/// Authenticates a request. Without an identity configuration every request passes as its
/// (unverified) claim; with one, the signature must verify and the caller is the principal
/// behind the key.
pub fn authenticate(
    identity: Option<&Identity>,
    request: &SignedRequest<'_>,
) -> Result<Caller, AuthError> {
    match identity {
        None => Ok(Caller::Unverified(Claim::of(
            request.headers,
            request.query,
        ))),
        Some(identity) => sigv4::verify(identity, request).map(|p| Caller::Verified(Box::new(p))),
    }
}

impl Caller {
    /// What is recorded with a job this caller creates.
    pub fn record(&self) -> Option<CreatorRecord> {
        match self {
            Caller::Unverified(claim) => claim.as_ref().map(|c| {
                CreatorRecord::Claimed(ClaimedKey {
                    access_key_id: c.access_key.clone(),
                    region: c.region.clone(),
                    temporary_credentials: c.session,
                })
            }),
            Caller::Verified(principal) => Some(CreatorRecord::Verified(VerifiedCreator {
                arn: principal.arn().to_owned(),
                user_id: principal.user_id().to_owned(),
                session_tags: principal.session_tags().to_vec(),
            })),
        }
    }
}

/// Who created a job, as stored with it (JSON in the job store's `caller` column) and read
/// back when the job runs, because the creator's session tags become the job's principal tags
/// under `EnableSessionTagChaining`. Typed so that a record that does not read back is an
/// error ([`CreatorRecord::parse`]) rather than a job silently without tags.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum CreatorRecord {
    /// A verified principal (access control on).
    Verified(VerifiedCreator),
    /// The key an unverified request claimed (access control off).
    Claimed(ClaimedKey),
}

/// The creator of a job when access control is on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct VerifiedCreator {
    /// The principal's ARN.
    pub arn: String,
    /// Its `UserId`.
    pub user_id: String,
    /// Its session tags (empty for a user).
    pub session_tags: Vec<SessionTag>,
}

/// The creator of a job when access control is off: the access key as claimed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct ClaimedKey {
    /// Access key id.
    pub access_key_id: String,
    /// Region of the credential scope.
    pub region: String,
    /// Whether a session token came along.
    pub temporary_credentials: bool,
}

impl CreatorRecord {
    /// Reads a stored record.
    pub fn parse(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// The JSON to store.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("strings, booleans and tags always serialize")
    }

    /// The session tags a job created by this caller may chain: none for a claimed key.
    pub fn session_tags(&self) -> &[SessionTag] {
        match self {
            CreatorRecord::Verified(creator) => &creator.session_tags,
            CreatorRecord::Claimed(_) => &[],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creator_records_read_back_and_keep_their_stored_shape() {
        let verified = CreatorRecord::Verified(VerifiedCreator {
            arn: "arn:aws:sts::111122223333:assumed-role/creator/a".into(),
            user_id: "AROAEXAMPLE:a".into(),
            session_tags: vec![SessionTag::new("tenant-id", "a")],
        });
        let text = verified.to_json();
        // The shape records have always had (the runner reads `SessionTags` of it).
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            value,
            serde_json::json!({"Arn": "arn:aws:sts::111122223333:assumed-role/creator/a",
                "UserId": "AROAEXAMPLE:a", "SessionTags": [{"Key": "tenant-id", "Value": "a"}]})
        );
        assert_eq!(CreatorRecord::parse(&text).unwrap(), verified);
        assert_eq!(
            verified.session_tags(),
            &[SessionTag::new("tenant-id", "a")]
        );

        let claimed = CreatorRecord::parse(
            r#"{"AccessKeyId": "AKIDEXAMPLE", "Region": "us-east-1", "TemporaryCredentials": false}"#,
        )
        .unwrap();
        assert!(matches!(&claimed, CreatorRecord::Claimed(k) if k.access_key_id == "AKIDEXAMPLE"));
        assert!(claimed.session_tags().is_empty());

        // A record that does not read back is an error, not a creator without tags.
        for broken in [
            r#"{"Arn": "x", "UserId": "y", "SessionTags": [{"Key": "tenant-id"}]}"#,
            r#"{"Arn": "x"}"#,
            "not json",
        ] {
            assert!(CreatorRecord::parse(broken).is_err(), "{broken}");
        }
    }
}
