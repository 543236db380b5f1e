//! Reading a window of a stored host log without reading the log.
//!
//! `GetLogEvents` asks for a page at the head, at the tail, or next to a token; a job controls
//! how large its log grows, so the server must not read the whole file to answer. Positions
//! are byte offsets of line starts (tokens carry them), pages are read forward or backward in
//! chunks of [`CHUNK`] bytes, and a page holds at most `limit` events and about [`PAGE_BYTES`]
//! of them, as CloudWatch's 1 MB response limit has it. So the bytes held per call depend on
//! the page asked for, never on the log's size, and so do the bytes read (plus, with
//! `startTime`/`endTime`, the lines the filter skips). Only complete lines (ending in a
//! newline) are events: a line being written appears once it is whole.

use std::io;

use crate::runner::logs::{MAX_EVENT_BYTES, parse_event};

/// Read size.
pub const CHUNK: usize = 64 * 1024;
/// The longest stored line kept whole (an event, its timestamp and newline); longer lines,
/// which only files written before events were capped hold, are cut when read.
pub const MAX_LINE: usize = MAX_EVENT_BYTES + 32;
/// CloudWatch answers at most 1 MB of events per `GetLogEvents`; a page stops before the
/// event that would pass this many stored bytes (it always holds at least one event).
pub const PAGE_BYTES: u64 = 1 << 20;

/// Positional reads (a file, or a wrapper that counts what is read).
pub trait ReadAt {
    /// Reads into `buf` from `offset`; 0 at the end.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    /// The current length.
    fn size(&self) -> io::Result<u64>;
}

impl ReadAt for std::fs::File {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        std::os::unix::fs::FileExt::read_at(self, buf, offset)
    }
    fn size(&self) -> io::Result<u64> {
        Ok(self.metadata()?.len())
    }
}

/// Fills `buf` from `offset` (short only at the end).
fn read_full(r: &impl ReadAt, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read_at(&mut buf[filled..], offset + filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// One stored event.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Offset of its line.
    pub start: u64,
    /// Offset of the next line.
    pub next: u64,
    /// Epoch milliseconds.
    pub timestamp: i64,
    /// The text.
    pub message: String,
}

impl Event {
    fn parse(start: u64, next: u64, line: &[u8]) -> Self {
        let text = String::from_utf8_lossy(line);
        let (timestamp, message) = parse_event(&text);
        Event {
            start,
            next,
            timestamp,
            message: message.to_string(),
        }
    }

    fn stored_bytes(&self) -> u64 {
        (self.next - self.start).min(MAX_LINE as u64)
    }
}

/// `startTime` (inclusive) and `endTime` (exclusive), epoch milliseconds.
#[derive(Debug, Clone, Copy, Default)]
pub struct TimeFilter {
    /// Events from this time on.
    pub start: Option<i64>,
    /// Events before this time.
    pub end: Option<i64>,
}

impl TimeFilter {
    fn admits(&self, t: i64) -> bool {
        self.start.is_none_or(|s| t >= s) && self.end.is_none_or(|e| t < e)
    }
    fn is_open(&self) -> bool {
        self.start.is_none() && self.end.is_none()
    }
}

/// Where a page starts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Anchor {
    /// The first events (`startFromHead`).
    Head,
    /// The last events (no token, no `startFromHead`).
    Tail,
    /// Events from this offset on (`f/` token).
    Forward(u64),
    /// Events before this offset (`b/` token).
    Backward(u64),
}

/// One page and the offsets of its tokens.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    /// The events, oldest first.
    pub events: Vec<Event>,
    /// `nextForwardToken`.
    pub forward: u64,
    /// `nextBackwardToken`.
    pub backward: u64,
}

/// A token that names no line start of the stream.
#[derive(Debug, thiserror::Error)]
pub enum WindowError {
    /// The offset is not where a line starts.
    #[error("The specified nextToken is invalid.")]
    BadToken,
    /// Reading the log failed.
    #[error("reading the log: {0}")]
    Io(#[from] io::Error),
}

/// A stored log, up to its last complete line at the time it was opened.
#[derive(Debug)]
pub struct LogFile<R> {
    r: R,
    /// Offset just past the last newline.
    end: u64,
}

impl<R: ReadAt> LogFile<R> {
    /// Opens `r`, finding the end of its last complete line (reading only the unfinished
    /// tail).
    pub fn open(r: R) -> io::Result<Self> {
        let len = r.size()?;
        let mut hi = len;
        let mut buf = vec![0u8; CHUNK];
        let end = loop {
            if hi == 0 {
                break 0;
            }
            let lo = hi.saturating_sub(CHUNK as u64);
            let n = read_full(&r, &mut buf[..(hi - lo) as usize], lo)?;
            match buf[..n].iter().rposition(|b| *b == b'\n') {
                Some(i) => break lo + i as u64 + 1,
                None => hi = lo,
            }
        };
        Ok(LogFile { r, end })
    }

