//! The SageMaker JSON API over HTTP (`trainyard serve`).
//!
//! One route, `POST /`, as the AWS JSON 1.1 protocol has it: the operation is named by the
//! `X-Amz-Target` header (`SageMaker.CreateTrainingJob`, `Logs_20140328.GetLogEvents`,
//! `GraniteServiceVersion20100801.GetMetricStatistics` (CloudWatch metrics), ...), the
//! body is the operation's input shape, the answer its output shape or an error shape. Every
//! response carries `x-amzn-RequestId`. Handlers are thin: they parse, call the domain code the
//! CLI also uses, and format. Who is calling and whether they may perform the operation is
//! decided in [`crate::authz`] before a handler runs (for `CreateTrainingJob`, once its body
//! is parsed); this module only turns a refusal into the error clients expect.

mod error;
mod hosts;
mod logs;
mod metrics;
pub mod s3;
pub mod sts;
#[cfg(test)]
mod tests;
mod training_jobs;

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

pub use crate::authz::Caller;
pub use error::ApiError;
pub use logs::LOG_GROUP;
pub use training_jobs::parse_create;

use crate::authz::control::{self, Account, ControlDecision, Job, Operation};
use crate::authz::sigv4;
use crate::config::Settings;
use crate::db::JobStore;
use crate::scheduler::Scheduler;
use crate::storage::Storage;

/// What the handlers share.
#[derive(Debug)]
pub struct AppState {
    /// Installation settings.
    pub settings: Settings,
    /// Job records.
    pub store: Arc<dyn JobStore>,
    /// Object clients.
    pub storage: Storage,
    /// Runs the jobs.
    pub scheduler: Arc<Scheduler>,
    /// Refuse unknown request members instead of ignoring them.
    pub strict: bool,
    /// Base for relative `file://` URIs and the working directory of `host` jobs.
    pub workdir: String,
    /// Users, roles and sessions (`$TRAINYARD_HOME/iam.json`). When present, every request must
    /// be SigV4-signed by a known key and every job's data access is authorized; when absent,
    /// signatures are parsed but not verified.
    pub identity: Option<Arc<crate::identity::Identity>>,
    /// Under `iam.json`, refuse `CreateTrainingJob` when this machine cannot run the job's
    /// container (`runner::isolation::refusal`). `serve` sets it; the API's unit tests, which
    /// exercise the control plane with containers off, do not.
    pub sandbox_check: bool,
    /// S3 for the embedded store on the same address (`s3::Endpoint::new(&settings,
    /// identity.clone())`).
    pub s3: s3::Endpoint,
}

/// The router: the host calls of cluster nodes under `/_trainyard/`, and on every other path
/// the services clients know, told apart by the request's shape (`s3::is_s3_request`).
pub fn app(state: Arc<AppState>) -> Router {
    Router::new()
        .route(
            "/_trainyard/jobs/{job}/hosts/{index}/{*what}",
            axum::routing::any(hosts::handle),
        )
        .fallback(front)
        .with_state(state)
}

/// The largest JSON or STS request body read (axum's default limit for buffered bodies).
const API_BODY_LIMIT: usize = 2 << 20;

/// SageMaker, Logs and STS requests go to [`dispatch`]; everything else is S3.
async fn front(State(st): State<Arc<AppState>>, request: axum::extract::Request) -> Response {
    if s3::is_s3_request(request.method(), request.uri(), request.headers()) {
        return st.s3.handle(request).await;
    }
    let (parts, body) = request.into_parts();
    let body = match axum::body::to_bytes(body, API_BODY_LIMIT).await {
        Ok(body) => body,
        Err(_) => {
            return (
                axum::http::StatusCode::PAYLOAD_TOO_LARGE,
                "the request body is larger than 2 MiB",
            )
                .into_response();
        }
    };
    dispatch(State(st), parts.method, parts.uri, parts.headers, body).await
}

/// Answers one request inside a `request` span (its id, as returned in `x-amzn-requestid`,
/// and its operation), so the log lines of concurrent requests can be told apart.
async fn dispatch(
    State(st): State<Arc<AppState>>,
    method: axum::http::Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    use tracing::Instrument;
    let request_id = uuid::Uuid::new_v4().to_string();
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let span = tracing::info_span!("request", id = %request_id, target = %target);
    respond(st, method, uri, headers, body, request_id, target)
        .instrument(span)
        .await
}

