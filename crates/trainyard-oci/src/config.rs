//! The part of an image's configuration a runtime needs: `docker run` semantics.
//!
//! Read with `oci-spec`'s `ImageConfiguration` (docker's and OCI's config JSON are the same
//! shape for these fields) and kept as plain owned values, so the runtime does not depend on
//! `oci-spec`'s builder types.

use serde::{Deserialize, Serialize};

/// What the image says to run and how.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunConfig {
    /// `ENTRYPOINT`; empty when unset.
    pub entrypoint: Vec<String>,
    /// `CMD`; empty when unset.
    pub cmd: Vec<String>,
    /// `ENV`, in order, split at the first `=`.
    pub env: Vec<(String, String)>,
    /// `WORKDIR`, if set.
    pub working_dir: Option<String>,
    /// `USER` (`name`, `uid`, `uid:gid`, ...), if set.
    pub user: Option<String>,
}

/// What the store needs from a config blob besides the run configuration.
#[derive(Debug)]
pub(crate) struct ParsedConfig {
    pub run: RunConfig,
    pub diff_ids: Vec<String>,
    pub platform: String,
}

pub(crate) fn parse(bytes: &[u8]) -> Result<ParsedConfig, String> {
    let image: oci_spec::image::ImageConfiguration =
        serde_json::from_slice(bytes).map_err(|e| format!("image config does not parse: {e}"))?;
    let mut run = RunConfig::default();
    if let Some(c) = image.config() {
        run.entrypoint = c.entrypoint().clone().unwrap_or_default();
        run.cmd = c.cmd().clone().unwrap_or_default();
        run.env = c
            .env()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|kv| match kv.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (kv, String::new()),
            })
            .collect();
        run.working_dir = c.working_dir().clone().filter(|w| !w.is_empty());
        run.user = c.user().clone().filter(|u| !u.is_empty());
    }
    Ok(ParsedConfig {
        run,
        diff_ids: image.rootfs().diff_ids().clone(),
        platform: format!("{}/{}", image.os(), image.architecture()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_shaped_config() {
        let json = br#"{"architecture":"amd64","os":"linux",
            "config":{"Entrypoint":["train"],"Env":["PATH=/usr/bin","A=b=c","EMPTY"],
                      "WorkingDir":"/opt/ml/code","User":""},
            "rootfs":{"type":"layers","diff_ids":["sha256:aa"]}}"#;
        let p = parse(json).unwrap();
        assert_eq!(p.run.entrypoint, ["train"]);
        assert!(p.run.cmd.is_empty());
        assert_eq!(
            p.run.env,
            [
                ("PATH".into(), "/usr/bin".into()),
                ("A".into(), "b=c".into()),
                ("EMPTY".into(), String::new())
            ]
        );
        assert_eq!(p.run.working_dir.as_deref(), Some("/opt/ml/code"));
        assert_eq!(p.run.user, None);
        assert_eq!(p.diff_ids, ["sha256:aa"]);
        assert_eq!(p.platform, "linux/amd64");
    }
}