    /// Offset just past the last complete line.
    pub fn end(&self) -> u64 {
        self.end
    }

    /// Whether a line starts at `pos` (or `pos` is the end).
    fn at_line_start(&self, pos: u64) -> io::Result<bool> {
        if pos == 0 || pos == self.end {
            return Ok(true);
        }
        let mut b = [0u8; 1];
        Ok(read_full(&self.r, &mut b, pos - 1)? == 1 && b[0] == b'\n')
    }

    /// A token's offset, checked: past the end means the end (no events yet).
    fn position(&self, pos: u64) -> Result<u64, WindowError> {
        let pos = pos.min(self.end);
        if self.at_line_start(pos)? {
            Ok(pos)
        } else {
            Err(WindowError::BadToken)
        }
    }

    /// The events from `pos` on.
    fn forward(&self, pos: u64) -> Forward<'_, R> {
        Forward {
            log: self,
            pos,
            read: pos,
            buf: Vec::new(),
            head: 0,
        }
    }

    /// The line `start..next`, cut at [`MAX_LINE`].
    fn event_at(&self, start: u64, next: u64) -> io::Result<Event> {
        let len = ((next - start - 1) as usize).min(MAX_LINE);
        let mut buf = vec![0u8; len];
        let n = read_full(&self.r, &mut buf, start)?;
        buf.truncate(n);
        Ok(Event::parse(start, next, &buf))
    }

    /// The timestamp of the line at `start..next`, from its first bytes.
    fn timestamp_at(&self, start: u64, next: u64) -> io::Result<i64> {
        let mut buf = [0u8; 24];
        let len = ((next - start - 1) as usize).min(buf.len());
        let n = read_full(&self.r, &mut buf[..len], start)?;
        Ok(parse_event(&String::from_utf8_lossy(&buf[..n])).0)
    }

    /// A page of at most `limit` events admitted by `filter`, as `GetLogEvents` answers.
    pub fn page(
        &self,
        anchor: Anchor,
        limit: usize,
        filter: &TimeFilter,
    ) -> Result<Page, WindowError> {
        let limit = limit.max(1);
        let before = match anchor {
            Anchor::Head => return Ok(self.forward_page(0, limit, filter)?),
            Anchor::Forward(p) => {
                let p = self.position(p)?;
                return Ok(self.forward_page(p, limit, filter)?);
            }
            Anchor::Tail => self.end,
            Anchor::Backward(p) => self.position(p)?,
        };
        // The `limit` events before `before`, newest first; fewer than `limit` before it at
        // all means the page is the stream's first `limit` (a backward token never moves
        // before the start).
        let mut lines = Backward::new(self, before);
        let mut found: Vec<(u64, u64)> = Vec::new();
        let mut bytes = 0;
        let mut next = before;
        while found.len() < limit {
            let Some(start) = lines.next_start()? else {
                return Ok(self.forward_page(0, limit, filter)?);
            };
            let (line, line_next) = (start, next);
            next = start;
            if !filter.is_open() && !filter.admits(self.timestamp_at(line, line_next)?) {
                continue;
            }
            let size = (line_next - line).min(MAX_LINE as u64);
            if !found.is_empty() && bytes + size > PAGE_BYTES {
                break;
            }
            bytes += size;
            found.push((line, line_next));
        }
        let events = found
            .iter()
            .rev()
            .map(|(s, n)| self.event_at(*s, *n))
            .collect::<io::Result<Vec<_>>>()?;
        Ok(Page {
            forward: events.last().map_or(before, |e| e.next),
            backward: events.first().map_or(before, |e| e.start),
            events,
        })
    }

    fn forward_page(&self, from: u64, limit: usize, filter: &TimeFilter) -> io::Result<Page> {
        let mut lines = self.forward(from);
        let mut events: Vec<Event> = Vec::new();
        let mut bytes = 0;
        while events.len() < limit {
            let Some(e) = lines.next_event()? else { break };
            if !filter.admits(e.timestamp) {
                continue;
            }
            if !events.is_empty() && bytes + e.stored_bytes() > PAGE_BYTES {
                break;
            }
            bytes += e.stored_bytes();
            events.push(e);
        }
        Ok(Page {
            forward: events.last().map_or(from, |e| e.next),
            backward: events.first().map_or(from, |e| e.start),
            events,
        })
    }

