//! memcached's number readers (and the one decimal writer), in one place.
//!
//! memcached reads every number a client or an operator gives it through
//! the `safe_strto*` wrappers of its `util.c` around C's `strtoull`,
//! `strtol` and `strtod`, and their quirks are part of what a client sees:
//! leading blanks and a `+` are accepted; a number may be followed by a
//! blank and then anything; a `-` before an unsigned number wraps it as C
//! does and is refused only when the result would look negative as a
//! signed value (so `-0` is 0 and `-18446744073709551615` is 1); 32-bit
//! results are narrowed without a range check (`4294967297` is 1).
//! Every parser in gannet that stands for one of those wrappers (text and
//! meta commands, admin commands, SASL, command-line options) calls this
//! module, so they all agree with memcached and with each other.

/// C's `isspace` in the "C" locale.
#[inline]
pub fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// The scan `strtoull` and `strtol` share, with the check every wrapper
/// makes after it: blanks, an optional sign, at least one digit, then the
/// end or a blank. Returns the sign and the magnitude; `None` when there
/// is no digit, when something else follows, or when the magnitude does
/// not fit 64 bits (C's `ERANGE`).
#[inline]
fn scan(s: &[u8]) -> Option<(bool, u64)> {
    let mut i = s.iter().take_while(|&&b| is_c_space(b)).count();
    let mut negative = false;
    if let Some(&sign @ (b'+' | b'-')) = s.get(i) {
        negative = sign == b'-';
        i += 1;
    }
    let start = i;
    let mut magnitude: u64 = 0;
    while let Some(&d @ b'0'..=b'9') = s.get(i) {
        magnitude = magnitude
            .checked_mul(10)?
            .checked_add(u64::from(d - b'0'))?;
        i += 1;
    }
    if i == start {
        return None;
    }
    match s.get(i) {
        Some(&b) if !is_c_space(b) => None,
        _ => Some((negative, magnitude)),
    }
}

/// `safe_strtoull`: C's wrap of a negative number, refused only when the
/// wrapped value has its top bit set and the text contains a `-`.
#[inline]
pub fn strtoull(s: &[u8]) -> Option<u64> {
    let (negative, magnitude) = scan(s)?;
    let value = if negative {
        magnitude.wrapping_neg()
    } else {
        magnitude
    };
    if (value as i64) < 0 && s.contains(&b'-') {
        return None;
    }
    Some(value)
}

/// `safe_strtoul` into its `uint32_t`: on a 64-bit host `unsigned long`
/// is `strtoull`'s type, and the store into 32 bits keeps the low bits.
#[inline]
pub fn strtoul(s: &[u8]) -> Option<u32> {
    strtoull(s).map(|v| v as u32)
}

/// C's `strtol` as `safe_strtol` checks it: a `long` (64 bits), `None`
/// outside its range.
#[inline]
fn strtol_long(s: &[u8]) -> Option<i64> {
    let (negative, magnitude) = scan(s)?;
    if negative {
        (magnitude <= 1 << 63).then(|| (magnitude as i64).wrapping_neg())
    } else {
        i64::try_from(magnitude).ok()
    }
}

/// `safe_strtol` into its `int32_t`: the `long`, narrowed without a range
/// check (`2147483648` is -2147483648).
#[inline]
pub fn strtol(s: &[u8]) -> Option<i32> {
    strtol_long(s).map(|v| v as i32)
}

/// `safe_strtod` for decimal numbers: blanks, the longest decimal
/// floating-point prefix, then the end or a blank; `None` on C's `ERANGE`
/// (a value too large for a double, or a non-zero one too small for a
/// normal double). C's `strtod` also reads hexadecimal, `inf` and `nan`;
/// those are refused here, since every memcached setting read this way is
/// a ratio or a factor, for which they have no meaning.
pub fn strtod(s: &[u8]) -> Option<f64> {
    let skip = s.iter().take_while(|&&b| is_c_space(b)).count();
    let t = &s[skip..];
    let mut end = usize::from(matches!(t.first(), Some(b'+' | b'-')));
    let digits = |from: usize| t[from..].iter().take_while(|b| b.is_ascii_digit()).count();
    let int_digits = digits(end);
    end += int_digits;
    let mut mantissa_digits = int_digits;
    if t.get(end) == Some(&b'.') {
        let frac_digits = digits(end + 1);
        if int_digits + frac_digits > 0 {
            end += 1 + frac_digits;
            mantissa_digits += frac_digits;
        }
    }
    if mantissa_digits == 0 {
        return None;
    }
    if let Some(b'e' | b'E') = t.get(end) {
        let sign = usize::from(matches!(t.get(end + 1), Some(b'+' | b'-')));
        let exp_digits = digits(end + 1 + sign);
        if exp_digits > 0 {
            end += 1 + sign + exp_digits;
        }
    }
    if t.get(end).is_some_and(|&b| !is_c_space(b)) {
        return None;
    }
    let literal = std::str::from_utf8(&t[..end]).ok()?;
    let value: f64 = literal.parse().ok()?;
    let nonzero = t[..end]
        .iter()
        .take_while(|&&b| !matches!(b, b'e' | b'E'))
        .any(|&b| matches!(b, b'1'..=b'9'));
    let underflow = nonzero && !value.is_normal();
    (value.is_finite() && !underflow).then_some(value)
}

