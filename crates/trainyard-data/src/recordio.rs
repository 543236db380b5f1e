//! RecordIO framing (`RecordWrapperType: RecordIO`), byte-exact to `doc/contract/data.md` §4.3, the MXNet /
//! dmlc-core format.
//!
//! A record is a sequence of parts, each `magic | lrec | payload | padding`, where
//! `lrec = cflag << 29 | length`. dmlc's writer splits a payload wherever the payload holds the
//! magic number at a 4-byte-aligned offset (the magic itself is dropped at the split, readers
//! re-insert it), and a part can be at most 2^29 − 1 bytes; trainyard also splits there rather
//! than refusing, at 4-aligned lengths so every part but the last stays aligned.
//!
//! **Why framing needs a lookahead.** The header comes *before* the part and carries its length,
//! and a part ends at the next aligned magic. Knowing the payload length up front is therefore not
//! enough to write the first header: whether the record is one part (`cflag 0`, length = whole
//! payload) or several depends on bytes not yet seen. The code is split accordingly:
//!
//! * [`Framer`] is the pure state machine: given where the current part starts and the next
//!   [`Boundary`] at or after it (an aligned magic, or the end of the payload), it returns the
//!   [`Part`] to emit (header, length, bytes to skip, whether it is the last).
//! * [`BoundaryFinder`] computes those boundaries from the payload fed to it chunk by chunk, in
//!   any chunking: [`MagicScanner`] carries a partial 4-byte word across chunk boundaries and only
//!   looks at offsets that are multiples of 4 from the payload start. It holds one chunk and one
//!   offset, never the payload.
//! * The driver decides where the boundary finder's bytes come from. For a payload in memory (a
//!   small object, an augmented-manifest value) it is the payload itself ([`encode`],
//!   [`frame_bytes`]). The Pipe producer (`pipe_mode`) buffers up to a fixed cap; a payload that
//!   ends within the cap is framed from memory, and a longer one is framed while a second,
//!   sequential read of the same object (a *scout*) runs ahead through the boundary finder. The
//!   scout keeps no data, so memory stays at the cap plus a chunk whatever the object size, at
//!   the price of reading the part of an object beyond the cap twice. That is the only way to
//!   stream an exact dmlc framing with bounded memory: gzip output, whose length is unknown, is
//!   handled the same way (the scout decompresses a second time).
//!
//! [`RecordIoReader`] reassembles records (for tests and for users checking a channel).
//! Reassembly of a split record is ambiguous in the format itself: dmlc re-inserts the magic
//! between parts (right for magic splits, the default here), the SageMaker TF reader does not
//! (right for length splits, which only occur in payloads of 2^29 bytes or more).

use std::io::{self, Read};

use bytes::Bytes;

/// The magic number that starts every part (`0A 23 D7 CE` on the wire).
pub const MAGIC: u32 = 0xCED7_230A;
/// The magic number as it appears in a little-endian stream.
pub const MAGIC_BYTES: [u8; 4] = MAGIC.to_le_bytes();
/// The largest length one part can carry.
pub const MAX_PART_LEN: u32 = (1 << 29) - 1;

/// `cflag` of a record that was not split.
pub const CFLAG_WHOLE: u32 = 0;
/// `cflag` of the first part of a split record.
pub const CFLAG_FIRST: u32 = 1;
/// `cflag` of a middle part of a split record.
pub const CFLAG_MIDDLE: u32 = 2;
/// `cflag` of the last part of a split record.
pub const CFLAG_LAST: u32 = 3;

/// The 8 header bytes of a part.
pub fn header(cflag: u32, len: u32) -> [u8; 8] {
    debug_assert!(cflag <= 3 && len <= MAX_PART_LEN);
    let lrec = (cflag << 29) | len;
    let mut h = [0u8; 8];
    h[..4].copy_from_slice(&MAGIC_BYTES);
    h[4..].copy_from_slice(&lrec.to_le_bytes());
    h
}

