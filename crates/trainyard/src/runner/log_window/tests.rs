use std::cell::Cell;

use super::*;
use crate::runner::logs::format_event;

/// A log in memory that counts the bytes read from it.
struct Counted {
    data: Vec<u8>,
    read: Cell<u64>,
}

impl Counted {
    fn new(data: Vec<u8>) -> Self {
        Counted {
            data,
            read: Cell::new(0),
        }
    }
    /// Bytes read since the last call.
    fn take(&self) -> u64 {
        self.read.replace(0)
    }
}

impl ReadAt for &Counted {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let from = (offset as usize).min(self.data.len());
        let n = buf.len().min(self.data.len() - from);
        buf[..n].copy_from_slice(&self.data[from..from + n]);
        self.read.set(self.read.get() + n as u64);
        Ok(n)
    }
    fn size(&self) -> io::Result<u64> {
        Ok(self.data.len() as u64)
    }
}

/// The answer `GetLogEvents` gave before windows: the whole log read, tokens as indexes into
/// the filtered events. Returns the events, the forward and the backward index.
fn model(
    text: &str,
    anchor: Anchor,
    limit: usize,
    f: &TimeFilter,
) -> (Vec<(i64, String)>, u64, u64) {
    let events: Vec<(i64, &str)> = text
        .lines()
        .map(parse_event)
        .filter(|(t, _)| f.admits(*t))
        .collect();
    let from = match anchor {
        Anchor::Head => 0,
        Anchor::Tail => events.len().saturating_sub(limit),
        Anchor::Forward(n) => (n as usize).min(events.len()),
        Anchor::Backward(n) => (n as usize).saturating_sub(limit),
    };
    let to = (from + limit).min(events.len());
    let page = events[from..to]
        .iter()
        .map(|(t, m)| (*t, m.to_string()))
        .collect();
    (page, to as u64, from as u64)
}

fn pairs(p: &Page) -> Vec<(i64, String)> {
    p.events
        .iter()
        .map(|e| (e.timestamp, e.message.clone()))
        .collect()
}

/// Walks from the head and from the tail, then six tokens forward and six backward, in both
/// the model and the windowed reader, and compares every page.
fn same_walks(text: &str, limit: usize, f: &TimeFilter) {
    let mem = Counted::new(text.as_bytes().to_vec());
    let log = LogFile::open(&mem).unwrap();
    for start in [Anchor::Head, Anchor::Tail] {
        let (m, mf, mb) = model(text, start, limit, f);
        let p = log.page(start, limit, f).unwrap();
        assert_eq!(pairs(&p), m, "{start:?} limit {limit} {f:?}");
        for forward in [true, false] {
            let (mut mt, mut nt) = if forward {
                (mf, p.forward)
            } else {
                (mb, p.backward)
            };
            for step in 0..6 {
                let (ma, na) = if forward {
                    (Anchor::Forward(mt), Anchor::Forward(nt))
                } else {
                    (Anchor::Backward(mt), Anchor::Backward(nt))
                };
                let (m, mf, mb) = model(text, ma, limit, f);
                let p = log.page(na, limit, f).unwrap();
                assert_eq!(
                    pairs(&p),
                    m,
                    "{start:?} then {step} steps {} limit {limit} {f:?}",
                    if forward { "forward" } else { "backward" }
                );
                (mt, nt) = if forward {
                    (mf, p.forward)
                } else {
                    (mb, p.backward)
                };
            }
        }
    }
}

/// A small log: timestamps that repeat and jump, empty messages, unicode, legacy lines.
fn small_log(n: usize, seed: u64) -> String {
    let mut x = seed;
    let mut next = || {
        x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        (x >> 33) as usize
    };
    let mut text = String::new();
    let mut t = 1_700_000_000_000i64;
    for i in 0..n {
        t += (next() % 3) as i64 * 500;
        let msg = match next() % 5 {
            0 => String::new(),
            1 => format!("épisode {i} — loss=0.{}", next() % 100),
            _ => "m".repeat(next() % 40) + &i.to_string(),
        };
        text.push_str(&format_event(t as f64 / 1000.0, &msg));
        text.push('\n');
    }
    text
}

#[test]
fn pages_and_tokens_answer_as_the_whole_log_did() {
    let filters = [
        TimeFilter::default(),
        TimeFilter {
            start: Some(1_700_000_002_000),
            end: None,
        },
        TimeFilter {
            start: None,
            end: Some(1_700_000_005_000),
        },
        TimeFilter {
            start: Some(1_700_000_001_000),
            end: Some(1_700_000_006_000),
        },
    ];
    for (n, seed) in [(0, 1), (1, 2), (2, 3), (7, 4), (40, 5)] {
        let text = small_log(n, seed);
        for limit in [1, 2, 3, 5, 10_000] {
            for f in &filters {
                same_walks(&text, limit, f);
            }
        }
    }
}

#[test]
fn tokens_must_name_a_line_start_and_past_the_end_means_the_end() {
    let text = small_log(5, 9);
    let mem = Counted::new(text.as_bytes().to_vec());
    let log = LogFile::open(&mem).unwrap();
    let f = TimeFilter::default();
    assert!(matches!(
        log.page(Anchor::Forward(3), 10, &f),
        Err(WindowError::BadToken)
    ));
    assert!(matches!(
        log.page(Anchor::Backward(1), 10, &f),
        Err(WindowError::BadToken)
    ));
    let p = log.page(Anchor::Forward(1 << 40), 10, &f).unwrap();
    assert!(p.events.is_empty());
    assert_eq!((p.forward, p.backward), (log.end(), log.end()));
}