    /// The timestamps of the first and the last event, if any.
    pub fn first_and_last(&self) -> io::Result<Option<(i64, i64)>> {
        let Some(first) = self.forward(0).next_event()? else {
            return Ok(None);
        };
        let last = match Backward::new(self, self.end).next_start()? {
            Some(start) => self.timestamp_at(start, self.end)?,
            None => first.timestamp,
        };
        Ok(Some((first.timestamp, last)))
    }
}

/// Lines forward from a line start, read in chunks.
struct Forward<'a, R> {
    log: &'a LogFile<R>,
    /// File offset of `buf[head]`.
    pos: u64,
    /// Next offset to read.
    read: u64,
    buf: Vec<u8>,
    head: usize,
}

impl<R: ReadAt> Forward<'_, R> {
    /// Reads up to a chunk more; false at the end.
    fn fill(&mut self) -> io::Result<bool> {
        if self.read >= self.log.end {
            return Ok(false);
        }
        self.buf.drain(..self.head);
        self.head = 0;
        let want = CHUNK.min((self.log.end - self.read) as usize);
        let old = self.buf.len();
        self.buf.resize(old + want, 0);
        let n = read_full(&self.log.r, &mut self.buf[old..], self.read)?;
        self.buf.truncate(old + n);
        self.read += n as u64;
        Ok(n > 0)
    }

    fn next_event(&mut self) -> io::Result<Option<Event>> {
        let mut searched = 0;
        loop {
            let pending = &self.buf[self.head..];
            if let Some(i) = pending[searched..].iter().position(|b| *b == b'\n') {
                let i = searched + i;
                let e = Event::parse(self.pos, self.pos + i as u64 + 1, &pending[..i]);
                self.head += i + 1;
                self.pos = e.next;
                return Ok(Some(e));
            }
            searched = pending.len();
            if pending.len() >= MAX_LINE {
                return self.long_line().map(Some);
            }
            if !self.fill()? {
                return Ok(None);
            }
        }
    }

    /// A line longer than [`MAX_LINE`]: its head is the event, the rest is skipped unread
    /// into memory.
    fn long_line(&mut self) -> io::Result<Event> {
        let start = self.pos;
        let head = self.buf[self.head..self.head + MAX_LINE].to_vec();
        let mut skipped = (self.buf.len() - self.head) as u64;
        self.buf.clear();
        self.head = 0;
        loop {
            if !self.fill()? {
                // Cannot happen: the log ends with a newline.
                break;
            }
            if let Some(i) = self.buf.iter().position(|b| *b == b'\n') {
                skipped += i as u64 + 1;
                self.head = i + 1;
                break;
            }
            skipped += self.buf.len() as u64;
            self.buf.clear();
        }
        self.pos = start + skipped;
        Ok(Event::parse(start, self.pos, &head))
    }
}

/// Line starts backward from a line start, read in chunks.
struct Backward<'a, R> {
    log: &'a LogFile<R>,
    /// Line starts before this are next.
    pos: u64,
    buf: Vec<u8>,
    /// File offset of `buf[0]`.
    buf_start: u64,
}

impl<'a, R: ReadAt> Backward<'a, R> {
    fn new(log: &'a LogFile<R>, pos: u64) -> Self {
        Backward {
            log,
            pos,
            buf: Vec::new(),
            buf_start: 0,
        }
    }

    fn next_start(&mut self) -> io::Result<Option<u64>> {
        if self.pos == 0 {
            return Ok(None);
        }
        // The byte before `pos` ends the previous line; its start follows the newline before.
        let mut hi = self.pos - 1;
        loop {
            if hi == 0 {
                self.pos = 0;
                return Ok(Some(0));
            }
            let cached = self.buf_start < hi && hi <= self.buf_start + self.buf.len() as u64;
            if !cached {
                let lo = hi.saturating_sub(CHUNK as u64);
                self.buf.resize((hi - lo) as usize, 0);
                let n = read_full(&self.log.r, &mut self.buf, lo)?;
                self.buf.truncate(n);
                self.buf_start = lo;
            }
            let upto = ((hi - self.buf_start) as usize).min(self.buf.len());
            match self.buf[..upto].iter().rposition(|b| *b == b'\n') {
                Some(i) => {
                    self.pos = self.buf_start + i as u64 + 1;
                    return Ok(Some(self.pos));
                }
                None => hi = self.buf_start,
            }
        }
    }
}

#[cfg(test)]
mod tests;
