//! Percent-encoding of one URL path segment, and fresh request ids.
//!
//! API.md: identifiers in a path are percent-encoded, and a SKU may contain `/`. Only the
//! unreserved characters of RFC 3986 (`A-Z a-z 0-9 - . _ ~`) pass as they are; every other byte of
//! the UTF-8 text becomes `%XX`. That is stricter than RFC 3986 needs, and so never wrong.

use crate::ClientError;

/// Encodes `text` as one path segment: unreserved characters pass, every other byte is `%XX`.
#[must_use]
pub fn encode_path_segment(text: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            encoded.push(char::from(byte));
        } else {
            encoded.push('%');
            encoded.push(char::from(HEX[usize::from(byte >> 4)]));
            encoded.push(char::from(HEX[usize::from(byte & 0x0f)]));
        }
    }
    encoded
}

/// Encodes an identifier for a path, refusing the values no URL can carry as a segment.
///
/// # Errors
/// [`ClientError::InvalidInput`] for an empty value, and for `.` and `..`: URL parsers resolve
/// those (encoded or not) as "this" and "the parent" directory, so the request would reach
/// another endpoint.
pub(crate) fn segment(field: &str, value: &str) -> Result<String, ClientError> {
    if value.is_empty() || value == "." || value == ".." {
        return Err(ClientError::InvalidInput(format!(
            "{field} {value:?} cannot be put in a URL path"
        )));
    }
    Ok(encode_path_segment(value))
}

/// A fresh request id: 128 random bits as a UUID version 4 (`xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx`).
///
/// The bits come from the operating system; should it have none to give, from the clock, the
/// process id and a counter, which is still unique enough for one process's retries.
#[must_use]
pub fn new_request_id() -> String {
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        bytes = fallback_bits();
    }
    // Version 4, RFC 4122 variant.
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

fn fallback_bits() -> [u8; 16] {
    use std::sync::atomic::{AtomicU32, Ordering};
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&(nanos as u64).to_le_bytes());
    bytes[8..12].copy_from_slice(&std::process::id().to_le_bytes());
    bytes[12..].copy_from_slice(&COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreserved_characters_pass_unchanged() {
        let text = "AZaz09-._~";
        assert_eq!(encode_path_segment(text), text);
    }

    #[test]
    fn a_slash_in_a_sku_is_encoded_so_it_stays_one_segment() {
        assert_eq!(encode_path_segment("RED/XL"), "RED%2FXL");
    }

    #[test]
    fn reserved_and_space_characters_are_encoded() {
        assert_eq!(
            encode_path_segment("a b?c#d%e+f&g=h@i:j"),
            "a%20b%3Fc%23d%25e%2Bf%26g%3Dh%40i%3Aj"
        );
    }

    #[test]
    fn multibyte_utf8_is_encoded_byte_by_byte_in_upper_case_hex() {
        assert_eq!(encode_path_segment("é"), "%C3%A9");
        assert_eq!(encode_path_segment("日"), "%E6%97%A5");
    }

    #[test]
    fn dot_segments_and_empty_values_are_refused() {
        for value in ["", ".", ".."] {
            let error = segment("sku", value).expect_err("refused");
            assert!(matches!(error, ClientError::InvalidInput(_)), "{error}");
        }
        assert_eq!(segment("sku", "...").expect("fine"), "...");
    }

    #[test]
    fn request_ids_are_uuid_v4_shaped_and_differ() {
        let first = new_request_id();
        let second = new_request_id();
        assert_ne!(first, second);
        assert_eq!(first.len(), 36);
        let groups: Vec<&str> = first.split('-').collect();
        assert_eq!(
            groups.iter().map(|g| g.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12]
        );
        assert!(groups[2].starts_with('4'), "{first}");
        assert!(
            first
                .chars()
                .all(|c| c == '-' || c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
    }
}