#[test]
fn a_line_still_being_written_is_not_an_event_yet() {
    let mut text = small_log(3, 7);
    let whole = text.len() as u64;
    text.push_str("1700000009000 half a li");
    let mem = Counted::new(text.as_bytes().to_vec());
    let log = LogFile::open(&mem).unwrap();
    assert_eq!(log.end(), whole);
    let p = log.page(Anchor::Head, 100, &TimeFilter::default()).unwrap();
    assert_eq!(p.events.len(), 3);
    assert_eq!(p.forward, whole);
}

/// About 30 MB: short lines, and every 500th a 200 KiB one.
fn big_log() -> String {
    let mut text = String::with_capacity(32 << 20);
    let mut i = 0u64;
    while text.len() < 30 << 20 {
        let msg = if i % 500 == 499 {
            format!("{i} {}", "w".repeat(200 << 10))
        } else {
            format!(
                "step {i} loss={} {}",
                i % 97,
                "p".repeat((i % 7 * 50) as usize)
            )
        };
        text.push_str(&format_event(1_700_000_000.0 + i as f64 / 10.0, &msg));
        text.push('\n');
        i += 1;
    }
    text
}

#[test]
fn windows_of_a_30_mb_log_read_a_bounded_number_of_bytes() {
    let text = big_log();
    let mem = Counted::new(text.as_bytes().to_vec());
    let log = LogFile::open(&mem).unwrap();
    assert!(mem.take() <= CHUNK as u64, "opening reads the tail only");
    let f = TimeFilter::default();
    // A window of four events reads a few chunks, however far into the log it is.
    let bound = 4 * MAX_LINE as u64 + 4 * CHUNK as u64;
    let head = log.page(Anchor::Head, 4, &f).unwrap();
    assert_eq!(pairs(&head), model(&text, Anchor::Head, 4, &f).0);
    assert!(mem.take() <= bound);
    let tail = log.page(Anchor::Tail, 4, &f).unwrap();
    let (m, _, model_back) = model(&text, Anchor::Tail, 4, &f);
    assert_eq!(pairs(&tail), m);
    assert!(mem.take() <= bound);
    // Ten pages forward from the head and ten backward from the tail, against the model.
    let (mut nt, mut mt) = (head.forward, 4);
    for _ in 0..10 {
        let p = log.page(Anchor::Forward(nt), 4, &f).unwrap();
        assert!(mem.take() <= bound);
        let (m, mf, _) = model(&text, Anchor::Forward(mt), 4, &f);
        assert_eq!(pairs(&p), m);
        (nt, mt) = (p.forward, mf);
    }
    let (mut nt, mut mt) = (tail.backward, model_back);
    for _ in 0..10 {
        let p = log.page(Anchor::Backward(nt), 4, &f).unwrap();
        assert!(mem.take() <= bound);
        let (m, _, mb) = model(&text, Anchor::Backward(mt), 4, &f);
        assert_eq!(pairs(&p), m);
        (nt, mt) = (p.backward, mb);
    }
    // With no limit a page stops at about 1 MB, as CloudWatch's does.
    let all = log.page(Anchor::Tail, 10_000, &f).unwrap();
    let stored: u64 = all.events.iter().map(Event::stored_bytes).sum();
    assert!(stored <= PAGE_BYTES, "{stored}");
    assert!(all.events.len() > 100);
    // Found backward, then read: each byte of the page twice, at most.
    let read = mem.take();
    assert!(
        read <= 2 * (PAGE_BYTES + MAX_LINE as u64 + CHUNK as u64),
        "{read}"
    );
    assert_eq!(
        all.events.last().map(|e| e.message.clone()),
        text.lines().last().map(|l| parse_event(l).1.to_string())
    );
    let (first, last) = log.first_and_last().unwrap().unwrap();
    assert!(mem.take() <= 2 * CHUNK as u64 + 64);
    assert_eq!(first, 1_700_000_000_000);
    assert_eq!(last, parse_event(text.lines().last().unwrap()).0);
}

#[test]
fn a_line_longer_than_an_event_from_an_older_file_is_cut_when_read() {
    let mut text = small_log(2, 3);
    let long = format_event(1_700_000_100.0, &"L".repeat(3 * MAX_LINE));
    text.push_str(&long);
    text.push('\n');
    text.push_str(&small_log(2, 4));
    let mem = Counted::new(text.as_bytes().to_vec());
    let log = LogFile::open(&mem).unwrap();
    let f = TimeFilter::default();
    let p = log.page(Anchor::Head, 10, &f).unwrap();
    assert_eq!(p.events.len(), 5);
    assert_eq!(p.events[2].timestamp, 1_700_000_100_000);
    assert!(p.events[2].message.len() < MAX_LINE);
    assert!(p.events[2].message.chars().all(|c| c == 'L'));
    assert_eq!(pairs(&p)[3..], model(&text, Anchor::Head, 10, &f).0[3..]);
    let back = log.page(Anchor::Tail, 3, &f).unwrap();
    assert_eq!(back.events.len(), 3);
    assert_eq!(back.events[0].timestamp, 1_700_000_100_000);
}
