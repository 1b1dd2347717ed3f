//! Undo `Content-Encoding`, counting the limit against decompressed bytes.

use std::io::Read;

use crate::IngestError;

/// A content coding Tripline accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// No coding.
    Identity,
    /// gzip (RFC 1952); concatenated members are read as one stream.
    Gzip,
    /// HTTP "deflate": zlib (RFC 1950); a raw deflate stream is accepted too.
    Deflate,
    /// zstd (RFC 8878).
    Zstd,
}

impl Encoding {
    /// Parses a `Content-Encoding` header value (absent means identity).
    pub fn from_header(value: Option<&str>) -> Result<Encoding, IngestError> {
        let Some(v) = value else {
            return Ok(Encoding::Identity);
        };
        match v.trim().to_ascii_lowercase().as_str() {
            "" | "identity" => Ok(Encoding::Identity),
            "gzip" | "x-gzip" => Ok(Encoding::Gzip),
            "deflate" => Ok(Encoding::Deflate),
            "zstd" => Ok(Encoding::Zstd),
            _ => Err(IngestError::UnsupportedEncoding(v.to_string())),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Encoding::Identity => "identity",
            Encoding::Gzip => "gzip",
            Encoding::Deflate => "deflate",
            Encoding::Zstd => "zstd",
        }
    }
}

/// Decodes `body`, refusing output larger than `limit` bytes.
///
/// Memory use is bounded by `limit` (plus one read buffer) whatever the
/// compression ratio of the input.
pub fn decode(encoding: Encoding, body: &[u8], limit: usize) -> Result<Vec<u8>, IngestError> {
    match encoding {
        Encoding::Identity => {
            if body.len() > limit {
                return Err(IngestError::BodyTooLarge { limit });
            }
            Ok(body.to_vec())
        }
        Encoding::Gzip => {
            // The trailer's ISIZE: the last member's length mod 2^32.
            let size = body.last_chunk::<4>().map(|b| u64::from(u32::from_le_bytes(*b)));
            read_limited(
                encoding,
                flate2::bufread::MultiGzDecoder::new(body),
                limit,
                body.len(),
                size,
            )
        }
        Encoding::Deflate => match read_limited(
            encoding,
            flate2::bufread::ZlibDecoder::new(body),
            limit,
            body.len(),
            None,
        ) {
            Err(IngestError::BadEncoding { .. }) => read_limited(
                encoding,
                flate2::bufread::DeflateDecoder::new(body),
                limit,
                body.len(),
                None,
            ),
            other => other,
        },
        Encoding::Zstd => {
            let bad = |e: std::io::Error| IngestError::BadEncoding {
                encoding: "zstd",
                offset: 0,
                reason: e.to_string(),
            };
            let mut decoder = zstd::stream::read::Decoder::with_buffer(body).map_err(bad)?;
            // The frame header chooses the window (up to 128 MiB by default):
            // none larger than the output may be is worth its memory.
            decoder.window_log_max(window_log(limit)).map_err(bad)?;
            let size = zstd::zstd_safe::get_frame_content_size(body).ok().flatten();
            read_limited(encoding, decoder, limit, body.len(), size)
        }
    }
}

/// The smallest zstd window log covering `limit` bytes, within what zstd
/// accepts (1 KiB to 128 MiB).
fn window_log(limit: usize) -> u32 {
    (usize::BITS - limit.saturating_sub(1).leading_zeros()).clamp(10, 27)
}