/// The decimal form of `n`, written into the end of `buf`.
#[inline]
pub fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &buf[i..]
}

/// Append the decimal form of `n`, without allocating.
#[inline]
pub fn push_u64(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(decimal(n, &mut [0; 20]));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What glibc's `strtoull`/`strtol` give through memcached's wrappers
    /// (checked against C on this host, and against memcached's replies
    /// where a command exposes them).
    #[test]
    fn integers_as_memcached_reads_them() {
        let u64s: &[(&str, Option<u64>)] = &[
            ("0", Some(0)),
            ("42", Some(42)),
            (" \t+42", Some(42)),
            ("42 trailing words", Some(42)),
            ("42\r", Some(42)),
            ("42x", None),
            ("", None),
            (" ", None),
            ("+", None),
            ("-", None),
            ("-0", Some(0)),
            ("-1", None),
            ("18446744073709551615", Some(u64::MAX)),
            ("18446744073709551616", None),
            ("-18446744073709551615", Some(1)),
            ("-9223372036854775809", Some(9223372036854775807)),
            ("-9223372036854775808", None),
            ("9223372036854775808", Some(1 << 63)),
            ("9223372036854775808 -", None),
        ];
        for &(s, want) in u64s {
            assert_eq!(strtoull(s.as_bytes()), want, "strtoull {s:?}");
        }
        let u32s: &[(&str, Option<u32>)] = &[
            ("4294967295", Some(u32::MAX)),
            ("4294967296", Some(0)),
            ("4294967297", Some(1)),
            ("18446744073709551615", Some(u32::MAX)),
            ("-9223372036854775809", Some(u32::MAX)),
            ("-5", None),
        ];
        for &(s, want) in u32s {
            assert_eq!(strtoul(s.as_bytes()), want, "strtoul {s:?}");
        }
        let i32s: &[(&str, Option<i32>)] = &[
            ("-5", Some(-5)),
            ("+5 ", Some(5)),
            ("2147483648", Some(i32::MIN)),
            ("4294967297", Some(1)),
            ("99999999999", Some(1215752191)),
            ("9223372036854775807", Some(-1)),
            ("9223372036854775808", None),
            ("-9223372036854775808", Some(0)),
            ("-9223372036854775809", None),
            ("1.5", None),
        ];
        for &(s, want) in i32s {
            assert_eq!(strtol(s.as_bytes()), want, "strtol {s:?}");
        }
    }

    #[test]
    fn doubles_as_memcached_reads_them() {
        let cases: &[(&str, Option<f64>)] = &[
            ("0.25", Some(0.25)),
            (" 2", Some(2.0)),
            ("+.5", Some(0.5)),
            ("3.", Some(3.0)),
            ("1e2", Some(100.0)),
            ("1E+2 x", Some(100.0)),
            ("1e", None),
            ("1e+", None),
            ("0", Some(0.0)),
            ("-0.0", Some(-0.0)),
            ("0e999", Some(0.0)),
            (".", None),
            ("", None),
            ("x", None),
            ("0.5x", None),
            ("1e999", None),
            ("1e-400", None),
            ("2.2250738585072014e-308", Some(f64::MIN_POSITIVE)),
            ("1e-310", None),
            ("inf", None),
            ("nan", None),
            ("0x10", None),
        ];
        for &(s, want) in cases {
            assert_eq!(strtod(s.as_bytes()), want, "strtod {s:?}");
        }
    }

    #[test]
    fn writes_decimals() {
        let mut out = Vec::new();
        push_u64(&mut out, 0);
        out.push(b' ');
        push_u64(&mut out, u64::MAX);
        assert_eq!(out, b"0 18446744073709551615");
    }
}
