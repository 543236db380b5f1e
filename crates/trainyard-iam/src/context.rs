//! The request being authorised: who asks, for which action, on which resource, and
//! the condition keys that come with it.
//!
//! Every data access of a training job becomes one [`Request`]. Callers in the rest of
//! trainyard (the embedded store, the data plane) know the principal, its session tags,
//! the S3 operation and the object, so the builder takes exactly those and derives the
//! global keys AWS would set from them (`aws:PrincipalArn`, `aws:PrincipalAccount`,
//! `aws:username`, `aws:PrincipalTag/<key>`, `aws:PrincipalServiceName`). Anything
//! else (`s3:prefix`, `aws:SourceIp`, `aws:CurrentTime`, `aws:RequestTag/…`,
//! `aws:TagKeys`, …) is passed explicitly through [`RequestBuilder::context`]; explicit
//! values always win over derived ones.
//!
//! Condition keys are case-insensitive in IAM, so [`Context`] stores them lower-cased;
//! values keep their case. Every key holds a list of values, because some keys are
//! multivalued (`aws:TagKeys`); a key set to an empty list behaves as if it were absent.

use std::collections::BTreeMap;

use crate::arn::{Arn, ArnError};

/// Condition keys and their values, looked up case-insensitively by key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Context {
    // INVARIANT: keys are lower-cased.
    entries: BTreeMap<String, Vec<String>>,
}

impl Context {
    /// Creates an empty context.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `key` to `values`, replacing any previous values of that key.
    pub fn insert<I, V>(&mut self, key: &str, values: I)
    where
        I: IntoIterator<Item = V>,
        V: Into<String>,
    {
        self.entries.insert(
            key.to_lowercase(),
            values.into_iter().map(Into::into).collect(),
        );
    }

    /// Sets `key` to `values` unless the key is already present.
    fn insert_default(&mut self, key: &str, values: Vec<String>) {
        self.entries.entry(key.to_lowercase()).or_insert(values);
    }

    /// Returns the values of `key` (case-insensitive), or `None` when the key is absent
    /// or has no values.
    pub fn get(&self, key: &str) -> Option<&[String]> {
        self.get_lowercase(&key.to_lowercase())
    }

    /// Like [`Context::get`] for a key that is already lower-case.
    pub(crate) fn get_lowercase(&self, key: &str) -> Option<&[String]> {
        self.entries
            .get(key)
            .map(Vec::as_slice)
            .filter(|values| !values.is_empty())
    }

    /// Returns whether `key` is present with at least one value.
    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Iterates over the lower-cased keys and their values, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[String])> {
        self.entries
            .iter()
            .map(|(key, values)| (key.as_str(), values.as_slice()))
    }
}

/// One authorisation request: principal, action, resource and condition keys.
///
/// Build one with [`Request::builder`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    principal_arn: Option<Arn>,
    principal_service: Option<String>,
    action: String,
    // INVARIANT: `action` lower-cased, computed once because every statement needs it.
    action_lowercase: String,
    resource: String,
    context: Context,
}

impl Request {
    /// Starts building a request.
    ///
    /// ```
    /// use trainyard_iam::Request;
    /// let request = Request::builder()
    ///     .principal_arn("arn:aws:sts::111122223333:assumed-role/exec/job-1")
    ///     .principal_tag("tenant-id", "a")
    ///     .action("s3:ListBucket")
    ///     .resource("arn:aws:s3:::shared-bucket")
    ///     .context("s3:prefix", ["a/"])
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(request.context().get("aws:principaltag/TENANT-ID"), Some(&["a".to_owned()][..]));
    /// assert_eq!(request.context().get("aws:PrincipalAccount"), Some(&["111122223333".to_owned()][..]));
    /// ```
    pub fn builder() -> RequestBuilder {
        RequestBuilder::default()
    }

    /// The calling principal's ARN (an IAM user, role, role session, or account root).
    pub fn principal_arn(&self) -> Option<&Arn> {
        self.principal_arn.as_ref()
    }

    /// The calling service principal, e.g. `sagemaker.amazonaws.com`.
    pub fn principal_service(&self) -> Option<&str> {
        self.principal_service.as_deref()
    }

    /// The action, e.g. `s3:GetObject`.
    pub fn action(&self) -> &str {
        &self.action
    }

    pub(crate) fn action_lowercase(&self) -> &str {
        &self.action_lowercase
    }

