use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use serde_json::{Value, json};
use trainyard_s3::DirStore;

/// A private trainyard installation for one test.
pub struct Home {
    pub home: tempfile::TempDir,
    pub work: tempfile::TempDir,
}

impl Home {
    pub fn new() -> Self {
        Home {
            home: tempfile::tempdir().unwrap(),
            work: tempfile::tempdir().unwrap(),
        }
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_trainyard"));
        c.args(args)
            .current_dir(self.work.path())
            .env("TRAINYARD_HOME", self.home.path())
            .env("TRAINYARD_STOP_GRACE_SECONDS", "2");
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    /// Writes `job` to a file and runs `trainyard train` on it.
    pub fn train(&self, job: &Value) -> Output {
        let path = self
            .work
            .path()
            .join(format!("{}.json", job["TrainingJobName"].as_str().unwrap()));
        std::fs::write(&path, serde_json::to_vec_pretty(job).unwrap()).unwrap();
        self.run(&["train", path.to_str().unwrap()])
    }

    pub fn describe(&self, name: &str) -> Value {
        let out = self.run(&["jobs", "describe", name]);
        assert!(out.status.success(), "describe {name}: {}", text(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// The job's description, or `None` while it does not exist yet.
    pub fn describe_opt(&self, name: &str) -> Option<Value> {
        let out = self.run(&["jobs", "describe", name]);
        out.status
            .success()
            .then(|| serde_json::from_slice(&out.stdout).unwrap())
    }

    /// Stores an object in this installation's embedded store.
    pub fn put(&self, bucket: &str, key: &str, body: &[u8]) {
        use trainyard_s3::ObjectClient;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(self.store().put(
            bucket,
            key,
            trainyard_s3::PutBody::Bytes(bytes::Bytes::copy_from_slice(body)),
        ))
        .unwrap();
    }

    pub fn store(&self) -> DirStore {
        DirStore::embedded(self.home.path().join("store"))
    }

    /// The local file of an object in the embedded store.
    pub fn object(&self, bucket: &str, key: &str) -> PathBuf {
        self.home.path().join("store").join(bucket).join(key)
    }

    /// A data directory in the work dir with the given files.
    pub fn data(&self, dir: &str, files: &[(&str, &[u8])]) -> PathBuf {
        let root = self.work.path().join(dir);
        for (rel, body) in files {
            let p = root.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, body).unwrap();
        }
        root
    }
}

/// stdout and stderr, for assertion messages.
pub fn text(out: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A request running `sh -c script` on the host image, with one `train` channel at `input`.
pub fn job(name: &str, script: &str, input: Option<&str>) -> Value {
    let mut j = json!({
        "TrainingJobName": name,
        "RoleArn": "arn:aws:iam::000000000000:role/trainyard-test",
        "AlgorithmSpecification": {
            "TrainingImage": "host",
            "TrainingInputMode": "File",
            "ContainerEntrypoint": ["sh", "-c", script]
        },
        "OutputDataConfig": {"S3OutputPath": "s3://out/jobs/"},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 1},
        "StoppingCondition": {"MaxRuntimeInSeconds": 120}
    });
    if let Some(uri) = input {
        j["InputDataConfig"] = json!([{
            "ChannelName": "train",
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": uri}}
        }]);
    }
    j
}

/// Entries of a .tar.gz as (path, contents).
pub fn untar(path: &Path) -> Vec<(String, Vec<u8>)> {
    use std::io::Read;
    let f = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(f));
    let mut out = Vec::new();
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        if e.header().entry_type().is_dir() {
            continue;
        }
        let name = e.path().unwrap().to_string_lossy().into_owned();
        let mut body = Vec::new();
        e.read_to_end(&mut body).unwrap();
        out.push((name, body));
    }
    out.sort();
    out
}

/// The text of file `name` among archive entries (from [`untar`]); panics naming what is there.
pub fn file_text(files: &[(String, Vec<u8>)], name: &str) -> String {
    let (_, body) = files.iter().find(|(p, _)| p == name).unwrap_or_else(|| {
        panic!(
            "{name} not among {:?}",
            files.iter().map(|(p, _)| p).collect::<Vec<_>>()
        )
    });
    String::from_utf8(body.clone()).unwrap()
}

pub fn statuses(desc: &Value) -> Vec<String> {
    desc["SecondaryStatusTransitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["Status"].as_str().unwrap().to_string())
        .collect()
}

/// Variables that would point the server or the CLI somewhere else, or sign for it.
pub const FOREIGN_ENV: &[&str] = &[
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "TRAINYARD_STORE",
    "TRAINYARD_EXECUTOR",
    "TRAINYARD_ACCOUNT_ID",
];

/// `trainyard serve` on a free port of loopback, killed when dropped.
pub struct Server {
    child: Child,
    pub url: String,
}

impl Server {
    pub fn start(h: &Home) -> Self {
        let log = std::fs::File::create(h.home.path().join("serve.log")).unwrap();
        let mut cmd = h.cmd(&["serve", "--listen", "127.0.0.1:0", "--capacity", "1"]);
        for name in FOREIGN_ENV {
            cmd.env_remove(name);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let Some(url) = line.trim().strip_prefix("trainyard: listening on ") else {
            let _ = child.kill();
            let log = std::fs::read_to_string(h.home.path().join("serve.log")).unwrap();
            panic!("the server did not start: {line:?}\n{log}");
        };
        Server {
            url: url.to_owned(),
            child,
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
