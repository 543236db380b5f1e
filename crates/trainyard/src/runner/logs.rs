//! Capturing a host's output: the log file, the live view, metrics and the failure tail.
//!
//! Every line the training process prints goes to the host's log file (what `trainyard logs`
//! shows, one file per host as SageMaker keeps one log stream per host), to the observer (the
//! CLI prints it live), through the job's `MetricDefinitions` regexes (the last value of each
//! becomes `FinalMetricDataList`), and, for stderr, into a bounded tail used for the failure
//! reason when the algorithm wrote no `/opt/ml/output/failure`.

use std::collections::{BTreeMap, VecDeque};
use std::io::Write;
use std::sync::{Arc, Mutex};

use regex::Regex;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

use crate::db::{MetricValue, now};
use crate::jobs::spec::MetricDefinition;
use crate::runner::Observer;

/// How much stderr is kept for a failure reason.
const TAIL_BYTES: usize = 1024;

/// Last values of the job's metrics, across hosts.
#[derive(Debug)]
pub struct Metrics {
    defs: Vec<(String, Regex)>,
    last: Mutex<BTreeMap<String, MetricValue>>,
}

impl Metrics {
    /// Compiles the definitions (validated at submission, so they compile).
    pub fn new(defs: &[MetricDefinition]) -> Self {
        let defs = defs
            .iter()
            .filter_map(|d| Regex::new(&d.regex).ok().map(|r| (d.name.clone(), r)))
            .collect();
        Metrics {
            defs,
            last: Mutex::new(BTreeMap::new()),
        }
    }

    /// Matches one log line against every definition; the first capture group is the value.
    pub fn observe(&self, line: &str) {
        for (name, re) in &self.defs {
            let Some(caps) = re.captures(line) else {
                continue;
            };
            let Some(value) = caps
                .get(1)
                .and_then(|m| m.as_str().trim().parse::<f64>().ok())
            else {
                continue;
            };
            if !value.is_finite() {
                continue;
            }
            let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
            last.insert(
                name.clone(),
                MetricValue {
                    name: name.clone(),
                    value,
                    timestamp: now(),
                },
            );
        }
    }

    /// The final values, by metric name.
    pub fn values(&self) -> Vec<MetricValue> {
        self.last
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }
}

/// Where one host's lines go.
#[derive(Debug)]
pub struct HostLog {
    host: String,
    file: Mutex<std::fs::File>,
    tail: Mutex<VecDeque<u8>>,
    metrics: Arc<Metrics>,
    observer: Arc<dyn Observer>,
}

impl HostLog {
    /// Opens (appending) the host's log file.
    pub fn open(
        host: &str,
        path: &std::path::Path,
        metrics: Arc<Metrics>,
        observer: Arc<dyn Observer>,
    ) -> std::io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(HostLog {
            host: host.to_string(),
            file: Mutex::new(file),
            tail: Mutex::new(VecDeque::new()),
            metrics,
            observer,
        })
    }

    fn line(&self, line: &str, stderr: bool) {
        {
            let mut f = self.file.lock().unwrap_or_else(|p| p.into_inner());
            let _ = writeln!(f, "{}", format_event(now(), line));
        }
        self.observer.log(&self.host, line);
        self.metrics.observe(line);
        if stderr {
            let mut t = self.tail.lock().unwrap_or_else(|p| p.into_inner());
            t.extend(line.as_bytes());
            t.push_back(b'\n');
            while t.len() > TAIL_BYTES {
                t.pop_front();
            }
        }
    }

    /// The last KiB of stderr, decoded leniently.
    pub fn stderr_tail(&self) -> String {
        let t = self.tail.lock().unwrap_or_else(|p| p.into_inner());
        let bytes: Vec<u8> = t.iter().copied().collect();
        String::from_utf8_lossy(&bytes).trim().to_string()
    }

    /// Reads `reader` to its end, line by line.
    pub async fn pump(self: Arc<Self>, reader: impl AsyncRead + Unpin, stderr: bool) {
        let mut reader = BufReader::new(reader);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    while buf.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                        buf.pop();
                    }
                    self.line(&String::from_utf8_lossy(&buf), stderr);
                }
            }
        }
    }
}

/// One stored log line: `<epoch milliseconds> <line>`. The timestamp lets the API serve log
/// events as CloudWatch Logs does (the SageMaker SDK reads training logs that way).
pub fn format_event(t: f64, line: &str) -> String {
    format!("{} {line}", (t * 1000.0) as i64)
}

/// Splits a stored log line into (epoch milliseconds, text); lines written without a
/// timestamp get 0.
pub fn parse_event(stored: &str) -> (i64, &str) {
    match stored.split_once(' ') {
        Some((ts, rest)) if !ts.is_empty() && ts.bytes().all(|b| b.is_ascii_digit()) => {
            (ts.parse().unwrap_or(0), rest)
        }
        _ if !stored.is_empty() && stored.bytes().all(|b| b.is_ascii_digit()) => {
            (stored.parse().unwrap_or(0), "")
        }
        _ => (0, stored),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip() {
        let s = format_event(1_700_000_000.123, "loss 1 2");
        assert_eq!(parse_event(&s), (1_700_000_000_123, "loss 1 2"));
        assert_eq!(parse_event("1700000000000 "), (1_700_000_000_000, ""));
        assert_eq!(parse_event("legacy line"), (0, "legacy line"));
    }

    #[test]
    fn metrics_keep_the_last_value_of_the_first_group() {
        let m = Metrics::new(&[
            MetricDefinition {
                name: "loss".into(),
                regex: r"loss=([0-9.eE+-]+)".into(),
            },
            MetricDefinition {
                name: "acc".into(),
                regex: r"accuracy: (\S+)".into(),
            },
        ]);
        for l in [
            "epoch 1 loss=0.9",
            "epoch 2 loss=0.5 accuracy: 0.8",
            "no metric here",
            "loss=nan",
        ] {
            m.observe(l);
        }
        let v = m.values();
        assert_eq!(
            v.iter()
                .map(|m| (m.name.as_str(), m.value))
                .collect::<Vec<_>>(),
            [("acc", 0.8), ("loss", 0.5)]
        );
    }
}
