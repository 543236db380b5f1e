//! Amazon Resource Names: parse and display.
//!
//! The evaluator mostly treats ARNs as strings (resource patterns match whole strings,
//! see [`crate::pattern`]), but a few places need the parts: principal matching compares
//! accounts and role names, the request builder derives `aws:PrincipalAccount` from the
//! principal ARN, and `ArnLike` compares the six colon-separated segments one by one.
//! [`Arn`] is that structured view. Parsing is deliberately lenient about the content of
//! each segment (AWS services disagree on what they allow) and strict only about shape.

use std::fmt;
use std::str::FromStr;

/// An Amazon Resource Name: `arn:partition:service:region:account-id:resource`.
///
/// The resource part is kept verbatim and may itself contain `:` and `/`.
///
/// ```
/// use trainyard_iam::Arn;
/// let arn: Arn = "arn:aws:iam::111122223333:role/exec".parse().unwrap();
/// assert_eq!(arn.account(), "111122223333");
/// assert_eq!(arn.resource(), "role/exec");
/// assert_eq!(arn.to_string(), "arn:aws:iam::111122223333:role/exec");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Arn {
    partition: String,
    service: String,
    region: String,
    account: String,
    resource: String,
}

/// Why a string is not an ARN.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ArnError {
    /// The string does not start with `arn:`.
    #[error("`{value}` is not an ARN: it must start with `arn:`")]
    MissingPrefix {
        /// The rejected input.
        value: String,
    },
    /// The string has fewer than six colon-separated segments.
    #[error("`{value}` is not an ARN: expected `arn:partition:service:region:account:resource`")]
    TooFewSegments {
        /// The rejected input.
        value: String,
    },
    /// A segment that must not be empty is empty.
    #[error("`{value}` is not an ARN: the {segment} segment is empty")]
    EmptySegment {
        /// The rejected input.
        value: String,
        /// Which segment is empty (`partition`, `service` or `resource`).
        segment: &'static str,
    },
}

impl Arn {
    /// Builds an ARN from its parts without validation.
    pub fn new(
        partition: impl Into<String>,
        service: impl Into<String>,
        region: impl Into<String>,
        account: impl Into<String>,
        resource: impl Into<String>,
    ) -> Self {
        Self {
            partition: partition.into(),
            service: service.into(),
            region: region.into(),
            account: account.into(),
            resource: resource.into(),
        }
    }

    /// Parses `arn:partition:service:region:account:resource`.
    ///
    /// Partition, service and resource must be non-empty; region and account may be
    /// empty (as in S3 and IAM ARNs).
    pub fn parse(value: &str) -> Result<Self, ArnError> {
        let Some(rest) = value.strip_prefix("arn:") else {
            return Err(ArnError::MissingPrefix {
                value: value.to_owned(),
            });
        };
        let parts: Vec<&str> = rest.splitn(5, ':').collect();
        let [partition, service, region, account, resource] = parts[..] else {
            return Err(ArnError::TooFewSegments {
                value: value.to_owned(),
            });
        };
        for (segment, content) in [
            ("partition", partition),
            ("service", service),
            ("resource", resource),
        ] {
            if content.is_empty() {
                return Err(ArnError::EmptySegment {
                    value: value.to_owned(),
                    segment,
                });
            }
        }
        Ok(Self::new(partition, service, region, account, resource))
    }

    /// The partition, e.g. `aws`.
    pub fn partition(&self) -> &str {
        &self.partition
    }

    /// The service namespace, e.g. `s3` or `iam`.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// The region; empty for global services.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// The account id; empty for S3 buckets and objects.
    pub fn account(&self) -> &str {
        &self.account
    }

    /// Everything after the fifth colon, e.g. `role/path/name` or `bucket/key`.
    pub fn resource(&self) -> &str {
        &self.resource
    }

    /// For an IAM role session (`arn:…:sts::…:assumed-role/ROLE/SESSION`), the role name.
    pub fn assumed_role_name(&self) -> Option<&str> {
        if self.service != "sts" {
            return None;
        }
        let rest = self.resource.strip_prefix("assumed-role/")?;
        let (role, _session) = rest.split_once('/')?;
        Some(role)
    }

    /// For an IAM user (`arn:…:iam::…:user/PATH/NAME`), the user name.
    pub fn user_name(&self) -> Option<&str> {
        if self.service != "iam" {
            return None;
        }
        let rest = self.resource.strip_prefix("user/")?;
        rest.rsplit('/').next().filter(|name| !name.is_empty())
    }

    /// For an IAM role (`arn:…:iam::…:role/PATH/NAME`), the role name.
    pub fn role_name(&self) -> Option<&str> {
        if self.service != "iam" {
            return None;
        }
        let rest = self.resource.strip_prefix("role/")?;
        rest.rsplit('/').next().filter(|name| !name.is_empty())
    }
}

impl FromStr for Arn {
    type Err = ArnError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for Arn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "arn:{}:{}:{}:{}:{}",
            self.partition, self.service, self.region, self.account, self.resource
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_table() {
        let ok: &[(&str, [&str; 5])] = &[
            (
                "arn:aws:s3:::bucket/key/with:colon",
                ["aws", "s3", "", "", "bucket/key/with:colon"],
            ),
            (
                "arn:aws:iam::111122223333:role/path/exec",
                ["aws", "iam", "", "111122223333", "role/path/exec"],
            ),
            (
                "arn:aws-cn:sns:cn-north-1:111122223333:topic",
                ["aws-cn", "sns", "cn-north-1", "111122223333", "topic"],
            ),
        ];
        for (input, [partition, service, region, account, resource]) in ok {
            let arn = Arn::parse(input).unwrap();
            assert_eq!(arn.partition(), *partition);
            assert_eq!(arn.service(), *service);
            assert_eq!(arn.region(), *region);
            assert_eq!(arn.account(), *account);
            assert_eq!(arn.resource(), *resource);
            assert_eq!(arn.to_string(), *input);
        }
    }

    #[test]
    fn parse_errors() {
        let cases: &[(&str, &str)] = &[
            ("s3:::bucket", "must start with `arn:`"),
            ("arn:aws:s3:::", "the resource segment is empty"),
            ("arn:aws:s3", "expected `arn:partition:service"),
            ("arn::s3:::b", "the partition segment is empty"),
            ("arn:aws::::b", "the service segment is empty"),
        ];
        for (input, message) in cases {
            let err = Arn::parse(input).unwrap_err().to_string();
            assert!(err.contains(message), "{input}: {err}");
        }
    }

    #[test]
    fn principal_names() {
        let session = Arn::parse("arn:aws:sts::1:assumed-role/exec/job-1").unwrap();
        assert_eq!(session.assumed_role_name(), Some("exec"));
        let user = Arn::parse("arn:aws:iam::1:user/division/alice").unwrap();
        assert_eq!(user.user_name(), Some("alice"));
        assert_eq!(user.role_name(), None);
        let role = Arn::parse("arn:aws:iam::1:role/service-role/exec").unwrap();
        assert_eq!(role.role_name(), Some("exec"));
        assert_eq!(role.assumed_role_name(), None);
    }
}
