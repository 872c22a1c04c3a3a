//! Numbers as real-world DBC files write them.

/// An attribute bound as an integer: `as` saturates (and maps NaN to 0), which is what an
/// out-of-range bound should do.
pub fn clamp_i64(v: f64) -> i64 {
    v as i64
}

/// A real-world number: `.25`, `-.5`, `1e-06`, `+1`, `0x1F`. Rejects `inf`/`nan` words.
pub fn parse_f64(text: &str) -> Option<f64> {
    let (neg, body) = match text.as_bytes().first() {
        Some(b'-') => (true, text.get(1..)?),
        Some(b'+') => (false, text.get(1..)?),
        _ => (false, text),
    };
    if !body.starts_with(|c: char| c.is_ascii_digit() || c == '.') {
        return None;
    }
    let v = if let Some(hex) = body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")) {
        u64::from_str_radix(hex, 16).ok()? as f64
    } else {
        body.parse::<f64>().ok()?
    };
    Some(if neg { -v } else { v })
}

/// An integer, allowing hex and integral floats (`1.0`, `1e3`).
pub fn parse_i64(text: &str) -> Option<i64> {
    let (neg, body) = match text.as_bytes().first() {
        Some(b'-') => (true, text.get(1..)?),
        Some(b'+') => (false, text.get(1..)?),
        _ => (false, text),
    };
    let mag: i128 = if let Some(hex) = body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")) {
        i128::from(u64::from_str_radix(hex, 16).ok()?)
    } else if let Ok(v) = body.parse::<u64>() {
        i128::from(v)
    } else {
        let f = parse_f64(body)?;
        if f.fract() != 0.0 || !f.is_finite() || f.abs() > 9.2e18 {
            return None;
        }
        f as i128
    };
    i64::try_from(if neg { -mag } else { mag }).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_world_float_forms_parse() {
        let got: Vec<Option<f64>> = [".25", "-.5", "1e-06", "+1", "0x10", "3.4E+038", "1.", "-0"]
            .iter()
            .map(|t| parse_f64(t))
            .collect();
        assert_eq!(
            got,
            [
                Some(0.25),
                Some(-0.5),
                Some(1e-6),
                Some(1.0),
                Some(16.0),
                Some(3.4e38),
                Some(1.0),
                Some(-0.0)
            ]
        );
    }

    #[test]
    fn words_that_rust_would_read_as_floats_are_not_numbers() {
        assert_eq!(["inf", "NaN", "-infinity", "", "-", "e5", "0x"].map(parse_f64), [None; 7]);
    }

    #[test]
    fn integers_accept_hex_and_integral_floats_but_not_overflow() {
        assert_eq!(parse_i64("-0x10"), Some(-16));
        assert_eq!(parse_i64("1e3"), Some(1000));
        assert_eq!(parse_i64("1.5"), None);
        assert_eq!(parse_i64("9223372036854775808"), None);
        assert_eq!(parse_i64("-9223372036854775808"), Some(i64::MIN));
    }
}