    /// The resource, normally an ARN such as `arn:aws:s3:::bucket/key`.
    pub fn resource(&self) -> &str {
        &self.resource
    }

    /// The condition keys, including those derived from the principal.
    pub fn context(&self) -> &Context {
        &self.context
    }
}

/// Why a [`Request`] could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// No action was given, or it was empty.
    #[error("request has no action")]
    MissingAction,
    /// No resource was given, or it was empty.
    #[error("request has no resource")]
    MissingResource,
    /// The principal ARN does not parse.
    #[error("invalid principal ARN")]
    InvalidPrincipalArn {
        /// Why it does not parse.
        #[source]
        source: ArnError,
    },
}

/// Builder for [`Request`]; see [`Request::builder`].
#[derive(Debug, Clone, Default)]
pub struct RequestBuilder {
    principal_arn: Option<String>,
    principal_service: Option<String>,
    action: Option<String>,
    resource: Option<String>,
    context: Context,
    tags: Vec<(String, String)>,
}

impl RequestBuilder {
    /// Sets the calling principal's ARN.
    ///
    /// From it [`RequestBuilder::build`] derives `aws:PrincipalArn` (for a role session,
    /// the ARN of the role, as AWS does; the role path is not known from the session
    /// ARN and is left out), `aws:PrincipalAccount`, and `aws:username` for IAM users.
    pub fn principal_arn(mut self, arn: impl Into<String>) -> Self {
        self.principal_arn = Some(arn.into());
        self
    }

    /// Sets the calling service principal (e.g. `sagemaker.amazonaws.com`) for trust and
    /// resource policies; derives `aws:PrincipalServiceName`.
    pub fn principal_service(mut self, service: impl Into<String>) -> Self {
        self.principal_service = Some(service.into());
        self
    }

    /// Adds one principal (session) tag, readable as `aws:PrincipalTag/<key>`.
    ///
    /// Tag keys are case-insensitive: a later tag whose key differs only in case
    /// replaces an earlier one.
    pub fn principal_tag(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.tags.push((key.into(), value.into()));
        self
    }

    /// Adds several principal tags; see [`RequestBuilder::principal_tag`].
    pub fn principal_tags<I, K, V>(mut self, tags: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        self.tags
            .extend(tags.into_iter().map(|(k, v)| (k.into(), v.into())));
        self
    }

    /// Sets the action, e.g. `s3:GetObject`.
    pub fn action(mut self, action: impl Into<String>) -> Self {
        self.action = Some(action.into());
        self
    }

    /// Sets the resource, e.g. `arn:aws:s3:::bucket/key`.
    pub fn resource(mut self, resource: impl Into<String>) -> Self {
        self.resource = Some(resource.into());
        self
    }

    /// Sets a condition key to a list of values, replacing earlier values of that key
    /// (keys are case-insensitive). An empty list makes the key behave as absent.
    pub fn context<I, V>(mut self, key: &str, values: I) -> Self
    where
        I: IntoIterator<Item = V>,
        V: Into<String>,
    {
        self.context.insert(key, values);
        self
    }

    /// Sets a condition key to a single value.
    pub fn context_value(self, key: &str, value: impl Into<String>) -> Self {
        self.context(key, [value.into()])
    }

