//! gzip of large answers, for clients that send `Accept-Encoding: gzip`.
//!
//! Candle JSON is repetitive (the same keys in every candle, prices that share their leading
//! digits) and shrinks to about a fifth. Level 1, the fastest, is used: most of the gain at
//! the least cost per request, which matters more to a polling client on a fast link than the
//! last few hundred bytes (docs/BENCHMARKS.md has the sizes and costs).

use std::io::Write as _;

use flate2::write::GzEncoder;
use flate2::Compression;

use crate::message::Response;

/// Bodies of at most this many bytes go out as they are: below it the saving is smaller than
/// the work and the headers.
pub const MIN_BYTES: usize = 1024;

/// Compresses `response`'s body in place if `accepts` and it is worth it; returns the bytes
/// before and after, if it did.
pub fn encode(response: &mut Response, accepts: bool) -> Option<(usize, usize)> {
    if !accepts || response.body.len() <= MIN_BYTES || response.status == 304 {
        return None;
    }
    let before = response.body.len();
    let mut encoder = GzEncoder::new(Vec::with_capacity(before / 3), Compression::fast());
    // Writing into a Vec cannot fail; if the encoder did, the body goes out uncompressed.
    encoder.write_all(&response.body).ok()?;
    response.body = encoder.finish().ok()?;
    response.extra_headers.push("Content-Encoding: gzip".into());
    Some((before, response.body.len()))
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    use super::*;

    #[test]
    fn large_bodies_compress_and_decompress_to_the_same_bytes() {
        let body = "{\"time\":1700000000,\"open\":1.23456}".repeat(100);
        let mut r = Response::json(200, body.clone());
        let (before, after) = encode(&mut r, true).expect("compressed");
        assert_eq!(before, body.len());
        assert!(after < before / 4, "{after} of {before}");
        assert!(r
            .extra_headers
            .contains(&"Content-Encoding: gzip".to_owned()));
        let mut back = String::new();
        flate2::read::GzDecoder::new(&r.body[..])
            .read_to_string(&mut back)
            .unwrap();
        assert_eq!(back, body);
    }

    #[test]
    fn small_bodies_and_refusing_clients_get_plain_bodies() {
        let mut small = Response::json(200, "x".repeat(MIN_BYTES));
        assert_eq!(encode(&mut small, true), None);
        let mut large = Response::json(200, "x".repeat(5000));
        assert_eq!(encode(&mut large, false), None);
        assert_eq!(large.body.len(), 5000);
        assert!(large.extra_headers.is_empty());
    }
}