async fn respond(
    st: Arc<AppState>,
    method: axum::http::Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
    request_id: String,
    target: String,
) -> Response {
    let signed = sigv4::SignedRequest {
        method: method.as_str(),
        path: uri.path(),
        query: uri.query().unwrap_or(""),
        headers: &headers,
        body: &body,
    };
    let caller = match crate::authz::authenticate(st.identity.as_deref(), &signed) {
        Ok(caller) => caller,
        Err(e) => {
            tracing::info!(target = %target, "refused: {e}");
            let mut resp = if sts::is_sts_request(&headers) {
                sts::auth_error_response(&e, &request_id)
            } else {
                ApiError::from(e).into_response()
            };
            if let Ok(v) = HeaderValue::from_str(&request_id) {
                resp.headers_mut().insert("x-amzn-requestid", v);
            }
            return resp;
        }
    };
    if sts::is_sts_request(&headers) {
        let mut resp = match (&st.identity, &caller) {
            _ if sts::is_iam_request(&body) => sts::iam_refusal(&body, &request_id),
            (Some(identity), Caller::Verified(principal)) => {
                sts::handle_sts(identity, principal, &body, &request_id).await
            }
            _ => sts::handle_without_identity(&st.settings.account_id, &body, &request_id),
        };
        if let Ok(v) = HeaderValue::from_str(&request_id) {
            resp.headers_mut().insert("x-amzn-requestid", v);
        }
        return resp;
    }
    let result = handle(&st, &target, caller, &body).await;
    let mut resp = match result {
        Ok(v) => {
            let mut r = v.to_string().into_response();
            r.headers_mut().insert(
                "content-type",
                HeaderValue::from_static("application/x-amz-json-1.1"),
            );
            r
        }
        Err(e) => {
            if e.status.is_server_error() {
                tracing::error!(target = %target, request_id = %request_id, "{}", e.message);
            } else {
                tracing::debug!(target = %target, code = e.code, "{}", e.message);
            }
            e.into_response()
        }
    };
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        resp.headers_mut().insert("x-amzn-requestid", v);
    }
    resp
}

async fn handle(
    st: &Arc<AppState>,
    target: &str,
    caller: Caller,
    body: &[u8],
) -> Result<Value, ApiError> {
    let input: Value = if body.is_empty() {
        Value::Object(Default::default())
    } else {
        serde_json::from_slice(body).map_err(|e| {
            ApiError::serialization(format!("the request body is not valid JSON: {e}"))
        })?
    };
    if !input.is_object() {
        return Err(ApiError::serialization(
            "the request body must be a JSON object",
        ));
    }
    let account = Account::of(&st.settings);
    let lookup = |name: &str| match st.store.get(name) {
        Ok(job) => Ok(job.as_ref().map(Job::of)),
        Err(e) => Err(ApiError::internal(e)),
    };
    if let Some(operation) = Operation::from_request(target, &input, lookup)? {
        enforce(&control::authorize(&caller, &operation, account))?;
    }
    match target {
        "SageMaker.CreateTrainingJob" => training_jobs::create(st, input, caller).await,
        "SageMaker.DescribeTrainingJob" => training_jobs::describe_job(st, &input),
        "SageMaker.ListTrainingJobs" => {
            let visible = |name: &str| match &caller {
                Caller::Unverified(_) => true,
                Caller::Verified(_) => matches!(
                    st.store.get(name),
                    Ok(Some(job)) if control::visible(&caller, &Job::of(&job), account)
                ),
            };
            training_jobs::list(st, &input, &visible)
        }
        "SageMaker.StopTrainingJob" => training_jobs::stop(st, &input),
        "SageMaker.UpdateTrainingJob" => training_jobs::update(st, &input),
        "Logs_20140328.DescribeLogStreams" => logs::describe_log_streams(st, &input),
        "Logs_20140328.GetLogEvents" => logs::get_log_events(st, &input),
        "GraniteServiceVersion20100801.ListMetrics" => {
            let visible = |name: &str| match &caller {
                Caller::Unverified(_) => true,
                Caller::Verified(_) => matches!(
                    st.store.get(name),
                    Ok(Some(job)) if control::visible(&caller, &Job::of(&job), account)
                ),
            };
            metrics::list_metrics(st, &input, &visible)
        }
        "GraniteServiceVersion20100801.GetMetricStatistics" => {
            metrics::get_metric_statistics(st, &input)
        }
        "GraniteServiceVersion20100801.GetMetricData" => metrics::get_metric_data(st, &input),
        "" => Err(ApiError::unknown_operation("(missing X-Amz-Target header)")),
        other => Err(ApiError::unknown_operation(other)),
    }
}

/// Turns a control-plane decision into the API's answer: nothing for an allow, else
/// `AccessDeniedException` naming the caller, the action and the resource, as IAM's does. The
/// diagnostics go to the server log (they name statements and tags, never a credential).
fn enforce(decision: &ControlDecision) -> Result<(), ApiError> {
    let Some(denial) = decision.denial() else {
        if decision.principal.is_some() {
            tracing::trace!(decision = ?decision, "control-plane request allowed");
        }
        return Ok(());
    };
    tracing::debug!(decision = ?decision, "control-plane request denied");
    Err(ApiError::access_denied(format!("User: {denial}")))
}
