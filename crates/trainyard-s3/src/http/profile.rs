//! A small reader for the AWS shared configuration files (`~/.aws/credentials` and
//! `~/.aws/config`).
//!
//! Why our own: trainyard needs only static keys, a region and an endpoint from a named profile,
//! and the full `aws-config` crate (SSO, IMDS, STS web identity, process credentials) would
//! more than double the dependency tree of this crate. The format is a plain ini dialect:
//!
//! * `[name]` sections in the credentials file, `[default]` and `[profile name]` in the config
//!   file (other section kinds such as `[sso-session x]` and `[services x]` are ignored);
//! * `key = value` lines; whole-line comments start with `#` or `;`;
//! * a key with an empty value followed by indented `key = value` lines is a sub-section
//!   (`s3 =` then `  addressing_style = path`); its keys are stored as `s3.addressing_style`.
//!
//! Keys are matched case-insensitively, as the AWS CLI does.

use std::collections::HashMap;

/// The settings of one profile, merged from both files.
pub(crate) type Profile = HashMap<String, String>;

/// Which of the two files a text comes from; they name profile sections differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FileKind {
    /// `~/.aws/credentials`: `[name]`.
    Credentials,
    /// `~/.aws/config`: `[default]` or `[profile name]`.
    Config,
}

/// Parses one file into profiles by name.
pub(crate) fn parse(text: &str, kind: FileKind) -> HashMap<String, Profile> {
    let mut profiles: HashMap<String, Profile> = HashMap::new();
    // The profile the following lines belong to; `None` inside ignored sections.
    let mut current: Option<String> = None;
    // The open sub-section key (`s3` after `s3 =`), if any.
    let mut sub: Option<String> = None;
    for raw in text.lines() {
        let indented = raw.starts_with([' ', '\t']);
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            sub = None;
            current = section_profile(name.trim(), kind);
            if let Some(p) = &current {
                profiles.entry(p.clone()).or_default();
            }
            continue;
        }
        let Some(profile) = current.as_ref().and_then(|p| profiles.get_mut(p)) else {
            continue;
        };
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_string());
        if indented {
            if let Some(parent) = &sub {
                profile.insert(format!("{parent}.{k}"), v);
            }
            continue;
        }
        if v.is_empty() {
            sub = Some(k);
        } else {
            sub = None;
            profile.insert(k, v);
        }
    }
    profiles
}

/// The profile a section header names, or `None` for sections that are not profiles.
fn section_profile(header: &str, kind: FileKind) -> Option<String> {
    match kind {
        FileKind::Credentials => Some(header.to_string()),
        FileKind::Config => {
            if header == "default" {
                Some(header.to_string())
            } else {
                let rest = header.strip_prefix("profile")?;
                rest.starts_with([' ', '\t'])
                    .then(|| rest.trim().to_string())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_credentials_sections() {
        let text = "# comment\n[default]\naws_access_key_id = AKIA1\naws_secret_access_key=s1\n\n\
                    [dev]\nAWS_ACCESS_KEY_ID = AKIA2\naws_secret_access_key = s2\n\
                    aws_session_token = t2\n";
        let p = parse(text, FileKind::Credentials);
        assert_eq!(p["default"]["aws_access_key_id"], "AKIA1");
        assert_eq!(p["default"]["aws_secret_access_key"], "s1");
        assert_eq!(p["dev"]["aws_access_key_id"], "AKIA2");
        assert_eq!(p["dev"]["aws_session_token"], "t2");
    }

    #[test]
    fn config_file_needs_the_profile_prefix_and_keeps_sub_sections() {
        let text = "[default]\nregion = eu-west-1\n\
                    [profile dev]\nregion = us-west-2\ns3 =\n  addressing_style = path\n  \
                    endpoint_url = http://127.0.0.1:3900\nendpoint_url = http://x\n\
                    [sso-session corp]\nsso_region = us-east-1\n\
                    [dev2]\nregion = nowhere\n; last\n";
        let p = parse(text, FileKind::Config);
        assert_eq!(p["default"]["region"], "eu-west-1");
        assert_eq!(p["dev"]["region"], "us-west-2");
        assert_eq!(p["dev"]["s3.addressing_style"], "path");
        assert_eq!(p["dev"]["s3.endpoint_url"], "http://127.0.0.1:3900");
        assert_eq!(p["dev"]["endpoint_url"], "http://x");
        assert!(!p.contains_key("corp"));
        assert!(!p.contains_key("sso-session corp"));
        assert!(!p.contains_key("dev2"));
    }
}
