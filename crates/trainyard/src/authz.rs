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

use crate::identity::{Identity, Principal};
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