    /// Validates the parts and derives the principal keys.
    pub fn build(self) -> Result<Request, RequestError> {
        let action = self
            .action
            .filter(|a| !a.is_empty())
            .ok_or(RequestError::MissingAction)?;
        let resource = self
            .resource
            .filter(|r| !r.is_empty())
            .ok_or(RequestError::MissingResource)?;
        let principal_arn = self
            .principal_arn
            .map(|raw| Arn::parse(&raw))
            .transpose()
            .map_err(|source| RequestError::InvalidPrincipalArn { source })?;
        let mut context = self.context;
        // Tags are applied in order, so a later tag replaces an earlier one with the same
        // key in any case. A tag also replaces an `aws:PrincipalTag/…` value set through
        // `context`: the tag is the more specific statement of the caller's intent.
        for (key, value) in self.tags {
            context.insert(&format!("aws:PrincipalTag/{key}"), [value]);
        }
        if let Some(arn) = &principal_arn {
            let principal = match arn.assumed_role_name() {
                Some(role) => Arn::new(
                    arn.partition(),
                    "iam",
                    "",
                    arn.account(),
                    format!("role/{role}"),
                )
                .to_string(),
                None => arn.to_string(),
            };
            context.insert_default("aws:PrincipalArn", vec![principal]);
            if !arn.account().is_empty() {
                context.insert_default("aws:PrincipalAccount", vec![arn.account().to_owned()]);
            }
            if let Some(user) = arn.user_name() {
                context.insert_default("aws:username", vec![user.to_owned()]);
            }
        }
        if let Some(service) = &self.principal_service {
            context.insert_default("aws:PrincipalServiceName", vec![service.clone()]);
        }
        Ok(Request {
            principal_arn,
            principal_service: self.principal_service,
            action_lowercase: action.to_lowercase(),
            action,
            resource,
            context,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> RequestBuilder {
        Request::builder()
            .action("s3:GetObject")
            .resource("arn:aws:s3:::b/k")
    }

    #[test]
    fn keys_are_case_insensitive_values_are_not() {
        let request = base()
            .context("S3:Prefix", ["A/"])
            .principal_tag("Tenant-ID", "Acme")
            .build()
            .unwrap();
        let ctx = request.context();
        let cases: &[(&str, Option<&str>)] = &[
            ("s3:prefix", Some("A/")),
            ("S3:PREFIX", Some("A/")),
            ("aws:PrincipalTag/tenant-id", Some("Acme")),
            ("AWS:PRINCIPALTAG/TENANT-ID", Some("Acme")),
            ("aws:PrincipalTag/other", None),
        ];
        for (key, expected) in cases {
            assert_eq!(ctx.get(key).map(|v| v[0].as_str()), *expected, "key {key}");
        }
    }

    #[test]
    fn later_tag_with_same_key_in_other_case_wins() {
        let request = base()
            .principal_tag("team", "a")
            .principal_tag("TEAM", "b")
            .build()
            .unwrap();
        assert_eq!(
            request.context().get("aws:PrincipalTag/Team"),
            Some(&["b".to_owned()][..])
        );
    }

    #[test]
    fn derived_principal_keys() {
        let cases: &[(&str, &str, Option<&str>, Option<&str>)] = &[
            (
                "arn:aws:sts::111122223333:assumed-role/exec/job",
                "arn:aws:iam::111122223333:role/exec",
                Some("111122223333"),
                None,
            ),
            (
                "arn:aws:iam::111122223333:user/eng/alice",
                "arn:aws:iam::111122223333:user/eng/alice",
                Some("111122223333"),
                Some("alice"),
            ),
        ];
        for (arn, principal_arn, account, user) in cases {
            let request = base().principal_arn(*arn).build().unwrap();
            let ctx = request.context();
            let one = |key: &str| ctx.get(key).map(|v| v[0].clone());
            assert_eq!(one("aws:PrincipalArn").as_deref(), Some(*principal_arn));
            assert_eq!(one("aws:PrincipalAccount").as_deref(), *account);
            assert_eq!(one("aws:username").as_deref(), *user);
        }
    }

    #[test]
    fn explicit_context_wins_over_derived() {
        let request = base()
            .principal_arn("arn:aws:iam::1:user/alice")
            .context_value("aws:username", "override")
            .build()
            .unwrap();
        assert_eq!(
            request.context().get("aws:username"),
            Some(&["override".to_owned()][..])
        );
    }

    #[test]
    fn empty_list_is_absent() {
        let request = base()
            .context("aws:TagKeys", Vec::<String>::new())
            .build()
            .unwrap();
        assert!(!request.context().contains_key("aws:TagKeys"));
    }

    #[test]
    fn build_errors() {
        let cases: Vec<(RequestBuilder, RequestError)> = vec![
            (
                Request::builder().resource("r"),
                RequestError::MissingAction,
            ),
            (
                Request::builder().action("s3:GetObject"),
                RequestError::MissingResource,
            ),
        ];
        for (builder, expected) in cases {
            assert_eq!(builder.build().unwrap_err(), expected);
        }
        let err = base().principal_arn("nope").build().unwrap_err();
        assert!(matches!(err, RequestError::InvalidPrincipalArn { .. }));
    }

    #[test]
    fn service_principal() {
        let request = base()
            .principal_service("sagemaker.amazonaws.com")
            .build()
            .unwrap();
        assert_eq!(request.principal_service(), Some("sagemaker.amazonaws.com"));
        assert!(request.context().contains_key("aws:PrincipalServiceName"));
    }
}
