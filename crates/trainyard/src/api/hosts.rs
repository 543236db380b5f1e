//! The routes cluster nodes call while they run a job's hosts (`cluster/protocol.rs`).
//!
//! They are not SageMaker operations and are not signed the AWS way: each call carries the
//! job's token, which only the job's tasks have, and reaches only that job.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::AppState;
use crate::cluster::protocol::{EventBatch, Registration};
use crate::cluster::slurm::HostCallError;

fn answer(status: StatusCode, message: String) -> Response {
    (status, axum::Json(json!({"message": message}))).into_response()
}

fn refused(e: HostCallError) -> Response {
    let status = match e {
        HostCallError::NotRunning(_) => StatusCode::NOT_FOUND,
        HostCallError::Forbidden => StatusCode::FORBIDDEN,
        HostCallError::Invalid(_) => StatusCode::BAD_REQUEST,
        HostCallError::Waiting(..) => StatusCode::CONFLICT,
        HostCallError::Io(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    answer(status, e.to_string())
}

async fn json_body<T: serde::de::DeserializeOwned>(body: Body) -> Result<T, Response> {
    let bytes = axum::body::to_bytes(body, 16 << 20)
        .await
        .map_err(|e| answer(StatusCode::BAD_REQUEST, format!("reading the body: {e}")))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| answer(StatusCode::BAD_REQUEST, format!("invalid body: {e}")))
}

/// `/_trainyard/jobs/{job}/hosts/{index}/{what}`.
pub(super) async fn handle(
    State(st): State<Arc<AppState>>,
    Path((job, index, what)): Path<(String, usize, String)>,
    method: Method,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Some(cluster) = st.scheduler.executor().cluster() else {
        return answer(
            StatusCode::NOT_FOUND,
            "this server runs jobs locally; there are no cluster hosts".into(),
        );
    };
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let ok = || answer(StatusCode::OK, "ok".into());
    match (method, what.as_str()) {
        (Method::POST, "register") => match json_body::<Registration>(body).await {
            Ok(r) => cluster
                .register(&job, index, token, &r.address)
                .map_or_else(refused, |()| ok()),
            Err(resp) => resp,
        },
        (Method::GET, "assignment") => match cluster.assignment(&job, index, token) {
            Ok(a) => axum::Json(a).into_response(),
            Err(e) => refused(e),
        },
        (Method::POST, "events") => match json_body::<EventBatch>(body).await {
            Ok(b) => cluster
                .events(&job, index, token, b.events)
                .map_or_else(refused, |()| ok()),
            Err(resp) => resp,
        },
        (Method::PUT, w) if w.starts_with("artifacts/") => {
            let file = &w["artifacts/".len()..];
            match cluster.artifact(&job, index, token, file, body).await {
                Ok(()) => ok(),
                Err(e) => refused(e),
            }
        }
        (m, w) => answer(StatusCode::NOT_FOUND, format!("no host call {m} {w}")),
    }
}
