//! Properties that must hold for every input, checked with proptest.
//!
//! - The wildcard matcher agrees with a naive recursive reference matcher.
//! - A substituted tag value never acts as a wildcard.
//! - Adding a `Deny` statement never turns a refusal into `Allow`, and a `Deny`
//!   statement that applies on its own always yields `ExplicitDeny`.
//! - The decision does not depend on statement order or on how statements are split
//!   across identity policies.

use proptest::prelude::*;
use serde_json::{Value, json};
use trainyard_iam::{Decision, Pattern, Policy, PolicySet, Request, wildcard_match};

/// Exponential-time but obviously correct matcher: `*` tries every split.
fn reference_match(pattern: &[char], text: &[char]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some(('*', rest)) => (0..=text.len()).any(|i| reference_match(rest, &text[i..])),
        Some(('?', rest)) => !text.is_empty() && reference_match(rest, &text[1..]),
        Some((c, rest)) => text.first() == Some(c) && reference_match(rest, &text[1..]),
    }
}

fn chars(s: &str) -> Vec<char> {
    s.chars().collect()
}

proptest! {
    #[test]
    fn wildcard_matches_reference(pattern in "[ab*?]{0,10}", text in "[ab]{0,12}") {
        prop_assert_eq!(
            wildcard_match(&pattern, &text),
            reference_match(&chars(&pattern), &chars(&text))
        );
    }

    #[test]
    fn wildcard_matches_reference_wide_alphabet(pattern in "[a:/é*?]{0,8}", text in "[a:/é*?]{0,10}") {
        prop_assert_eq!(
            wildcard_match(&pattern, &text),
            reference_match(&chars(&pattern), &chars(&text))
        );
    }

    #[test]
    fn ignore_case_matches_reference(pattern in "[aB*?]{0,8}", text in "[AbaB]{0,10}") {
        prop_assert_eq!(
            Pattern::new_ignore_case(&pattern).matches(&text),
            reference_match(&chars(&pattern.to_lowercase()), &chars(&text.to_lowercase()))
        );
    }

    #[test]
    fn tag_values_never_act_as_wildcards(tag in "[a*?$]{1,6}", other in "[a*?$]{1,6}") {
        let policy = Policy::parse(
            r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"s3:GetObject",
               "Resource":"arn:aws:s3:::b/${aws:PrincipalTag/tenant-id}/*"}}"#,
        ).expect("valid policy");
        let request = Request::builder()
            .principal_tag("tenant-id", tag.as_str())
            .action("s3:GetObject")
            .resource(format!("arn:aws:s3:::b/{other}/key"))
            .build()
            .expect("valid request");
        prop_assert_eq!(policy.evaluate(&request).is_allowed(), tag == other);
    }
}

const ACTIONS: &[&str] = &[
    "s3:GetObject",
    "s3:PutObject",
    "s3:ListBucket",
    "s3:Get*",
    "s3:*",
    "*",
];
const RESOURCES: &[&str] = &[
    "*",
    "arn:aws:s3:::b",
    "arn:aws:s3:::b/*",
    "arn:aws:s3:::b/a/*",
    "arn:aws:s3:::b/${aws:PrincipalTag/tenant-id}/*",
    "arn:aws:s3:::c/*",
];

fn conditions() -> Vec<Value> {
    vec![
        json!({"StringEquals": {"aws:PrincipalTag/tenant-id": "a"}}),
        json!({"StringNotEquals": {"aws:PrincipalTag/tenant-id": "${aws:PrincipalTag/team}"}}),
        json!({"StringLike": {"s3:prefix": ["${aws:PrincipalTag/tenant-id}/*", "${aws:PrincipalTag/tenant-id}/"]}}),
        json!({"Null": {"aws:PrincipalTag/team": "true"}}),
        json!({"ForAllValues:StringEquals": {"aws:TagKeys": ["x", "y"]}}),
        json!({"ForAnyValue:StringLike": {"aws:TagKeys": "x*"}}),
        json!({"NumericLessThanEquals": {"s3:max-keys": "10"}}),
        json!({"NotIpAddress": {"aws:SourceIp": "10.0.0.0/8"}}),
        json!({"BoolIfExists": {"aws:SecureTransport": "true"}}),
        json!({"StringLike": {"s3:prefix": "${aws:PrincipalTag/team, 'shared'}/*"}}),
    ]
}