/// Zero bytes that follow a payload of `len` bytes to reach a 4-byte boundary.
pub fn padding_len(len: u64) -> usize {
    ((4 - len % 4) % 4) as usize
}

/// The next event at or after the start of the current part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Boundary {
    /// The payload holds the magic at this aligned offset.
    Magic(u64),
    /// The payload ends at this length (no aligned magic between the part start and the end).
    End(u64),
}

/// One part to emit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Part {
    /// 0 whole, 1 first, 2 middle, 3 last.
    pub cflag: u32,
    /// Payload offset of the part's first byte.
    pub start: u64,
    /// Payload bytes in the part.
    pub len: u32,
    /// Payload bytes to drop after the part (4 for the magic at a split, else 0).
    pub skip: u32,
    /// Whether the record ends with this part (padding follows).
    pub last: bool,
}

impl Part {
    /// The part's header.
    pub fn header(&self) -> [u8; 8] {
        header(self.cflag, self.len)
    }

    /// Zero bytes to write after the part's payload.
    pub fn padding(&self) -> usize {
        if self.last {
            padding_len(u64::from(self.len))
        } else {
            0
        }
    }
}

/// Where each part of one record begins and ends (see the module doc).
#[derive(Debug, Clone)]
pub struct Framer {
    next_start: u64,
    first: bool,
    /// Longest part; intermediate parts cut for length use this rounded down to 4.
    max_part: u32,
}

impl Default for Framer {
    fn default() -> Self {
        Framer::new()
    }
}

impl Framer {
    /// A framer for one record.
    pub fn new() -> Self {
        Framer::with_max_part(MAX_PART_LEN)
    }

    /// A framer with a smaller part limit, so tests can exercise length splits cheaply.
    pub fn with_max_part(max_part: u32) -> Self {
        assert!(
            (4..=MAX_PART_LEN).contains(&max_part),
            "part limit out of range"
        );
        Framer {
            next_start: 0,
            first: true,
            max_part,
        }
    }

    /// Payload offset where the next part starts; ask the boundary finder about this offset.
    pub fn part_start(&self) -> u64 {
        self.next_start
    }

    /// The next part, given the first boundary at or after [`Framer::part_start`].
    pub fn next_part(&mut self, next: Boundary) -> Part {
        let p = self.next_start;
        let aligned_max = u64::from(self.max_part & !3);
        let (end, skip, last) = match next {
            Boundary::Magic(m) if m - p <= aligned_max => (m, 4, false),
            Boundary::End(l) if l - p <= u64::from(self.max_part) => (l, 0, true),
            Boundary::Magic(m) => {
                debug_assert!(m >= p);
                (p + aligned_max, 0, false)
            }
            Boundary::End(l) => {
                debug_assert!(l >= p);
                (p + aligned_max, 0, false)
            }
        };
        let cflag = match (self.first, last) {
            (true, true) => CFLAG_WHOLE,
            (true, false) => CFLAG_FIRST,
            (false, false) => CFLAG_MIDDLE,
            (false, true) => CFLAG_LAST,
        };
        self.first = false;
        self.next_start = end + u64::from(skip);
        Part {
            cflag,
            start: p,
            len: u32::try_from(end - p).expect("a part is at most max_part bytes"),
            skip,
            last,
        }
    }
}

/// Finds the magic at 4-aligned payload offsets in a payload fed chunk by chunk.
#[derive(Debug, Clone, Default)]
pub struct MagicScanner {
    /// Payload offset of `carry[0]` when `carry_len > 0`, else of the next byte to scan.
    // INVARIANT: `pos % 4 == 0`.
    pos: u64,
    carry: [u8; 4],
    carry_len: usize,
}

impl MagicScanner {
    /// A scanner at payload offset 0.
    pub fn new() -> Self {
        MagicScanner::default()
    }

    /// Bytes fed so far (the payload length once the input has ended).
    pub fn consumed(&self) -> u64 {
        self.pos + self.carry_len as u64
    }

