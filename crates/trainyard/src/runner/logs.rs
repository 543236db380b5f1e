//! Capturing a host's output: the log file, the live view, metrics and the failure tail.
//!
//! Every line the training process prints goes to the host's log file (what `trainyard logs`
//! shows, one file per host as SageMaker keeps one log stream per host), to the observer (the
//! CLI prints it live), through the job's `MetricDefinitions` regexes (the last value of each
//! becomes `FinalMetricDataList`), and, for stderr, into a bounded tail used for the failure
//! reason when the algorithm wrote no `/opt/ml/output/failure`.
//!
//! A line is one CloudWatch log event, and CloudWatch takes at most 256 KiB per event (26 bytes
//! of which are overhead). So a longer line, or a stream that never prints a newline, is cut
//! into several events of at most [`MAX_EVENT_BYTES`] bytes of UTF-8 each, at character
//! boundaries, nothing dropped; a pump never holds more than one such piece of a stream, so a
//! job printing 256 MiB without a newline costs the server no more than printing 256 KiB.

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

/// The longest message of one stored event: CloudWatch's 256 KiB event limit less its 26
/// bytes of per-event overhead. Longer lines become several events.
pub const MAX_EVENT_BYTES: usize = 256 * 1024 - 26;

/// The largest `i <= at` that is a character boundary of `s`.
fn floor_boundary(s: &str, at: usize) -> usize {
    if at >= s.len() {
        return s.len();
    }
    let mut i = at;
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Decodes a prefix of `raw` leniently (invalid bytes become U+FFFD) into at most `cap`
/// bytes of UTF-8; returns the text and how many bytes of `raw` it stands for. Unless
/// `complete`, an incomplete character at the end of `raw` is left for the next call.
fn decode_capped(raw: &[u8], cap: usize, complete: bool) -> (String, usize) {
    let mut out = String::new();
    let mut i = 0;
    while i < raw.len() {
        let (valid, bad) = match std::str::from_utf8(&raw[i..]) {
            Ok(s) => (s, None),
            Err(e) => (
                std::str::from_utf8(&raw[i..i + e.valid_up_to()]).unwrap_or_default(),
                Some(e.error_len()),
            ),
        };
        let k = floor_boundary(valid, cap - out.len());
        out.push_str(&valid[..k]);
        i += k;
        if k < valid.len() {
            break;
        }
        match bad {
            None => break,
            Some(len) => {
                let len = match len {
                    Some(n) => n,
                    None if complete => raw.len() - i,
                    None => break,
                };
                if out.len() + '\u{FFFD}'.len_utf8() > cap {
                    break;
                }
                out.push('\u{FFFD}');
                i += len;
            }
        }
    }
    (out, i)
}

/// Cuts a byte stream into log events: one per line, and a line longer than `cap` bytes into
/// pieces of at most `cap`. Holds at most `cap` bytes between calls.
#[derive(Debug)]
pub struct LineSplitter {
    cap: usize,
    pending: Vec<u8>,
    /// Pieces of the current line were already given out.
    continued: bool,
}

impl LineSplitter {
    /// A splitter cutting at `cap` bytes (at least 4, one character).
    pub fn new(cap: usize) -> Self {
        LineSplitter {
            cap: cap.max(4),
            pending: Vec::new(),
            continued: false,
        }
    }

    /// Bytes held for the current line.
    pub fn held(&self) -> usize {
        self.pending.len()
    }

    /// Takes `bytes`; `emit(text, ends_line)` receives every event completed by them.
    pub fn feed(&mut self, mut bytes: &[u8], emit: &mut impl FnMut(&str, bool)) {
        while !bytes.is_empty() {
            let newline = bytes.iter().position(|b| *b == b'\n');
            let mut part = &bytes[..newline.unwrap_or(bytes.len())];
            bytes = &bytes[newline.map_or(bytes.len(), |i| i + 1)..];
            while !part.is_empty() {
                let k = (self.cap - self.pending.len()).min(part.len());
                self.pending.extend_from_slice(&part[..k]);
                part = &part[k..];
                if self.pending.len() == self.cap {
                    let (text, used) = decode_capped(&self.pending, self.cap, false);
                    emit(&text, false);
                    self.pending.drain(..used);
                    self.continued = true;
                }
            }
            if newline.is_some() {
                self.end_line(emit);
            }
        }
    }

    /// The stream ended: what is held becomes the last event.
    pub fn finish(&mut self, emit: &mut impl FnMut(&str, bool)) {
        if !self.pending.is_empty() {
            self.end_line(emit);
        }
    }

    fn end_line(&mut self, emit: &mut impl FnMut(&str, bool)) {
        while self.pending.last() == Some(&b'\r') {
            self.pending.pop();
        }
        if self.pending.is_empty() && !self.continued {
            emit("", true);
        }
        while !self.pending.is_empty() {
            let (text, used) = decode_capped(&self.pending, self.cap, true);
            self.pending.drain(..used);
            emit(&text, self.pending.is_empty());
        }
        self.continued = false;
    }
}

/// How many values of one metric the time series keeps; past it the oldest are dropped (the
/// final value is kept apart, so `FinalMetricDataList` never loses it).
pub const MAX_SERIES_POINTS: usize = 10_000;

/// The job's metrics, across hosts: the last value of each (`FinalMetricDataList`) and its
/// time series (CloudWatch `GetMetricStatistics`), at most [`MAX_SERIES_POINTS`] values each.
#[derive(Debug)]
pub struct Metrics {
    defs: Vec<(String, Regex)>,
    last: Mutex<BTreeMap<String, MetricValue>>,
    series: Mutex<BTreeMap<String, VecDeque<MetricValue>>>,
    /// How many values have been observed; tells a periodic writer whether anything changed.
    observed: std::sync::atomic::AtomicU64,
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
            series: Mutex::new(BTreeMap::new()),
            observed: std::sync::atomic::AtomicU64::new(0),
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
            let point = MetricValue {
                name: name.clone(),
                value,
                timestamp: now(),
            };
            {
                let mut series = self.series.lock().unwrap_or_else(|p| p.into_inner());
                let points = series.entry(name.clone()).or_default();
                if points.len() == MAX_SERIES_POINTS {
                    points.pop_front();
                }
                points.push_back(point.clone());
            }
            let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
            last.insert(name.clone(), point);
            self.observed
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// How many values have been observed so far (never decreases).
    pub fn observed(&self) -> u64 {
        self.observed.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Every value kept, by metric name then in the order seen.
    pub fn series(&self) -> Vec<MetricValue> {
        self.series
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .flatten()
            .cloned()
            .collect()
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
    path: std::path::PathBuf,
    file: Mutex<std::fs::File>,
    /// The first failed write, when it failed because the disk is full: the host then fails
    /// with it rather than train on without a log ([`HostLog::write_failure`]).
    write_failure: Mutex<Option<crate::jobs::failure::FailureReason>>,
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
            path: path.to_path_buf(),
            file: Mutex::new(file),
            write_failure: Mutex::new(None),
            tail: Mutex::new(VecDeque::new()),
            metrics,
            observer,
        })
    }

    fn line(&self, line: &str, stderr: bool, ends_line: bool) {
        {
            // One write per event, newline included: a reader never sees half a line as whole.
            let mut event = format_event(now(), line);
            event.push('\n');
            let mut f = self.file.lock().unwrap_or_else(|p| p.into_inner());
            if let Err(e) = f.write_all(event.as_bytes()) {
                if crate::jobs::failure::is_disk_full(&e) {
                    let mut failure = self.write_failure.lock().unwrap_or_else(|p| p.into_inner());
                    failure.get_or_insert_with(|| {
                        crate::jobs::failure::FailureReason::disk_full(format!(
                            "writing the training log of {} ({}): {e}",
                            self.host,
                            self.path.display()
                        ))
                    });
                }
            }
        }
        self.observer.log(&self.host, line);
        self.metrics.observe(line);
        if stderr {
            let mut t = self.tail.lock().unwrap_or_else(|p| p.into_inner());
            let bytes = line.as_bytes();
            t.extend(&bytes[bytes.len().saturating_sub(TAIL_BYTES)..]);
            if ends_line {
                t.push_back(b'\n');
            }
            let excess = t.len().saturating_sub(TAIL_BYTES);
            t.drain(..excess);
        }
    }

    /// Why the log could not be written, when the disk was full.
    pub fn write_failure(&self) -> Option<crate::jobs::failure::FailureReason> {
        self.write_failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The last KiB of stderr, decoded leniently.
    pub fn stderr_tail(&self) -> String {
        let t = self.tail.lock().unwrap_or_else(|p| p.into_inner());
        let bytes: Vec<u8> = t.iter().copied().collect();
        String::from_utf8_lossy(&bytes).trim().to_string()
    }

    /// Reads `reader` to its end, line by line, lines cut at [`MAX_EVENT_BYTES`].
    pub async fn pump(self: Arc<Self>, reader: impl AsyncRead + Unpin, stderr: bool) {
        let mut reader = BufReader::new(reader);
        let mut lines = LineSplitter::new(MAX_EVENT_BYTES);
        let mut emit = |text: &str, ends: bool| self.line(text, stderr, ends);
        loop {
            let n = match reader.fill_buf().await {
                Ok([]) | Err(_) => break,
                Ok(chunk) => {
                    lines.feed(chunk, &mut emit);
                    chunk.len()
                }
            };
            reader.consume(n);
        }
        lines.finish(&mut emit);
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

    /// Feeds `input` in chunks of `step` bytes; returns the events and the most ever held.
    fn split(input: &[u8], cap: usize, step: usize) -> (Vec<(String, bool)>, usize) {
        let mut s = LineSplitter::new(cap);
        let mut out = Vec::new();
        let mut held = 0;
        for chunk in input.chunks(step) {
            s.feed(chunk, &mut |t: &str, e| out.push((t.to_string(), e)));
            held = held.max(s.held());
        }
        s.finish(&mut |t: &str, e| out.push((t.to_string(), e)));
        (out, held)
    }

    #[test]
    fn lines_are_cut_at_the_event_limit_and_nothing_is_lost() {
        // 1 MiB without a newline, in small and large reads.
        let long = "x".repeat(1 << 20);
        for step in [8192, 1 << 20] {
            let input = format!("{long}\nshort\r\n\nlast");
            let (events, held) = split(input.as_bytes(), MAX_EVENT_BYTES, step);
            assert!(held <= MAX_EVENT_BYTES, "held {held}");
            let texts: Vec<&str> = events.iter().map(|(t, _)| t.as_str()).collect();
            assert_eq!(
                texts.len(),
                5 + 3,
                "{:?}",
                events
                    .iter()
                    .map(|(t, e)| (t.len(), *e))
                    .collect::<Vec<_>>()
            );
            assert!(
                events[..4]
                    .iter()
                    .all(|(t, e)| t.len() == MAX_EVENT_BYTES && !e)
            );
            assert_eq!(events[4].0.len(), (1 << 20) - 4 * MAX_EVENT_BYTES);
            assert!(events[4].1, "the last piece ends the line");
            assert_eq!(texts[..5].concat(), long);
            assert_eq!(&texts[5..], ["short", "", "last"]);
        }
    }

    #[test]
    fn cuts_fall_on_character_boundaries_and_bad_bytes_are_replaced() {
        // Three-byte characters against a cap of 10: pieces of 9 bytes.
        let text = "€".repeat(10);
        let (events, held) = split(text.as_bytes(), 10, 1);
        assert!(held <= 10);
        assert!(events.iter().all(|(t, _)| t.len() <= 10));
        assert_eq!(
            events.iter().map(|(t, _)| t.as_str()).collect::<String>(),
            text
        );
        // Invalid bytes grow when replaced; the cap still holds.
        let (events, _) = split(&[0xff; 40], 10, 7);
        assert!(events.iter().all(|(t, _)| t.len() <= 10));
        assert_eq!(
            events.iter().map(|(t, _)| t.chars().count()).sum::<usize>(),
            40
        );
        // A character cut by the end of the stream is replaced, not dropped silently.
        let (events, _) = split(&"é".as_bytes()[..1], 10, 1);
        assert_eq!(events, [("\u{FFFD}".to_string(), true)]);
    }

    #[tokio::test]
    async fn a_pump_stores_a_newline_free_stream_as_capped_events() {
        #[derive(Debug)]
        struct Quiet;
        impl Observer for Quiet {
            fn phase(&self, _: &crate::db::JobRecord, _: &str) {}
            fn log(&self, _: &str, _: &str) {}
            fn info(&self, _: &str) {}
        }
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("algo-1.log");
        let log = Arc::new(
            HostLog::open(
                "algo-1",
                &path,
                Arc::new(Metrics::new(&[])),
                Arc::new(Quiet),
            )
            .unwrap(),
        );
        let big = vec![b'a'; 3 * MAX_EVENT_BYTES + 5];
        log.clone().pump(&big[..], true).await;
        let stored = std::fs::read_to_string(&path).unwrap();
        let lens: Vec<usize> = stored.lines().map(|l| parse_event(l).1.len()).collect();
        assert_eq!(lens, [MAX_EVENT_BYTES, MAX_EVENT_BYTES, MAX_EVENT_BYTES, 5]);
        assert_eq!(log.stderr_tail(), "a".repeat(TAIL_BYTES - 1));
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
        assert_eq!(
            m.series()
                .iter()
                .map(|m| (m.name.as_str(), m.value))
                .collect::<Vec<_>>(),
            [("acc", 0.8), ("loss", 0.9), ("loss", 0.5)]
        );
    }

    #[test]
    fn the_metric_series_keeps_the_newest_values_within_its_bound() {
        let m = Metrics::new(&[MetricDefinition {
            name: "step".into(),
            regex: r"step=(\d+)".into(),
        }]);
        for i in 0..MAX_SERIES_POINTS + 5 {
            m.observe(&format!("step={i}"));
        }
        let series = m.series();
        assert_eq!(series.len(), MAX_SERIES_POINTS);
        assert_eq!(series[0].value, 5.0);
        assert_eq!(series.last().unwrap().value, (MAX_SERIES_POINTS + 4) as f64);
        assert_eq!(m.values()[0].value, (MAX_SERIES_POINTS + 4) as f64);
    }
}