fn subset_of(items: &'static [&'static str]) -> impl Strategy<Value = Vec<&'static str>> {
    proptest::sample::subsequence(items, 1..=2)
}

fn statement(effect: Option<&'static str>) -> impl Strategy<Value = Value> {
    let effect = match effect {
        Some(effect) => Just(effect).boxed(),
        None => prop_oneof![Just("Allow"), Just("Deny")].boxed(),
    };
    (
        effect,
        subset_of(ACTIONS),
        any::<bool>(),
        subset_of(RESOURCES),
        any::<bool>(),
        proptest::option::of(proptest::sample::select(conditions())),
    )
        .prop_map(
            |(effect, actions, not_action, resources, not_resource, condition)| {
                let mut statement = json!({"Effect": effect});
                let action_key = if not_action { "NotAction" } else { "Action" };
                statement[action_key] = json!(actions);
                let resource_key = if not_resource {
                    "NotResource"
                } else {
                    "Resource"
                };
                statement[resource_key] = json!(resources);
                if let Some(condition) = condition {
                    statement["Condition"] = condition;
                }
                statement
            },
        )
}

fn request() -> impl Strategy<Value = Request> {
    let maybe =
        |values: &'static [&'static str]| proptest::option::of(proptest::sample::select(values));
    (
        proptest::sample::select(
            &[
                "s3:GetObject",
                "s3:PutObject",
                "s3:ListBucket",
                "s3:DeleteObject",
            ][..],
        ),
        proptest::sample::select(
            &[
                "arn:aws:s3:::b",
                "arn:aws:s3:::b/a/k",
                "arn:aws:s3:::b/b/k",
                "arn:aws:s3:::c/a/k",
            ][..],
        ),
        maybe(&["a", "b", "*"]),
        maybe(&["a", "shared"]),
        maybe(&["a/", "b/x", "shared/x", ""]),
        maybe(&["5", "50", "many"]),
        maybe(&["10.1.2.3", "192.0.2.1", "bogus"]),
        proptest::option::of(proptest::sample::subsequence(&["x", "y", "xz"][..], 0..=3)),
    )
        .prop_map(
            |(action, resource, tenant, team, prefix, max_keys, ip, tag_keys)| {
                let mut builder = Request::builder()
                    .principal_arn("arn:aws:sts::111122223333:assumed-role/exec/job")
                    .action(action)
                    .resource(resource);
                if let Some(tenant) = tenant {
                    builder = builder.principal_tag("tenant-id", tenant);
                }
                if let Some(team) = team {
                    builder = builder.principal_tag("team", team);
                }
                if let Some(prefix) = prefix {
                    builder = builder.context_value("s3:prefix", prefix);
                }
                if let Some(max_keys) = max_keys {
                    builder = builder.context_value("s3:max-keys", max_keys);
                }
                if let Some(ip) = ip {
                    builder = builder.context_value("aws:SourceIp", ip);
                }
                if let Some(tag_keys) = tag_keys {
                    builder = builder.context("aws:TagKeys", tag_keys);
                }
                builder.build().expect("valid request")
            },
        )
}

fn policy(statements: &[Value]) -> Policy {
    Policy::from_json_value(&json!({"Version": "2012-10-17", "Statement": statements}))
        .expect("generated policy is valid")
}

fn decide(statements: &[Value], request: &Request) -> Decision {
    policy(statements).evaluate(request).decision
}

