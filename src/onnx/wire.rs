//! A check of protobuf bytes before they are decoded, so that decoding allocates little more
//! than the file's own size.
//!
//! Decoding with prost allocates a struct for every embedded message: an empty `NodeProto`
//! costs 2 bytes of the file (a tag and a zero length) and a few hundred bytes of memory, so
//! a 20 MB file of empty nodes would take gigabytes. Every other allocation is bounded by the
//! bytes it is decoded from (strings, tensor data, packed numbers). So the walk below counts
//! the length-delimited fields, recursively, without allocating, and refuses the bytes when
//! there are more than [`MAX_MESSAGES`] or when the wire format itself is broken (a
//! truncated file, a length that runs past its message, an unknown wire type).
//!
//! The walk knows no schema: a length-delimited field is a message if its bytes parse as
//! one (and is counted with its own fields), or bytes and strings otherwise. Counting a
//! `bytes` field that happens to parse as a message only makes the count larger, so the
//! bound holds either way.
//!
//! Wire format: each field is a varint key `field_number << 3 | wire_type`, then a varint
//! (type 0), 8 bytes (type 1), a varint length and that many bytes (type 2), or 4 bytes
//! (type 5). Types 3 and 4 (groups) are not used by ONNX and are refused.

/// Most length-delimited fields (messages, strings, byte strings) accepted in one file.
/// A sequential CNN exported by PyTorch has a few hundred; ResNet-50 a few tens of thousands.
pub const MAX_MESSAGES: usize = 100_000;

/// Deepest nesting looked into: prost's own recursion limit, so every message that prost
/// would decode is counted.
const MAX_DEPTH: usize = 100;

/// Checks that `bytes` is one well-formed protobuf message with at most [`MAX_MESSAGES`]
/// length-delimited fields. The error says what is wrong and at which byte offset.
pub fn check(bytes: &[u8]) -> Result<(), String> {
    let mut count = 0;
    walk(bytes, 0, 0, &mut count).map_err(|e| match e {
        Stop::Malformed(msg) => msg,
        Stop::TooMany(at) => {
            format!("more than {MAX_MESSAGES} embedded messages and strings (at byte {at})")
        }
    })
}

/// Why a walk stopped.
enum Stop {
    /// The bytes are not a message (inside a field: they are bytes or a string).
    Malformed(String),
    /// The count passed [`MAX_MESSAGES`] at this byte offset: the whole file is refused.
    TooMany(usize),
}

/// Walks the fields of the message `buf` (at `offset` in the file), adding its
/// length-delimited fields, and those of the messages inside them, to `count`.
///
/// What an attempt to read a field as a message counted is kept even when the attempt
/// fails: prost allocates as it goes, so a graph of many empty nodes followed by a broken
/// byte would cost as much memory before its error.
fn walk(buf: &[u8], offset: usize, depth: usize, count: &mut usize) -> Result<(), Stop> {
    let bad = |msg: String| Stop::Malformed(msg);
    let mut pos = 0;
    while pos < buf.len() {
        let at = offset + pos;
        let key = varint(buf, &mut pos).ok_or_else(|| bad(truncated(at, "a field's key")))?;
        if key >> 3 == 0 {
            return Err(bad(format!("field number 0 at byte {at}")));
        }
        match key & 7 {
            0 => {
                varint(buf, &mut pos).ok_or_else(|| bad(truncated(at, "a varint")))?;
            }
            1 => pos = skip(buf, pos, 8).ok_or_else(|| bad(truncated(at, "an 8-byte value")))?,
            5 => pos = skip(buf, pos, 4).ok_or_else(|| bad(truncated(at, "a 4-byte value")))?,
            2 => {
                let len = varint(buf, &mut pos).ok_or_else(|| bad(truncated(at, "a length")))?;
                let start = pos;
                let end = usize::try_from(len)
                    .ok()
                    .and_then(|l| skip(buf, start, l))
                    .ok_or_else(|| {
                        bad(format!(
                            "truncated: the field at byte {at} announces {len} bytes, {} remain",
                            buf.len() - start
                        ))
                    })?;
                *count += 1;
                if *count > MAX_MESSAGES {
                    return Err(Stop::TooMany(at));
                }
                if depth < MAX_DEPTH && end > start {
                    // A message if it parses as one; bytes or a string otherwise.
                    match walk(&buf[start..end], offset + start, depth + 1, count) {
                        Err(Stop::TooMany(at)) => return Err(Stop::TooMany(at)),
                        Ok(()) | Err(Stop::Malformed(_)) => {}
                    }
                }
                pos = end;
            }
            t => {
                return Err(bad(format!(
                    "wire type {t} at byte {at} (not an ONNX file?)"
                )))
            }
        }
    }
    Ok(())
}

fn truncated(at: usize, what: &str) -> String {
    format!("truncated: {what} at byte {at} is cut short")
}

/// `pos + n` if `buf` has `n` bytes from `pos`.
fn skip(buf: &[u8], pos: usize, n: usize) -> Option<usize> {
    let end = pos.checked_add(n)?;
    (end <= buf.len()).then_some(end)
}

/// Reads a varint (at most 10 bytes) at `pos`, moving `pos` past it.
fn varint(buf: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for i in 0..10 {
        let b = *buf.get(*pos)?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_message_passes() {
        // Field 1 varint 150 (the protobuf docs' example), field 2 the string "hi".
        assert!(check(&[0x08, 0x96, 0x01, 0x12, 0x02, b'h', b'i']).is_ok());
    }

    #[test]
    fn a_length_past_the_end_is_truncation() {
        let e = check(&[0x12, 0x05, b'h', b'i']).unwrap_err();
        assert!(
            e.contains("truncated") && e.contains("announces 5 bytes, 2 remain"),
            "{e}"
        );
    }

    #[test]
    fn a_cut_varint_is_truncation() {
        assert!(check(&[0x08, 0x96]).unwrap_err().contains("truncated"));
    }

    #[test]
    fn too_many_empty_messages_are_refused_before_decoding() {
        // Field 1, length 0, repeated: each would be a struct once decoded.
        let bytes: Vec<u8> = [0x0a, 0x00].repeat(MAX_MESSAGES + 1);
        assert!(check(&bytes).unwrap_err().contains("more than"));
        assert!(check(&bytes[..2 * MAX_MESSAGES]).is_ok());
    }

    #[test]
    fn what_a_failed_attempt_counted_is_kept() {
        // One field holding MAX_MESSAGES empty fields, then a broken byte (wire type 7):
        // not a message, but prost would have allocated the fields before finding out.
        let mut inner: Vec<u8> = [0x0a, 0x00].repeat(MAX_MESSAGES);
        inner.push(0x0f);
        assert!(check(&field_1(&inner)).unwrap_err().contains("more than"));
    }

    #[test]
    fn nested_messages_count_too() {
        // One outer field holding MAX_MESSAGES empty inner fields: MAX_MESSAGES + 1 in all.
        let inner: Vec<u8> = [0x0a, 0x00].repeat(MAX_MESSAGES);
        assert!(check(&field_1(&inner)).unwrap_err().contains("more than"));
    }

    /// Field 1, length-delimited (tag byte 0x0a, the length as a varint), holding `inner`.
    fn field_1(inner: &[u8]) -> Vec<u8> {
        let mut bytes = vec![0x0a];
        let mut len = inner.len();
        while len >= 0x80 {
            bytes.push((len as u8 & 0x7f) | 0x80);
            len >>= 7;
        }
        bytes.push(len as u8);
        bytes.extend_from_slice(inner);
        bytes
    }
}
