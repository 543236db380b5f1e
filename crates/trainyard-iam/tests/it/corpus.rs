//! Runs every scenario in `tests/corpus/*.json`.
//!
//! A scenario file holds the policies (identity, session, resource), one request and
//! the expected outcome: either a decision with the ids of the matched statements (a
//! `Sid`, or `identity[0].Statement[1]` when there is none), or, for a policy that
//! must be refused, the start of the load error message. `delegated` lists the
//! resource-policy statements that named only the caller's account. Policies are given as JSON
//! objects, or as strings when the exact text matters (duplicate keys, bad JSON).
//! All scenarios run even when some fail, and the failures are listed together.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use trainyard_iam::{Decision, Policy, PolicyError, PolicySet, Request, StatementRef};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Scenario {
    /// What the scenario shows.
    description: String,
    /// Where the example comes from (documentation URL or "trainyard").
    source: String,
    #[serde(default)]
    identity: Vec<PolicyText>,
    #[serde(default)]
    session: Vec<PolicyText>,
    #[serde(default)]
    resource: Option<PolicyText>,
    request: RequestSpec,
    expect: Expect,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum PolicyText {
    Text(String),
    Json(serde_json::Value),
}

impl PolicyText {
    fn load(&self) -> Result<Policy, PolicyError> {
        match self {
            Self::Text(text) => Policy::parse(text),
            Self::Json(value) => Policy::from_json_value(value),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestSpec {
    #[serde(default)]
    principal: Option<String>,
    #[serde(default)]
    service: Option<String>,
    #[serde(default)]
    tags: BTreeMap<String, String>,
    action: String,
    resource: String,
    #[serde(default)]
    context: BTreeMap<String, Values>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Values {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    #[serde(default)]
    decision: Option<Decision>,
    #[serde(default)]
    matched: Option<Vec<String>>,
    #[serde(default)]
    error: Option<String>,
    /// Resource-policy statements that named only the caller's account (they delegate
    /// to identity policies and grant nothing themselves).
    #[serde(default)]
    delegated: Option<Vec<String>>,
}

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus")
}

fn build_request(spec: &RequestSpec) -> Result<Request, String> {
    let mut builder = Request::builder()
        .action(&spec.action)
        .resource(&spec.resource)
        .principal_tags(spec.tags.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    if let Some(principal) = &spec.principal {
        builder = builder.principal_arn(principal);
    }
    if let Some(service) = &spec.service {
        builder = builder.principal_service(service);
    }
    for (key, values) in &spec.context {
        builder = match values {
            Values::One(value) => builder.context_value(key, value),
            Values::Many(values) => builder.context(key, values),
        };
    }
    builder.build().map_err(|err| format!("bad request: {err}"))
}

fn run(scenario: &Scenario) -> Result<(), String> {
    let load = |texts: &[PolicyText]| {
        texts
            .iter()
            .map(PolicyText::load)
            .collect::<Result<Vec<_>, _>>()
    };
    let loaded = load(&scenario.identity).and_then(|identity| {
        let session = load(&scenario.session)?;
        let resource = scenario
            .resource
            .as_ref()
            .map(PolicyText::load)
            .transpose()?;
        Ok((identity, session, resource))
    });
    let (identity, session, resource) = match (loaded, &scenario.expect.error) {
        (Err(err), Some(expected)) => {
            let message = err.to_string();
            return if message.starts_with(expected.as_str()) {
                Ok(())
            } else {
                Err(format!(
                    "error {message:?} does not start with {expected:?}"
                ))
            };
        }
        (Err(err), None) => return Err(format!("policy refused: {err}")),
        (Ok(_), Some(expected)) => {
            return Err(format!("policy loaded, expected error {expected:?}"));
        }
        (Ok(policies), None) => policies,
    };
    let request = build_request(&scenario.request)?;
    let mut set = PolicySet::new().identities(&identity);
    for policy in &session {
        set = set.session(policy);
    }
    if let Some(policy) = &resource {
        set = set.resource(policy);
    }
    let response = set.evaluate(&request);
    let mut problems = Vec::new();
    match scenario.expect.decision {
        Some(decision) if decision != response.decision => problems.push(format!(
            "decision {} expected {decision}",
            response.decision
        )),
        Some(_) => {}
        None => problems.push("scenario expects neither a decision nor an error".to_owned()),
    }
    let matched: Vec<String> = response
        .diagnostics
        .matched
        .iter()
        .map(StatementRef::id)
        .collect();
    if let Some(expected) = &scenario.expect.matched {
        if *expected != matched {
            problems.push(format!("matched {matched:?} expected {expected:?}"));
        }
    }
    let delegated: Vec<String> = response
        .diagnostics
        .delegated
        .iter()
        .map(StatementRef::id)
        .collect();
    if let Some(expected) = &scenario.expect.delegated {
        if *expected != delegated {
            problems.push(format!("delegated {delegated:?} expected {expected:?}"));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        let errors: Vec<String> = response
            .diagnostics
            .errors
            .iter()
            .map(ToString::to_string)
            .collect();
        Err(format!(
            "{}; diagnostics errors: {errors:?}",
            problems.join("; ")
        ))
    }
}

#[test]
fn corpus() {
    let mut paths: Vec<PathBuf> = fs::read_dir(corpus_dir())
        .expect("tests/corpus exists")
        .map(|entry| entry.expect("readable corpus entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    paths.sort();
    assert!(
        paths.len() >= 30,
        "corpus has only {} scenarios",
        paths.len()
    );
    let mut failures = Vec::new();
    for path in &paths {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let text = fs::read_to_string(path).expect("readable scenario");
        let outcome = serde_json::from_str::<Scenario>(&text)
            .map_err(|err| format!("bad scenario file: {err}"))
            .and_then(|scenario| {
                assert!(!scenario.description.is_empty() && !scenario.source.is_empty());
                run(&scenario)
            });
        if let Err(message) = outcome {
            failures.push(format!("{name}: {message}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} scenarios failed:\n{}",
        failures.len(),
        paths.len(),
        failures.join("\n")
    );
}