    /// Scans `chunk[*at..]`, advancing `*at`. Returns the offset of the first aligned magic
    /// found (its 4 bytes consumed), or `None` once the chunk is exhausted.
    pub fn scan(&mut self, chunk: &[u8], at: &mut usize) -> Option<u64> {
        if self.carry_len > 0 {
            let take = (4 - self.carry_len).min(chunk.len() - *at);
            self.carry[self.carry_len..self.carry_len + take]
                .copy_from_slice(&chunk[*at..*at + take]);
            *at += take;
            self.carry_len += take;
            if self.carry_len < 4 {
                return None;
            }
            self.carry_len = 0;
            let word = self.pos;
            self.pos += 4;
            if self.carry == MAGIC_BYTES {
                return Some(word);
            }
        }
        let rest = &chunk[*at..];
        let words = rest.chunks_exact(4);
        let tail = words.remainder();
        for (i, w) in words.enumerate() {
            if w == MAGIC_BYTES {
                let off = 4 * i;
                *at += off + 4;
                let word = self.pos + off as u64;
                self.pos = word + 4;
                return Some(word);
            }
        }
        let whole = rest.len() - tail.len();
        self.pos += whole as u64;
        self.carry[..tail.len()].copy_from_slice(tail);
        self.carry_len = tail.len();
        *at = chunk.len();
        None
    }
}

/// Answers [`Framer`]'s question ("the next boundary at or after offset `p`") from payload bytes
/// fed in order, holding one chunk at a time.
#[derive(Debug, Clone, Default)]
pub struct BoundaryFinder {
    scanner: MagicScanner,
    held: Option<u64>,
    chunk: Bytes,
    at: usize,
    ended: bool,
}

impl BoundaryFinder {
    /// A finder at payload offset 0.
    pub fn new() -> Self {
        BoundaryFinder::default()
    }

    /// The first boundary at or after `p`, or `None` when more input is needed
    /// ([`BoundaryFinder::feed`] or [`BoundaryFinder::finish`]).
    pub fn boundary(&mut self, p: u64) -> Option<Boundary> {
        loop {
            if let Some(m) = self.held {
                if m >= p {
                    return Some(Boundary::Magic(m));
                }
                self.held = None;
            }
            if self.at < self.chunk.len() {
                let chunk = self.chunk.clone();
                if let Some(m) = self.scanner.scan(&chunk, &mut self.at) {
                    self.held = Some(m);
                }
                continue;
            }
            if self.ended {
                return Some(Boundary::End(self.scanner.consumed()));
            }
            return None;
        }
    }

    /// The next chunk of payload (only after [`BoundaryFinder::boundary`] returned `None`).
    pub fn feed(&mut self, chunk: Bytes) {
        debug_assert!(self.at >= self.chunk.len(), "previous chunk not scanned");
        self.chunk = chunk;
        self.at = 0;
    }

    /// The payload has no more bytes.
    pub fn finish(&mut self) {
        self.ended = true;
    }

    /// Payload bytes fed so far.
    pub fn consumed(&self) -> u64 {
        self.scanner.consumed() + (self.chunk.len() - self.at) as u64
    }
}

/// The parts of an in-memory payload.
pub fn parts(payload: &[u8]) -> Vec<Part> {
    parts_with(payload, Framer::new())
}

fn parts_with(payload: &[u8], mut framer: Framer) -> Vec<Part> {
    let mut finder = BoundaryFinder::new();
    finder.feed(Bytes::copy_from_slice(payload));
    finder.finish();
    let mut out = Vec::new();
    loop {
        let b = finder
            .boundary(framer.part_start())
            .expect("all input was fed");
        let part = framer.next_part(b);
        out.push(part);
        if part.last {
            return out;
        }
    }
}

/// Appends the RecordIO record of `payload` to `out`.
pub fn write_record(payload: &[u8], out: &mut Vec<u8>) {
    for part in parts(payload) {
        out.extend_from_slice(&part.header());
        let s = part.start as usize;
        out.extend_from_slice(&payload[s..s + part.len as usize]);
        out.resize(out.len() + part.padding(), 0);
    }
}