proptest! {
    #[test]
    fn adding_a_deny_never_allows(
        statements in proptest::collection::vec(statement(None), 0..6),
        deny in statement(Some("Deny")),
        request in request(),
    ) {
        let before = decide(&statements, &request);
        let mut with_deny = statements.clone();
        with_deny.push(deny.clone());
        let after = decide(&with_deny, &request);
        if before != Decision::Allow {
            prop_assert_ne!(after, Decision::Allow);
        }
        if before == Decision::ExplicitDeny {
            prop_assert_eq!(after, Decision::ExplicitDeny);
        }
        if decide(&[deny], &request) == Decision::ExplicitDeny {
            prop_assert_eq!(after, Decision::ExplicitDeny);
        }
    }

    #[test]
    fn decision_is_independent_of_order(
        (statements, shuffled) in proptest::collection::vec(statement(None), 1..8)
            .prop_flat_map(|v| (Just(v.clone()), Just(v).prop_shuffle())),
        split in 0usize..8,
        request in request(),
    ) {
        let decision = decide(&statements, &request);
        prop_assert_eq!(decide(&shuffled, &request), decision);
        // The same statements spread over two identity policies.
        let split = split.min(shuffled.len());
        let (first, second) = (policy(&shuffled[..split]), policy(&shuffled[split..]));
        let spread = PolicySet::new().identity(&first).identity(&second).evaluate(&request);
        prop_assert_eq!(spread.decision, decision);
        // An explicit deny wins wherever it sits.
        let any_deny_applies = statements
            .iter()
            .filter(|s| s["Effect"] == "Deny")
            .any(|s| decide(std::slice::from_ref(s), &request) == Decision::ExplicitDeny);
        prop_assert_eq!(decision == Decision::ExplicitDeny, any_deny_applies);
        let any_allow_applies = statements
            .iter()
            .filter(|s| s["Effect"] == "Allow")
            .any(|s| decide(std::slice::from_ref(s), &request) == Decision::Allow);
        prop_assert_eq!(decision == Decision::Allow, any_allow_applies && !any_deny_applies);
    }
}

fn with_principal(statements: &[Value], principal: &Value) -> Vec<Value> {
    statements
        .iter()
        .map(|statement| {
            let mut statement = statement.clone();
            statement["Principal"] = principal.clone();
            statement
        })
        .collect()
}

fn decide_with_resource(identity: &[Value], resource: &[Value], request: &Request) -> Decision {
    let (identity, resource) = (policy(identity), policy(resource));
    PolicySet::new()
        .identity(&identity)
        .resource(&resource)
        .evaluate(request)
        .decision
}

proptest! {
    /// A resource policy whose statements name no principal applies to nobody: adding it
    /// never changes the decision the identity policies reach.
    #[test]
    fn resource_statements_without_principal_never_apply(
        identity in proptest::collection::vec(statement(None), 0..5),
        resource in proptest::collection::vec(statement(None), 1..5),
        request in request(),
    ) {
        prop_assert_eq!(
            decide_with_resource(&identity, &resource, &request),
            decide(&identity, &request)
        );
    }

    /// Allow statements naming only the caller's account delegate to the identity
    /// policies: they never allow what the identity policies do not, and never refuse
    /// what they allow.
    #[test]
    fn account_principal_allows_only_delegate(
        identity in proptest::collection::vec(statement(None), 0..5),
        resource in proptest::collection::vec(statement(Some("Allow")), 1..5),
        principal in proptest::sample::select(&[
            r#"{"AWS":"111122223333"}"#,
            r#"{"AWS":"arn:aws:iam::111122223333:root"}"#,
            r#"{"AWS":["arn:aws:iam::111122223333:root","arn:aws:iam::444455556666:role/other"]}"#,
        ][..]),
        request in request(),
    ) {
        let principal: Value = serde_json::from_str(principal).expect("valid JSON");
        let resource = with_principal(&resource, &principal);
        prop_assert_eq!(
            decide_with_resource(&identity, &resource, &request),
            decide(&identity, &request)
        );
    }

    /// The same statements naming the caller's role grant by themselves: with no
    /// identity policy, the decision is that of the statements read as an identity policy.
    #[test]
    fn role_principal_grants_directly(
        resource in proptest::collection::vec(statement(None), 1..5),
        request in request(),
    ) {
        let principal = json!({"AWS": "arn:aws:iam::111122223333:role/exec"});
        prop_assert_eq!(
            decide_with_resource(&[], &with_principal(&resource, &principal), &request),
            decide(&resource, &request)
        );
    }
}
