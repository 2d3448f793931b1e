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

#[cfg(test)]
mod tests {
    use super::*;

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