/// The RecordIO record of `payload`.
pub fn encode(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 16);
    write_record(payload, &mut out);
    out
}

/// The RecordIO record of `payload` as pieces to write in order, sharing `payload`'s memory.
pub fn frame_bytes(payload: &Bytes) -> Vec<Bytes> {
    const ZEROS: [u8; 3] = [0; 3];
    let mut out = Vec::new();
    for part in parts(payload) {
        out.push(Bytes::copy_from_slice(&part.header()));
        if part.len > 0 {
            let s = part.start as usize;
            out.push(payload.slice(s..s + part.len as usize));
        }
        if part.padding() > 0 {
            out.push(Bytes::from_static(&ZEROS[..part.padding()]));
        }
    }
    out
}

/// Reads RecordIO records back, reassembling split records.
#[derive(Debug)]
pub struct RecordIoReader<R> {
    inner: R,
    reinsert_magic: bool,
}

impl<R: Read> RecordIoReader<R> {
    /// A reader that re-inserts the magic between the parts of a split record, as dmlc does.
    pub fn new(inner: R) -> Self {
        RecordIoReader {
            inner,
            reinsert_magic: true,
        }
    }

    /// Whether to re-insert the magic between parts (dmlc, the default) or concatenate parts
    /// as they are (the SageMaker TF reader).
    pub fn reinsert_magic(mut self, yes: bool) -> Self {
        self.reinsert_magic = yes;
        self
    }

    /// The next record, or `None` at a clean end of input.
    pub fn read_record(&mut self) -> io::Result<Option<Vec<u8>>> {
        let mut record = Vec::new();
        let mut in_split = false;
        loop {
            let Some(h) = self.read_header(!in_split)? else {
                return Ok(None);
            };
            let magic = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
            if magic != MAGIC {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("bad RecordIO magic {magic:#010x}"),
                ));
            }
            let lrec = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
            let (cflag, len) = (lrec >> 29, lrec & MAX_PART_LEN);
            if in_split && matches!(cflag, CFLAG_WHOLE | CFLAG_FIRST) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("RecordIO part with cflag {cflag} inside a split record"),
                ));
            }
            // Grow with the data actually read: a header may announce up to 512 MiB, and a
            // short or hostile stream must not make the reader allocate that up front.
            let got = (&mut self.inner)
                .take(u64::from(len))
                .read_to_end(&mut record)?;
            if got < len as usize {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "RecordIO stream ends inside a record",
                ));
            }
            let mut pad = [0u8; 3];
            self.inner
                .read_exact(&mut pad[..padding_len(u64::from(len))])?;
            // Like dmlc, a middle or last part without a first one is taken as it comes.
            if matches!(cflag, CFLAG_WHOLE | CFLAG_LAST) {
                return Ok(Some(record));
            }
            in_split = true;
            if self.reinsert_magic {
                record.extend_from_slice(&MAGIC_BYTES);
            }
        }
    }

    fn read_header(&mut self, at_record_start: bool) -> io::Result<Option<[u8; 8]>> {
        let mut h = [0u8; 8];
        let mut got = 0;
        while got < 8 {
            match self.inner.read(&mut h[got..]) {
                Ok(0) if got == 0 && at_record_start => return Ok(None),
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "RecordIO stream ends inside a record",
                    ));
                }
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(Some(h))
    }
}

impl<R: Read> Iterator for RecordIoReader<R> {
    type Item = io::Result<Vec<u8>>;

