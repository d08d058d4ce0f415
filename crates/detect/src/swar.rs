//! Eight bytes at a time: byte-class tests on a `u64` holding eight bytes of text, for the
//! scanner's passes over every byte (the layout pass, digit runs, context windows). Plain
//! integer arithmetic, since the crate forbids the `unsafe` that SIMD intrinsics need: each test
//! sets the high bit of every byte in its class, so a pass branches once per eight bytes rather
//! than once per byte.

/// The high bit of every byte.
pub(crate) const HIGH: u64 = 0x8080_8080_8080_8080;
const ONES: u64 = 0x0101_0101_0101_0101;

/// `b[i..i + 8]` as a little-endian word, padded with zero bytes past the end of `b`.
#[inline]
pub(crate) fn load(b: &[u8], i: usize) -> u64 {
    let mut word = [0u8; 8];
    match b.get(i..i + 8) {
        Some(eight) => word.copy_from_slice(eight),
        None => {
            let rest = &b[i.min(b.len())..];
            word[..rest.len()].copy_from_slice(rest);
        }
    }
    u64::from_le_bytes(word)
}

/// The bytes of `x` in `lo..=hi` (both ASCII), as the high bit of each. The sums are taken on
/// each byte's low seven bits, so none carries into the next byte; a byte with its high bit
/// set is in no class.
#[inline]
pub(crate) fn in_range(x: u64, lo: u8, hi: u8) -> u64 {
    let y = x & !HIGH;
    (y + (0x80 - u64::from(lo)) * ONES) & !(y + (0x7F - u64::from(hi)) * ONES) & !x & HIGH
}

/// The offset of the first byte at or after `from` that `hits` marks in its word, or
/// `b.len()`. Bytes past the end are zero, whatever `hits` says of them.
#[inline]
pub(crate) fn position(b: &[u8], from: usize, hits: impl Fn(u64) -> u64) -> usize {
    let mut i = from;
    while let Some(eight) = b.get(i..i + 8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(eight);
        let h = hits(u64::from_le_bytes(word));
        if h != 0 {
            return i + (h.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    let h = hits(load(b, i));
    if h == 0 {
        return b.len();
    }
    (i + (h.trailing_zeros() / 8) as usize).min(b.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_match_byte_tests() {
        let bytes: Vec<u8> = (0..=255).collect();
        for i in 0..bytes.len() {
            let x = load(&bytes, i);
            for (lo, hi) in [
                (b'0', b'9'),
                (b'0', b':'),
                (b'@', b'@'),
                (b'a', b'z'),
                (0, 0x7F),
            ] {
                let got = in_range(x, lo, hi);
                for k in 0..8 {
                    let byte = bytes.get(i + k).copied().unwrap_or(0);
                    let want = (lo..=hi).contains(&byte);
                    assert_eq!(
                        got >> (8 * k + 7) & 1 == 1,
                        want,
                        "{byte:#x} in {lo:#x}..={hi:#x}"
                    );
                }
            }
        }
    }

    #[test]
    fn positions() {
        let digit = |x| in_range(x, b'0', b'9');
        let not_digit = |x| !in_range(x, b'0', b'9') & HIGH;
        let text = b"abcdefghij1klmnopqrstuvw2345";
        for from in 0..=text.len() + 2 {
            let naive = |f: fn(&u8) -> bool| {
                (from..text.len())
                    .find(|&i| f(&text[i]))
                    .unwrap_or(text.len())
            };
            assert_eq!(
                position(text, from, digit),
                naive(u8::is_ascii_digit),
                "{from}"
            );
            assert_eq!(
                position(text, from, not_digit),
                naive(|c| !c.is_ascii_digit()),
                "{from}"
            );
        }
    }
}
