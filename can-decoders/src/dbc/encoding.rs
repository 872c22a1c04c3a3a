//! Text decoding: DBC files from CANdb++ are Windows-1252, newer ones UTF-8.

use std::borrow::Cow;

/// Windows-1252 code points for bytes 0x80..=0x9F. The five bytes the code page leaves undefined
/// map to the C1 control of the same value, so decoding never fails.
const CP1252_HIGH: [char; 32] = [
    '\u{20AC}', '\u{0081}', '\u{201A}', '\u{0192}', '\u{201E}', '\u{2026}', '\u{2020}', '\u{2021}',
    '\u{02C6}', '\u{2030}', '\u{0160}', '\u{2039}', '\u{0152}', '\u{008D}', '\u{017D}', '\u{008F}',
    '\u{0090}', '\u{2018}', '\u{2019}', '\u{201C}', '\u{201D}', '\u{2022}', '\u{2013}', '\u{2014}',
    '\u{02DC}', '\u{2122}', '\u{0161}', '\u{203A}', '\u{0153}', '\u{009D}', '\u{017E}', '\u{0178}',
];

/// UTF-8 when the bytes are valid UTF-8 (a BOM is skipped), else Windows-1252.
pub fn decode_text(bytes: &[u8]) -> Cow<'_, str> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    match std::str::from_utf8(bytes) {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => Cow::Owned(bytes.iter().map(|&b| cp1252_char(b)).collect()),
    }
}

fn cp1252_char(b: u8) -> char {
    if (0x80..=0x9F).contains(&b) {
        CP1252_HIGH.get(usize::from(b - 0x80)).copied().unwrap_or('\u{FFFD}')
    } else {
        char::from(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_utf8_is_kept_and_bom_skipped() {
        assert_eq!(decode_text("\u{FEFF}°C".as_bytes()), "°C");
    }

    #[test]
    fn invalid_utf8_is_read_as_cp1252() {
        assert_eq!(decode_text(b"\xB0C \x80 \x9F \x81"), "°C € Ÿ \u{81}");
    }
}
