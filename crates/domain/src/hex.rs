//! Lowercase hexadecimal: the one encoder every crate uses (signatures, entity tags, cache keys).

const DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Writes `bytes` as lowercase hex into `out`, two digits a byte; `out` must be twice as long.
pub fn encode_to(bytes: &[u8], out: &mut [u8]) {
    for (byte, pair) in bytes.iter().zip(out.chunks_exact_mut(2)) {
        pair[0] = DIGITS[usize::from(byte >> 4)];
        pair[1] = DIGITS[usize::from(byte & 0xf)];
    }
}

/// `bytes` as lowercase hex, two digits a byte.
pub fn encode(bytes: &[u8]) -> String {
    let mut out = vec![0; bytes.len() * 2];
    encode_to(bytes, &mut out);
    out.into_iter().map(char::from).collect()
}

/// Appends `n` as 16 lowercase hex digits to `out`.
pub fn push_u64(out: &mut String, n: u64) {
    let mut digits = [0; 16];
    encode_to(&n.to_be_bytes(), &mut digits);
    out.extend(digits.iter().copied().map(char::from));
}

/// The `N` bytes that `s` (exactly `2 * N` hex digits, either case) encodes.
pub fn decode_array<const N: usize>(s: &str) -> Option<[u8; N]> {
    let digits = s.as_bytes();
    if digits.len() != 2 * N {
        return None;
    }
    let nibble = |c: u8| char::from(c).to_digit(16).and_then(|d| u8::try_from(d).ok());
    let mut out = [0; N];
    for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        *byte = nibble(pair[0])? << 4 | nibble(pair[1])?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoding_inverts_encoding_and_refuses_anything_else() {
        let bytes = [0x00, 0x0f, 0xa0, 0xff];
        assert_eq!(decode_array::<4>(&encode(&bytes)), Some(bytes));
        assert_eq!(decode_array::<4>("000FA0FF"), Some(bytes));
        assert_eq!(decode_array::<4>("000fa0f"), None, "too short");
        assert_eq!(decode_array::<4>("000fa0fff0"), None, "too long");
        assert_eq!(decode_array::<4>("000fa0fg"), None, "not a digit");
        assert_eq!(decode_array::<2>("+1ff"), None, "a sign is not a digit");
    }

    #[test]
    fn bytes_are_two_lowercase_digits_each() {
        assert_eq!(encode(&[]), "");
        assert_eq!(encode(&[0x00, 0x0f, 0xa0, 0xff]), "000fa0ff");
        let mut s = String::from("g:");
        push_u64(&mut s, 0x0123_4567_89ab_cdef);
        assert_eq!(s, "g:0123456789abcdef");
        let mut zero = String::new();
        push_u64(&mut zero, 0);
        assert_eq!(zero, "0000000000000000");
    }
}
