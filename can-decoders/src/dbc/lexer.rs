//! Tokens of a DBC file, with 1-based line and column (in characters) for every token.

/// What a token is. Numbers and names share `Word`: DBC names may start with a digit and the
/// parser knows from the grammar which one it expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A run of `[A-Za-z0-9_.]`, plus an exponent sign inside numbers (`1e-06`).
    Word,
    /// A quoted string; `text` is the raw content between the quotes (escapes not yet removed).
    Str,
    /// Any other single character (`:`, `;`, `|`, `@`, `+`, `-`, ...).
    Punct,
}

#[derive(Debug, Clone, Copy)]
pub struct Token<'a> {
    pub kind: Kind,
    pub text: &'a str,
    pub line: u32,
    pub column: u32,
    /// First token on its line: statements start here, so error recovery resumes here.
    pub bol: bool,
}

impl Token<'_> {
    pub fn is_punct(&self, c: char) -> bool {
        self.kind == Kind::Punct && self.text.starts_with(c)
    }

    pub fn is_word(&self, w: &str) -> bool {
        self.kind == Kind::Word && self.text == w
    }

    /// The string value with `\"` unescaped (the only escape CANdb++ and cantools know).
    pub fn string_value(&self) -> String {
        self.text.replace("\\\"", "\"")
    }

    /// How the token reads in an error message.
    pub fn describe(&self) -> String {
        match self.kind {
            Kind::Str => {
                let short: String = self.text.chars().take(20).collect();
                format!("\"{short}\"")
            }
            _ => {
                let short: String = self.text.chars().take(40).collect();
                format!("'{short}'")
            }
        }
    }
}

/// A string that is never closed: nothing after it can be tokenized reliably.
#[derive(Debug)]
pub struct UnterminatedString {
    pub line: u32,
    pub column: u32,
}

fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '.'
}

/// Splits `text` into tokens, skipping whitespace and `//` comments.
pub fn tokenize(text: &str) -> Result<Vec<Token<'_>>, UnterminatedString> {
    let mut tokens = Vec::with_capacity(text.len() / 4);
    let bytes = text.as_bytes();
    let mut i = 0usize;
    let mut line = 1u32;
    let mut line_start = 0usize;
    let mut bol = true;
    // Columns are counted incrementally from the last token on the line, so a huge single line
    // stays linear.
    let mut col_cache = (0usize, 1u32);
    let mut column = |i: usize, line_start: usize| -> u32 {
        if col_cache.0 < line_start || col_cache.0 > i {
            col_cache = (line_start, 1);
        }
        let n = text.get(col_cache.0..i).map_or(0, |s| s.chars().count());
        col_cache = (i, col_cache.1.saturating_add(u32::try_from(n).unwrap_or(u32::MAX)));
        col_cache.1
    };
    while let Some(&b) = bytes.get(i) {
        match b {
            // A lone `\r` (classic Mac line end) ends a line too; `\r\n` ends it at the `\n`.
            b'\n' | b'\r' if b == b'\n' || bytes.get(i + 1) != Some(&b'\n') => {
                i += 1;
                line = line.saturating_add(1);
                line_start = i;
                bol = true;
            }
            b' ' | b'\t' | b'\r' | b'\x0c' | b'\x0b' => i += 1,
            b'/' if bytes.get(i + 1) == Some(&b'/') => {
                while bytes.get(i).is_some_and(|&c| c != b'\n') {
                    i += 1;
                }
            }
            b'"' => {
                let (start_line, start_col) = (line, column(i, line_start));
                let start = i + 1;
                let mut j = start;
                loop {
                    match bytes.get(j) {
                        None => {
                            return Err(UnterminatedString { line: start_line, column: start_col })
                        }
                        Some(b'\\') if bytes.get(j + 1) == Some(&b'"') => j += 2,
                        Some(b'"') => break,
                        Some(&c)
                            if c == b'\n' || (c == b'\r' && bytes.get(j + 1) != Some(&b'\n')) =>
                        {
                            j += 1;
                            line = line.saturating_add(1);
                            line_start = j;
                        }
                        Some(_) => j += 1,
                    }
                }
                tokens.push(Token {
                    kind: Kind::Str,
                    text: text.get(start..j).unwrap_or(""),
                    line: start_line,
                    column: start_col,
                    bol,
                });
                bol = false;
                i = j + 1;
            }
            _ => {
                let start = i;
                let col = column(i, line_start);
                let first = text.get(i..).and_then(|s| s.chars().next()).unwrap_or('\u{FFFD}');
                if is_word_char(first) {
                    let numeric = first.is_ascii_digit() || first == '.';
                    while let Some(&c) = bytes.get(i) {
                        let exponent_sign = numeric
                            && (c == b'+' || c == b'-')
                            && matches!(bytes.get(i.wrapping_sub(1)), Some(b'e' | b'E'))
                            && bytes.get(i + 1).is_some_and(u8::is_ascii_digit)
                            && text.get(start..i.saturating_sub(1)).is_some_and(|m| {
                                m.bytes().all(|d| d.is_ascii_digit() || d == b'.')
                            });
                        if !is_word_char(char::from(c)) && !exponent_sign {
                            break;
                        }
                        i += 1;
                    }
                } else {
                    i += first.len_utf8();
                }
                tokens.push(Token {
                    kind: if is_word_char(first) { Kind::Word } else { Kind::Punct },
                    text: text.get(start..i).unwrap_or(""),
                    line,
                    column: col,
                    bol,
                });
                bol = false;
            }
        }
    }
    Ok(tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(s: &str) -> Vec<&str> {
        tokenize(s).map(|t| t.into_iter().map(|t| t.text).collect()).unwrap_or_default()
    }

    #[test]
    fn numbers_with_exponent_and_leading_dot_are_one_word() {
        assert_eq!(
            texts("(1e-06,-.5) @1+ 2-3"),
            ["(", "1e-06", ",", "-", ".5", ")", "@", "1", "+", "2", "-", "3"]
        );
    }

    #[test]
    fn names_with_e_followed_by_minus_are_not_exponents() {
        assert_eq!(texts("Name-1"), ["Name", "-", "1"]);
    }

    #[test]
    fn strings_keep_escaped_quotes_and_span_lines() {
        let t = tokenize("CM_ \"a \\\"b\\\"\nc\";\nBO_").unwrap_or_default();
        assert_eq!(t.get(1).map(|t| t.string_value()), Some("a \"b\"\nc".to_string()));
        assert_eq!(t.get(3).map(|t| (t.line, t.column, t.bol)), Some((3, 1, true)));
    }

    #[test]
    fn unterminated_string_reports_where_it_starts() {
        let e = tokenize("VERSION \"abc").err();
        assert_eq!(e.map(|e| (e.line, e.column)), Some((1, 9)));
    }

    #[test]
    fn lone_carriage_returns_end_lines() {
        let t = tokenize("BU_: A\rBO_ 1\r\nCM_").unwrap_or_default();
        let pos: Vec<(u32, u32, bool)> = t.iter().map(|t| (t.line, t.column, t.bol)).collect();
        assert_eq!(
            pos,
            [(1, 1, true), (1, 4, false), (1, 6, false), (2, 1, true), (2, 5, false), (3, 1, true)]
        );
    }

    #[test]
    fn columns_count_characters_not_bytes() {
        let t = tokenize("\"°\" x").unwrap_or_default();
        assert_eq!(t.get(1).map(|t| t.column), Some(5));
    }
}
