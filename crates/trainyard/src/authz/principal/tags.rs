//! Session and IAM tags: STS's rules for them, and how session tags override role tags.
//! They are what ABAC policies read as `aws:PrincipalTag/<key>`, so every path that creates a
//! principal (AssumeRole, the job principal, `iam.json`) checks them with the same rules.

use std::collections::HashSet;
use std::sync::LazyLock;

use regex::Regex;
use serde::{Deserialize, Serialize};

/// Most session tags one session may carry (STS's limit).
pub const MAX_SESSION_TAGS: usize = 50;

/// The characters of tag keys and values (lengths are checked separately: bounded
/// repetitions of Unicode classes make large automata).
pub(crate) static TAG_CHARS: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[\p{L}\p{Z}\p{N}_.:/=+\-@]*$").expect("the tag pattern is a valid regex")
});

/// Whether `key` is a valid tag key: 1–128 characters of `[\p{L}\p{Z}\p{N}_.:/=+\-@]`.
pub(crate) fn is_tag_key(key: &str) -> bool {
    (1..=128).contains(&key.chars().count()) && TAG_CHARS.is_match(key)
}

/// A session (or IAM) tag, written `{"Key": "...", "Value": "..."}` as in STS and IAM.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct SessionTag {
    /// Tag key; compared case-insensitively.
    pub key: String,
    /// Tag value; case-sensitive.
    pub value: String,
}

impl SessionTag {
    /// A tag.
    pub fn new(key: impl Into<String>, value: impl Into<String>) -> Self {
        SessionTag {
            key: key.into(),
            value: value.into(),
        }
    }
}

/// Checks a list of tags against STS's rules: at most 50, keys of 1–128 characters of
/// `[\p{L}\p{Z}\p{N}_.:/=+\-@]` not starting with `aws:`, values of 0–256 such
/// characters, and no key twice in any case. The message names the offending tag.
pub fn validate_tags(tags: &[SessionTag]) -> Result<(), String> {
    if tags.len() > MAX_SESSION_TAGS {
        return Err(format!(
            "{} tags given: Member must have length less than or equal to {MAX_SESSION_TAGS}",
            tags.len()
        ));
    }
    let mut seen = HashSet::new();
    for (i, tag) in tags.iter().enumerate() {
        let n = i + 1;
        if !is_tag_key(&tag.key) {
            return Err(format!(
                "Value '{}' at 'tags.{n}.member.key' failed to satisfy constraint: Member must have length between 1 and 128 and satisfy regular expression pattern: [\\p{{L}}\\p{{Z}}\\p{{N}}_.:/=+\\-@]+",
                tag.key
            ));
        }
        if tag.key.len() >= 4 && tag.key[..4].eq_ignore_ascii_case("aws:") {
            return Err(format!(
                "Value '{}' at 'tags.{n}.member.key': the prefix aws: is reserved for AWS use",
                tag.key
            ));
        }
        if tag.value.chars().count() > 256 || !TAG_CHARS.is_match(&tag.value) {
            return Err(format!(
                "Value '{}' at 'tags.{n}.member.value' failed to satisfy constraint: Member must have length less than or equal to 256 and satisfy regular expression pattern: [\\p{{L}}\\p{{Z}}\\p{{N}}_.:/=+\\-@]*",
                tag.value
            ));
        }
        if !seen.insert(tag.key.to_lowercase()) {
            return Err(format!(
                "Duplicate tag keys found ('{}'). Please note that Tag keys are case insensitive.",
                tag.key
            ));
        }
    }
    Ok(())
}

/// `base` with every tag of `overrides` applied on top: a key of `overrides` replaces the
/// tag of `base` with the same key in any case (session tags over role tags, explicit tags
/// over incoming transitive ones).
pub fn merge_tags(base: &[SessionTag], overrides: &[SessionTag]) -> Vec<SessionTag> {
    let replaced: HashSet<String> = overrides.iter().map(|t| t.key.to_lowercase()).collect();
    base.iter()
        .filter(|t| !replaced.contains(&t.key.to_lowercase()))
        .chain(overrides)
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(pairs: &[(&str, &str)]) -> Vec<SessionTag> {
        pairs.iter().map(|(k, v)| SessionTag::new(*k, *v)).collect()
    }

    #[test]
    fn tag_rules() {
        assert!(validate_tags(&tags(&[("tenant-id", "acme"), ("cost center", "")])).is_ok());
        let too_many: Vec<SessionTag> = (0..51)
            .map(|i| SessionTag::new(format!("k{i}"), "v"))
            .collect();
        let cases: Vec<(Vec<SessionTag>, &str)> = vec![
            (tags(&[("", "v")]), "tags.1.member.key"),
            (tags(&[("ok", "v"), ("bad*key", "v")]), "tags.2.member.key"),
            (tags(&[(&"k".repeat(129), "v")]), "tags.1.member.key"),
            (tags(&[("k", &"v".repeat(257))]), "tags.1.member.value"),
            (tags(&[("k", "a;b")]), "tags.1.member.value"),
            (tags(&[("AWS:thing", "v")]), "reserved"),
            (
                tags(&[("Tenant", "a"), ("tenant", "b")]),
                "Duplicate tag keys",
            ),
            (too_many, "less than or equal to 50"),
        ];
        for (input, expected) in cases {
            let error = validate_tags(&input).unwrap_err();
            assert!(error.contains(expected), "{input:?}: {error}");
        }
    }

    #[test]
    fn merge_overrides_case_insensitively() {
        let merged = merge_tags(
            &tags(&[("Tenant-Id", "old"), ("team", "ml")]),
            &tags(&[("tenant-id", "new")]),
        );
        assert_eq!(merged, tags(&[("team", "ml"), ("tenant-id", "new")]));
    }
}
