//! Base62 (`0-9A-Za-z`): random strings for secrets and ids, and fixed-width checksums.

use rand::{CryptoRng, Rng, RngCore, distributions::Alphanumeric};

const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// `len` characters drawn uniformly from the base62 alphabet (5.95 bits each).
pub fn random<R: RngCore + CryptoRng>(rng: &mut R, len: usize) -> String {
    rng.sample_iter(&Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

/// `value` as exactly six base62 digits, most significant first (62^6 > 2^32).
pub fn encode_u32_fixed6(mut value: u32) -> [u8; 6] {
    let mut out = [b'0'; 6];
    for slot in out.iter_mut().rev() {
        *slot = ALPHABET[(value % 62) as usize];
        value /= 62;
    }
    out
}

pub fn is_base62(bytes: &[u8]) -> bool {
    bytes.iter().all(u8::is_ascii_alphanumeric)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_width_encoding_covers_the_whole_u32_range() {
        assert_eq!(&encode_u32_fixed6(0), b"000000");
        assert_eq!(&encode_u32_fixed6(61), b"00000z");
        assert_eq!(&encode_u32_fixed6(62), b"000010");
        assert_eq!(&encode_u32_fixed6(u32::MAX), b"4gfFC3");
    }

    #[test]
    fn random_strings_use_only_the_alphabet() {
        let s = random(&mut rand::thread_rng(), 500);
        assert_eq!(s.len(), 500);
        assert!(is_base62(s.as_bytes()));
    }
}