/// `size` is the decompressed size the stream's header or trailer claims: a
/// hint, trusted only up to `limit` and 64 times the compressed size, so a
/// small body cannot make the server reserve more than a real one would.
/// Sized right, the output is never copied while it grows.
fn read_limited(
    encoding: Encoding,
    reader: impl Read,
    limit: usize,
    compressed_len: usize,
    size: Option<u64>,
) -> Result<Vec<u8>, IngestError> {
    let guess = compressed_len.saturating_mul(4);
    let claimed = size
        .and_then(|s| usize::try_from(s).ok())
        .filter(|&s| s <= compressed_len.saturating_mul(64))
        .map_or(guess, |s| s.saturating_add(1));
    let mut out = Vec::with_capacity(claimed.min(limit.saturating_add(1)).min(64 << 20));
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    let mut limited = reader.take(cap);
    limited.read_to_end(&mut out).map_err(|e| IngestError::BadEncoding {
        encoding: encoding.name(),
        offset: compressed_len as u64,
        reason: e.to_string(),
    })?;
    if out.len() > limit {
        return Err(IngestError::BodyTooLarge { limit });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    /// L14: the zstd window came from the frame header, up to 128 MiB, outside
    /// the body limit.
    #[test]
    fn a_zstd_window_larger_than_the_limit_is_refused() {
        assert_eq!(window_log(1 << 20), 20);
        assert_eq!(window_log(64 << 20), 26);
        assert_eq!(window_log(1), 10);
        // A small body whose header asks for an 8 MiB window (streamed, so
        // the content size is not there to shrink it).
        let data: Vec<u8> = (0..32u32 << 10).map(|i| (i % 251) as u8).collect();
        let mut enc = zstd::stream::Encoder::new(Vec::new(), 3).unwrap();
        enc.window_log(23).unwrap();
        std::io::Write::write_all(&mut enc, &data).unwrap();
        let body = enc.finish().unwrap();
        assert_eq!(decode(Encoding::Zstd, &body, 16 << 20).unwrap(), data);
        let refused = decode(Encoding::Zstd, &body, 64 << 10);
        assert!(matches!(refused, Err(IngestError::BadEncoding { .. })), "{refused:?}");
    }

    #[test]
    fn each_encoding_round_trips() {
        let data = b"{\"a\":1}\n".repeat(100);
        assert_eq!(decode(Encoding::Gzip, &gzip(&data), 1 << 20).unwrap(), data);
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(&data).unwrap();
        assert_eq!(decode(Encoding::Deflate, &z.finish().unwrap(), 1 << 20).unwrap(), data);
        let mut raw = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        raw.write_all(&data).unwrap();
        assert_eq!(
            decode(Encoding::Deflate, &raw.finish().unwrap(), 1 << 20).unwrap(),
            data
        );
        let zs = zstd::stream::encode_all(&data[..], 3).unwrap();
        assert_eq!(decode(Encoding::Zstd, &zs, 1 << 20).unwrap(), data);
    }

    #[test]
    fn the_size_trailer_sizes_the_output_once_and_a_lie_is_capped() {
        // Log-like data, compressed well under the 64x a hint is trusted to.
        let data: Vec<u8> = (0..5000u64)
            .flat_map(|i| format!("{{\"n\":{i},\"h\":\"{:x}\"}}\n", i.wrapping_mul(0x9E37_79B9_7F4A_7C15)).into_bytes())
            .collect();
        let body = gzip(&data);
        assert!(body.len() * 64 > data.len());
        let out = decode(Encoding::Gzip, &body, 1 << 20).unwrap();
        assert_eq!(out, data);
        assert_eq!(out.capacity(), data.len() + 1, "grown instead of sized from ISIZE");
        // One-shot zstd writes the content size in the frame header.
        let zs = zstd::bulk::compress(&data, 3).unwrap();
        assert_eq!(decode(Encoding::Zstd, &zs, 1 << 20).unwrap().capacity(), data.len() + 1);

        let small = gzip(b"{}\n");
        let out = read_limited(
            Encoding::Gzip,
            flate2::bufread::MultiGzDecoder::new(&small[..]),
            1 << 30,
            small.len(),
            Some(u64::from(u32::MAX)),
        )
        .unwrap();
        assert!(out.capacity() <= small.len() * 4, "a claimed size was trusted past 64x");
    }

    #[test]
    fn a_gzip_bomb_is_refused_by_decompressed_size() {
        let bomb = gzip(&vec![b'a'; 50 << 20]);
        assert!(bomb.len() < 100 << 10);
        assert!(matches!(
            decode(Encoding::Gzip, &bomb, 1 << 20),
            Err(IngestError::BodyTooLarge { .. })
        ));
    }

    #[test]
    fn corrupt_streams_and_unknown_codings_are_errors() {
        assert!(matches!(
            decode(Encoding::Gzip, b"not gzip", 100),
            Err(IngestError::BadEncoding { .. })
        ));
        assert!(matches!(
            Encoding::from_header(Some("br")),
            Err(IngestError::UnsupportedEncoding(_))
        ));
        assert_eq!(Encoding::from_header(Some(" GZIP ")).unwrap(), Encoding::Gzip);
    }
}
