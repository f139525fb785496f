//! The admin plane's query parsing: health options, `/tunnel-test`'s
//! query, and `%XX` decoding (total, and the inverse of encoding).
#![no_main]
use libfuzzer_sys::fuzz_target;
use phantommesh::admin::health::parse_query;
use phantommesh::fuzz_api::{parse_test_query, percent_decode};

fuzz_target!(|data: &[u8]| {
    let q = String::from_utf8_lossy(data);
    let _ = parse_query(Some(&q));
    if let Ok((_, probes)) = parse_test_query(Some(&q)) {
        assert!(probes >= 1);
    }
    let d = percent_decode(&q);
    if !q.contains('%') {
        assert_eq!(d, q, "nothing to decode");
    }
    // Every byte escaped decodes back to the bytes (lossily where they are
    // not UTF-8, as the decoder does).
    let enc: String = data.iter().map(|b| format!("%{b:02X}")).collect();
    assert_eq!(percent_decode(&enc), String::from_utf8_lossy(data));
    let enc: String = data.iter().map(|b| format!("%{b:02x}")).collect();
    assert_eq!(percent_decode(&enc), String::from_utf8_lossy(data));
});