    fn next(&mut self) -> Option<Self::Item> {
        self.read_record().transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn read_all(bytes: &[u8]) -> Vec<Vec<u8>> {
        RecordIoReader::new(bytes)
            .collect::<io::Result<Vec<_>>>()
            .unwrap()
    }

    #[test]
    fn header_bytes_on_the_wire() {
        assert_eq!(header(0, 5), [0x0A, 0x23, 0xD7, 0xCE, 5, 0, 0, 0]);
        assert_eq!(header(3, 1), [0x0A, 0x23, 0xD7, 0xCE, 1, 0, 0, 0x60]);
    }

    #[test]
    fn whole_records_by_hand() {
        assert_eq!(encode(b""), [0x0A, 0x23, 0xD7, 0xCE, 0, 0, 0, 0]);
        assert_eq!(
            encode(b"abcde"),
            [
                0x0A, 0x23, 0xD7, 0xCE, 5, 0, 0, 0, b'a', b'b', b'c', b'd', b'e', 0, 0, 0
            ]
        );
        assert_eq!(
            encode(b"1"),
            [0x0A, 0x23, 0xD7, 0xCE, 1, 0, 0, 0, b'1', 0, 0, 0]
        );
        assert_eq!(encode(b"abcd").len(), 12, "aligned payload, no padding");
    }

    #[test]
    fn an_aligned_magic_splits_the_record_and_is_dropped() {
        // "ab" "cd" MAGIC "xyz": magic at offset 4.
        let mut payload = b"abcd".to_vec();
        payload.extend_from_slice(&MAGIC_BYTES);
        payload.extend_from_slice(b"xyz");
        let want: Vec<u8> = [
            &[0x0A, 0x23, 0xD7, 0xCE, 4, 0, 0, 0x20][..], // cflag 1, len 4
            b"abcd",
            &[0x0A, 0x23, 0xD7, 0xCE, 3, 0, 0, 0x60], // cflag 3, len 3
            b"xyz\0",
        ]
        .concat();
        assert_eq!(encode(&payload), want);
        assert_eq!(read_all(&want), [payload]);
    }

    #[test]
    fn an_unaligned_magic_does_not_split() {
        let mut payload = b"ab".to_vec();
        payload.extend_from_slice(&MAGIC_BYTES);
        let out = encode(&payload);
        assert_eq!(&out[..8], &header(0, 6));
        assert_eq!(out.len(), 8 + 8);
    }

    #[test]
    fn magic_at_start_end_and_twice_in_a_row() {
        let m = MAGIC_BYTES;
        let payload = [&m[..], &m, b"qq", b"rr", &m].concat();
        let ps = parts(&payload);
        let shape: Vec<(u32, u32, u32)> = ps.iter().map(|p| (p.cflag, p.len, p.skip)).collect();
        assert_eq!(shape, [(1, 0, 4), (2, 0, 4), (2, 4, 4), (3, 0, 0)]);
        let enc = encode(&payload);
        assert_eq!(
            enc,
            [
                &header(1, 0)[..],
                &header(2, 0),
                &header(2, 4),
                b"qqrr",
                &header(3, 0)
            ]
            .concat()
        );
        assert_eq!(read_all(&enc), [payload]);
    }

    #[test]
    fn a_trailing_partial_word_equal_to_part_of_the_magic_is_data() {
        let payload = [b"abcd", &MAGIC_BYTES[..3]].concat();
        assert_eq!(parts(&payload).len(), 1);
    }

    #[test]
    fn long_payloads_are_cut_at_aligned_lengths() {
        let payload: Vec<u8> = (0..23u8).collect();
        let ps = parts_with(&payload, Framer::with_max_part(10));
        let shape: Vec<(u32, u64, u32)> = ps.iter().map(|p| (p.cflag, p.start, p.len)).collect();
        // Intermediate parts are 8 bytes (10 rounded down to 4); the last may use all 10.
        assert_eq!(shape, [(1, 0, 8), (2, 8, 8), (3, 16, 7)]);
        let ps = parts_with(&payload[..20], Framer::with_max_part(10));
        assert_eq!(
            ps.iter().map(|p| p.len).collect::<Vec<_>>(),
            [8, 8, 4],
            "12 remaining after the first cut is still over the limit"
        );
        let ps = parts_with(&payload[..18], Framer::with_max_part(10));
        assert_eq!(
            ps.iter().map(|p| p.len).collect::<Vec<_>>(),
            [8, 10],
            "the last part may be up to the limit"
        );
    }

    #[test]
    fn the_reader_rejects_garbage() {
        let mut r = RecordIoReader::new(&b"\x01\x02\x03\x04\x05\x00\x00\x00"[..]);
        assert_eq!(
            r.read_record().unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
        let trunc = &encode(b"hello")[..10];
        assert_eq!(
            RecordIoReader::new(trunc).read_record().unwrap_err().kind(),
            io::ErrorKind::UnexpectedEof
        );
        let half_header = &encode(b"hello")[..5];
        assert_eq!(
            RecordIoReader::new(half_header)
                .read_record()
                .unwrap_err()
                .kind(),
            io::ErrorKind::UnexpectedEof
        );
        let lone_last = header(3, 0);
        assert_eq!(
            RecordIoReader::new(&lone_last[..])
                .read_record()
                .unwrap()
                .unwrap(),
            b"",
            "a lone last part is accepted as a record, as dmlc does"
        );
        let first_then_whole = [&header(1, 0)[..], &header(0, 0)].concat();
        assert_eq!(
            RecordIoReader::new(&first_then_whole[..])
                .read_record()
                .unwrap_err()
                .kind(),
            io::ErrorKind::InvalidData
        );
    }

    /// Payloads with a good chance of aligned magics.
    fn payload() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(
            prop_oneof![
                3 => prop::collection::vec(any::<u8>(), 0..9),
                1 => Just(MAGIC_BYTES.to_vec()),
                1 => Just(MAGIC_BYTES[..2].to_vec()),
            ],
            0..20,
        )
        .prop_map(|v| v.concat())
    }

    proptest! {
        #[test]
        fn round_trip(records in prop::collection::vec(payload(), 0..8)) {
            let mut stream = Vec::new();
            for r in &records {
                write_record(r, &mut stream);
            }
            prop_assert_eq!(stream.len() % 4, 0);
            prop_assert_eq!(read_all(&stream), records);
        }

        #[test]
        fn frame_bytes_equals_encode(p in payload()) {
            let pieces = frame_bytes(&Bytes::from(p.clone()));
            prop_assert_eq!(pieces.concat(), encode(&p));
        }

        #[test]
        fn chunking_does_not_change_the_parts(p in payload(), cuts in prop::collection::vec(0usize..200, 0..6)) {
            let want = parts(&p);
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(p.len())).collect();
            cuts.push(p.len());
            cuts.sort_unstable();
            let mut finder = BoundaryFinder::new();
            let mut framer = Framer::new();
            let mut feed = cuts.into_iter();
            let mut from = 0;
            let mut got = Vec::new();
            loop {
                match finder.boundary(framer.part_start()) {
                    Some(b) => {
                        let part = framer.next_part(b);
                        got.push(part);
                        if part.last { break; }
                    }
                    None => match feed.next() {
                        Some(to) => {
                            finder.feed(Bytes::copy_from_slice(&p[from..to]));
                            from = to;
                        }
                        None => finder.finish(),
                    },
                }
            }
            prop_assert_eq!(got, want);
        }

        #[test]
        fn length_splits_round_trip_without_reinsertion(len in 0usize..100, max in 4u32..20) {
            // No magic in these bytes, so every split is a length split.
            let p: Vec<u8> = (0..len).map(|i| (i % 200) as u8).collect();
            let mut stream = Vec::new();
            for part in parts_with(&p, Framer::with_max_part(max)) {
                prop_assert!(part.len <= max);
                stream.extend_from_slice(&part.header());
                let s = part.start as usize;
                stream.extend_from_slice(&p[s..s + part.len as usize]);
                stream.resize(stream.len() + part.padding(), 0);
            }
            let back: Vec<Vec<u8>> = RecordIoReader::new(&stream[..])
                .reinsert_magic(false)
                .collect::<io::Result<_>>()
                .unwrap();
            prop_assert_eq!(back, vec![p]);
        }

        #[test]
        fn the_reader_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            for r in RecordIoReader::new(&bytes[..]).take(20) {
                if r.is_err() { break; }
            }
        }
    }
}
