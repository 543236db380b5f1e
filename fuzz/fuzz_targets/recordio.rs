//! RecordIO: the framing Pipe mode writes and the training toolkits read. Checks: reading any
//! bytes as a RecordIO stream never panics; any payload framed by `encode` reads back as
//! exactly that one record, and `frame_bytes` frames it to the same bytes; every record read
//! from the input re-encodes to a stream that reads back as the same record.
#![no_main]

use libfuzzer_sys::fuzz_target;
use trainyard_data::recordio::{RecordIoReader, encode, frame_bytes};

fn read_all(bytes: &[u8]) -> Vec<Vec<u8>> {
    RecordIoReader::new(bytes)
        .collect::<std::io::Result<Vec<_>>>()
        .expect("an encoded stream reads back")
}

fuzz_target!(|data: &[u8]| {
    let framed = encode(data);
    assert_eq!(framed.len() % 4, 0, "records are padded to 4 bytes");
    assert_eq!(read_all(&framed), vec![data.to_vec()]);
    let parts: Vec<u8> = frame_bytes(&bytes::Bytes::copy_from_slice(data)).concat();
    assert_eq!(parts, framed, "frame_bytes and encode disagree");

    for record in RecordIoReader::new(data) {
        let Ok(record) = record else { break };
        assert_eq!(read_all(&encode(&record)), vec![record]);
    }
});
