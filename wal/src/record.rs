//! The on-disk record: `len: u32 LE | crc: u32 LE | payload`, where `crc` is
//! the CRC32C of the length bytes followed by the payload (LevelDB's log
//! format without its blocks). Pure functions on bytes, easy to fuzz.

/// Bytes before a record's payload.
pub const HEADER_LEN: usize = 8;
/// Largest payload a record may have; a larger length field is corruption.
pub const MAX_RECORD_LEN: usize = 1 << 30;

/// Appends a framed record to `out`. The caller keeps `payload` at or below
/// [`MAX_RECORD_LEN`] (the writer refuses larger batches before this).
pub(crate) fn encode_record(payload: &[u8], out: &mut Vec<u8>) {
    let len = u32::try_from(payload.len()).expect("payloads are below MAX_RECORD_LEN, checked by the writer");
    let crc = crc32c::crc32c_append(crc32c::crc32c(&len.to_le_bytes()), payload);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(payload);
}

/// Why bytes of a segment are not a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Damage {
    /// Fewer bytes than a header.
    TornHeader,
    /// A length over [`MAX_RECORD_LEN`].
    BadLength,
    /// A header promising more payload than the segment holds.
    TornRecord,
    /// The checksum does not match.
    ChecksumMismatch,
}

impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Damage::TornHeader => "torn header",
            Damage::BadLength => "corrupt length",
            Damage::TornRecord => "torn record",
            Damage::ChecksumMismatch => "checksum mismatch",
        })
    }
}

/// A run of bytes that held no record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DamagedRange {
    /// Offset in the segment where reading failed.
    pub offset: usize,
    /// Bytes skipped (to the next intact record, or to the end).
    pub len: usize,
    /// What was wrong at `offset`.
    pub damage: Damage,
}

/// The records of a segment's bytes.
#[derive(Debug)]
pub struct Scan<'a> {
    /// `(offset in segment, payload)` of each intact record.
    pub records: Vec<(usize, &'a [u8])>,
    /// Bytes up to the end of the last intact record.
    pub valid_len: usize,
    /// Damage followed by intact records: corruption inside the log.
    pub damaged: Vec<DamagedRange>,
    /// Damage with no intact record after it: a torn tail (what a crash in
    /// the middle of a write leaves), or corruption at the end.
    pub tail: Option<DamagedRange>,
}

fn record_at(bytes: &[u8], pos: usize) -> Result<&[u8], Damage> {
    let rest = bytes.get(pos..).unwrap_or_default();
    let Some((header, body)) = rest.split_first_chunk::<HEADER_LEN>() else {
        return Err(Damage::TornHeader);
    };
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if len > MAX_RECORD_LEN {
        return Err(Damage::BadLength);
    }
    let payload = body.get(..len).ok_or(Damage::TornRecord)?;
    if crc32c::crc32c_append(crc32c::crc32c(&header[..4]), payload) != crc {
        return Err(Damage::ChecksumMismatch);
    }
    Ok(payload)
}

/// A cheap test that a record could start at `pos`: every payload Tripline
/// writes is lines of a marker byte and a JSON object, ending in a newline.
/// Checked before the CRC so that resyncing over garbage stays linear.
fn plausible(bytes: &[u8], pos: usize) -> bool {
    let Some(rest) = bytes.get(pos..) else { return false };
    let Some((header, body)) = rest.split_first_chunk::<HEADER_LEN>() else {
        return false;
    };
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    len >= 3 && len <= body.len() && matches!(body[0], b'a' | b'c') && body[1] == b'{' && body[len - 1] == b'\n'
}

/// Reads every intact record. At damage it looks for the next intact record
/// (a header whose checksum matches) and goes on from there, so one flipped
/// bit costs one record, not the rest of the segment.
pub fn scan(bytes: &[u8]) -> Scan<'_> {
    let mut records = Vec::new();
    let mut damaged = Vec::new();
    let mut pos = 0;
    let mut valid_len = 0;
    let tail = loop {
        if pos >= bytes.len() {
            break None;
        }
        match record_at(bytes, pos) {
            Ok(payload) => {
                records.push((pos, payload));
                pos += HEADER_LEN + payload.len();
                valid_len = pos;
            }
            Err(damage) => {
                let next = (pos + 1..bytes.len()).find(|&q| plausible(bytes, q) && record_at(bytes, q).is_ok());
                match next {
                    Some(q) => {
                        damaged.push(DamagedRange {
                            offset: pos,
                            len: q - pos,
                            damage,
                        });
                        pos = q;
                    }
                    None => {
                        break Some(DamagedRange {
                            offset: pos,
                            len: bytes.len() - pos,
                            damage,
                        })
                    }
                }
            }
        }
    };
    Scan {
        records,
        valid_len,
        damaged,
        tail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        encode_record(payload, &mut out);
        out
    }

    #[test]
    fn a_flipped_byte_costs_one_record_and_the_scan_resyncs() {
        let (a, b, c) = (b"a{\"n\":1}\n", b"a{\"n\":2}\n", b"c{\"n\":3}\n");
        let mut bytes = [record(a), record(b), record(c)].concat();
        let second = record(a).len();
        bytes[second + HEADER_LEN + 3] ^= 0x55;
        let s = scan(&bytes);
        let payloads: Vec<&[u8]> = s.records.iter().map(|r| r.1).collect();
        assert_eq!(payloads, vec![&a[..], &c[..]]);
        assert_eq!(
            s.damaged,
            vec![DamagedRange {
                offset: second,
                len: record(b).len(),
                damage: Damage::ChecksumMismatch
            }]
        );
        assert_eq!(s.tail, None);
        assert_eq!(s.valid_len, bytes.len());
    }

    #[test]
    fn a_torn_last_record_is_a_tail_not_damage() {
        let a = b"a{\"n\":1}\n";
        let mut bytes = record(a);
        let whole = bytes.len();
        bytes.extend_from_slice(&record(a)[..10]);
        let s = scan(&bytes);
        assert_eq!(s.records.len(), 1);
        assert!(s.damaged.is_empty());
        assert_eq!(s.tail.map(|t| (t.offset, t.damage)), Some((whole, Damage::TornRecord)));
        assert_eq!(s.valid_len, whole);
    }

    #[test]
    fn garbage_is_no_record_and_never_panics() {
        for bytes in [&b""[..], b"\x01", b"\xff\xff\xff\xff\x00\x00\x00\x00", &[0u8; 4096]] {
            let s = scan(bytes);
            assert!(s.records.is_empty());
        }
    }
}

#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        /// Any bytes: no panic, every record returned checks, the valid
        /// length ends a record, and intact records inside noise are found.
        #[test]
        fn scan_is_total_on_any_bytes(
            noise in proptest::collection::vec(any::<u8>(), 0..512),
            cut in any::<u16>(),
        ) {
            let mut bytes = noise.clone();
            encode_record(b"a{\"n\":1}\n", &mut bytes);
            bytes.extend_from_slice(&noise[..(cut as usize).min(noise.len())]);
            let s = scan(&bytes);
            for (offset, payload) in &s.records {
                prop_assert_eq!(record_at(&bytes, *offset).ok(), Some(*payload));
            }
            prop_assert!(s.valid_len <= bytes.len());
            let wanted: &[u8] = b"a{\"n\":1}\n";
            let found = s.records.iter().any(|(_, p)| *p == wanted);
            prop_assert!(found, "the intact record was not found");
        }
    }
}
