//! A JSON tokenizer that runs at compile time.
//!
//! [`defaults!`](crate::defaults) turns a policy's defaults document into a
//! flat array of tokens while the policy compiles, so an invalid document is
//! a compile error and a call in the sandbox never scans its text: reading
//! the defaults is walking the array. The same code tokenizes a tenant's
//! document at run time, where it reports errors with their line and column.
//!
//! A container's token is followed by its contents (an object's as key and
//! value pairs) and records where the token after them is, so a value is
//! skipped in one step.

use alloc::vec;
use alloc::vec::Vec;

/// What a [`Token`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Null,
    True,
    False,
    /// Its text is the number as written.
    Number,
    /// Its text is the string's contents, without escapes.
    Str,
    /// Its text is the string's contents, with at least one escape.
    EscapedStr,
    Object,
    Array,
}

/// One JSON value (or object key) of a tokenized document.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token {
    pub(crate) kind: Kind,
    /// Where its text starts in the document (for a string, after the quote).
    pub(crate) start: usize,
    /// Where its text ends (for a string, at the closing quote; for a
    /// container, after its closing bracket).
    pub(crate) end: usize,
    /// The index of the token after this one and everything inside it.
    pub(crate) next: usize,
}

const EMPTY: Token = Token {
    kind: Kind::Null,
    start: 0,
    end: 0,
    next: 0,
};

/// Why a document is not JSON, and where (a byte offset).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SyntaxError {
    pub(crate) message: &'static str,
    pub(crate) at: usize,
    /// The key it is about, as a range of the document.
    pub(crate) key: Option<(usize, usize)>,
}

/// Deep enough for any configuration; deeper documents are refused rather
/// than risk the policy's small stack.
const MAX_DEPTH: usize = 64;

/// Where the tokens go. With an empty slice, they are only counted.
struct Out<'o> {
    tokens: &'o mut [Token],
    n: usize,
}

impl Out<'_> {
    const fn writing(&self) -> bool {
        !self.tokens.is_empty()
    }

    const fn push(&mut self, kind: Kind, start: usize, end: usize) -> usize {
        let index = self.n;
        if index < self.tokens.len() {
            self.tokens[index] = Token {
                kind,
                start,
                end,
                next: index + 1,
            };
        }
        self.n += 1;
        index
    }

    /// Opens a container: its `next` holds `around`, the container it is
    /// in, until it closes. Returns its index.
    const fn open(&mut self, kind: Kind, start: usize, around: usize) -> usize {
        let index = self.push(kind, start, 0);
        if index < self.tokens.len() {
            self.tokens[index].next = around;
        }
        index
    }

    /// Closes the container at `index`, which ends at `end`. Returns the
    /// container around it.
    const fn close(&mut self, index: usize, end: usize) -> usize {
        if index < self.tokens.len() {
            let around = self.tokens[index].next;
            self.tokens[index].end = end;
            self.tokens[index].next = self.n;
            around
        } else {
            0
        }
    }
}

macro_rules! tri {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(e) => return Err(e),
        }
    };
}

const fn fail<T>(message: &'static str, at: usize) -> Result<T, SyntaxError> {
    Err(SyntaxError {
        message,
        at,
        key: None,
    })
}

const fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && matches!(b[i], b' ' | b'\t' | b'\n' | b'\r') {
        i += 1;
    }
    i
}

/// Tokenizes the whole of `text` into `out`: one value and nothing after
/// it. Returns the number of tokens.
///
/// One loop over the bytes, so a deep document costs no native stack. It
/// keeps no array either (zeroing one costs a policy fuel by the byte): the
/// kinds of the open containers are bits of one word, and while a container
/// is open its token's `next` holds the container around it.
const fn document(text: &str, out: &mut Out<'_>) -> Result<usize, SyntaxError> {
    let b = text.as_bytes();
    // The innermost open container's token, when writing.
    let mut open = 0;
    // Bit `d` says whether the open container at depth `d` is an object.
    let mut objects: u64 = 0;
    let mut depth = 0;
    let mut i = skip_ws(b, 0);
    // Whether the next thing is an object's key (else a value).
    let mut key_next = false;
    loop {
        if key_next {
            if i >= b.len() {
                return fail("EOF while parsing an object", i);
            }
            if b[i] != b'"' {
                return fail("key must be a string", i);
            }
            let (end, escaped) = tri!(string(b, i));
            let key = out.push(
                if escaped { Kind::EscapedStr } else { Kind::Str },
                i + 1,
                end - 1,
            );
            if out.writing() && repeats(b, out, open, key) {
                return Err(SyntaxError {
                    message: "duplicate field",
                    at: end - 1,
                    key: Some((i + 1, end - 1)),
                });
            }
            i = skip_ws(b, end);
            if i >= b.len() {
                return fail("EOF while parsing an object", i);
            }
            if b[i] != b':' {
                return fail("expected `:`", i);
            }
            i = skip_ws(b, i + 1);
        }
        // A value at `i`.
        if i >= b.len() {
            return fail("EOF while parsing a value", i);
        }
        let c = b[i];
        if c == b'{' || c == b'[' {
            if depth == MAX_DEPTH {
                return fail("recursion limit exceeded", i);
            }
            let kind = if c == b'{' { Kind::Object } else { Kind::Array };
            open = out.open(kind, i, open);
            if c == b'{' {
                objects |= 1 << depth;
            } else {
                objects &= !(1 << depth);
            }
            depth += 1;
            i = skip_ws(b, i + 1);
            let empty = if c == b'{' { b'}' } else { b']' };
            if i < b.len() && b[i] == empty {
                // Closed below, as after any value.
            } else {
                key_next = c == b'{';
                continue;
            }
        } else {
            let end = match c {
                b'"' => {
                    let (end, escaped) = tri!(string(b, i));
                    out.push(
                        if escaped { Kind::EscapedStr } else { Kind::Str },
                        i + 1,
                        end - 1,
                    );
                    end
                }
                b'-' | b'0'..=b'9' => {
                    let end = tri!(number(b, i));
                    out.push(Kind::Number, i, end);
                    end
                }
                b't' => tri!(literal(b, i, b"true", Kind::True, out)),
                b'f' => tri!(literal(b, i, b"false", Kind::False, out)),
                b'n' => tri!(literal(b, i, b"null", Kind::Null, out)),
                _ => return fail("expected value", i),
            };
            i = skip_ws(b, end);
        }
        // After a value (or at an empty container's closing bracket): close
        // what ends here, then go on to the next member.
        loop {
            if depth == 0 {
                if i < b.len() {
                    return fail("trailing characters", i);
                }
                return Ok(out.n);
            }
            let in_object = objects & (1 << (depth - 1)) != 0;
            if i >= b.len() {
                return fail(
                    if in_object {
                        "EOF while parsing an object"
                    } else {
                        "EOF while parsing a list"
                    },
                    i,
                );
            }
            let closing = if in_object { b'}' } else { b']' };
            if b[i] == closing {
                open = out.close(open, i + 1);
                depth -= 1;
                i = skip_ws(b, i + 1);
            } else if b[i] == b',' {
                i = skip_ws(b, i + 1);
                key_next = in_object;
                break;
            } else if in_object {
                return fail("expected `,` or `}`", i);
            } else {
                return fail("expected `,` or `]`", i);
            }
        }
    }
}

const fn literal(
    b: &[u8],
    i: usize,
    word: &[u8],
    kind: Kind,
    out: &mut Out<'_>,
) -> Result<usize, SyntaxError> {
    let mut k = 0;
    while k < word.len() {
        if i + k >= b.len() || b[i + k] != word[k] {
            return fail("expected value", i);
        }
        k += 1;
    }
    out.push(kind, i, i + word.len());
    Ok(i + word.len())
}

/// The string whose opening quote is at `i`: where it ends (after the
/// closing quote) and whether it holds an escape.
const fn string(b: &[u8], i: usize) -> Result<(usize, bool), SyntaxError> {
    let mut j = i + 1;
    let mut escaped = false;
    while j < b.len() {
        match b[j] {
            b'"' => return Ok((j + 1, escaped)),
            b'\\' => {
                escaped = true;
                if j + 1 >= b.len() {
                    break;
                }
                match b[j + 1] {
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => j += 2,
                    b'u' => {
                        let mut k = 0;
                        while k < 4 {
                            if j + 2 + k >= b.len() || !b[j + 2 + k].is_ascii_hexdigit() {
                                return fail("invalid escape", j);
                            }
                            k += 1;
                        }
                        j += 6;
                    }
                    _ => return fail("invalid escape", j),
                }
            }
            0..=0x1f => {
                return fail(
                    "control character (\\u0000-\\u001F) found while parsing a string",
                    j,
                );
            }
            _ => j += 1,
        }
    }
    fail("EOF while parsing a string", b.len())
}

/// The number starting at `i`, as JSON writes numbers; returns its end.
const fn number(b: &[u8], i: usize) -> Result<usize, SyntaxError> {
    let mut j = i;
    if b[j] == b'-' {
        j += 1;
    }
    if j >= b.len() || !b[j].is_ascii_digit() {
        return fail("invalid number", j);
    }
    if b[j] == b'0' {
        j += 1;
        if j < b.len() && b[j].is_ascii_digit() {
            return fail("invalid number", j);
        }
    } else {
        j = digits(b, j);
    }
    if j < b.len() && b[j] == b'.' {
        j += 1;
        if j >= b.len() || !b[j].is_ascii_digit() {
            return fail("invalid number", j);
        }
        j = digits(b, j);
    }
    if j < b.len() && (b[j] == b'e' || b[j] == b'E') {
        j += 1;
        if j < b.len() && (b[j] == b'+' || b[j] == b'-') {
            j += 1;
        }
        if j >= b.len() || !b[j].is_ascii_digit() {
            return fail("invalid number", j);
        }
        j = digits(b, j);
    }
    Ok(j)
}

const fn digits(b: &[u8], mut j: usize) -> usize {
    while j < b.len() && b[j].is_ascii_digit() {
        j += 1;
    }
    j
}

/// Whether the key token at `key` repeats an earlier key of the object at
/// `object` (compared as written).
const fn repeats(b: &[u8], out: &Out<'_>, object: usize, key: usize) -> bool {
    let t = &out.tokens;
    let mut k = object + 1;
    while k < key {
        if same_text(b, t[k], t[key]) {
            return true;
        }
        // Past the key and its value.
        k = t[k + 1].next;
    }
    false
}

const fn same_text(b: &[u8], x: Token, y: Token) -> bool {
    if x.end - x.start != y.end - y.start {
        return false;
    }
    let mut k = 0;
    while k < x.end - x.start {
        if b[x.start + k] != b[y.start + k] {
            return false;
        }
        k += 1;
    }
    true
}

/// How many tokens `text` has. Used by [`defaults!`](crate::defaults).
///
/// # Panics
/// When `text` is not JSON: at compile time, that is a compile error.
#[doc(hidden)]
#[allow(
    clippy::panic,
    reason = "evaluated at compile time, where a panic is a compile error naming the fault"
)]
pub const fn count_tokens(text: &str) -> usize {
    match document(
        text,
        &mut Out {
            tokens: &mut [],
            n: 0,
        },
    ) {
        Ok(n) => n,
        Err(e) => panic!("{}", e.message),
    }
}

/// The `N` tokens of `text`. Used by [`defaults!`](crate::defaults).
///
/// # Panics
/// When `text` is not JSON of `N` tokens, or an object repeats a key: at
/// compile time, that is a compile error.
#[doc(hidden)]
#[allow(
    clippy::panic,
    reason = "evaluated at compile time, where a panic is a compile error naming the fault"
)]
pub const fn tokenize<const N: usize>(text: &str) -> [Token; N] {
    let mut tokens = [EMPTY; N];
    if N == 0 {
        panic!("an empty document has no defaults: leave Policy::DEFAULTS out instead");
    }
    match document(
        text,
        &mut Out {
            tokens: &mut tokens,
            n: 0,
        },
    ) {
        Ok(n) if n == N => tokens,
        Ok(_) => panic!("the document changed while it was read"),
        Err(e) => panic!("{}", e.message),
    }
}

/// The tokens of `text`, at run time, in one pass.
pub(crate) fn tokens(text: &str) -> Result<Vec<Token>, SyntaxError> {
    // Every token but a last lone number takes two bytes or more (a
    // string's quotes, a container's brackets, a scalar and the separator
    // after it), so this is room enough.
    let mut tokens = vec![EMPTY; text.len() / 2 + 1];
    let n = document(
        text,
        &mut Out {
            tokens: &mut tokens,
            n: 0,
        },
    )?;
    if n > tokens.len() {
        return fail("document too large", 0);
    }
    tokens.truncate(n);
    Ok(tokens)
}

/// Line and column (both from 1, the column in bytes) of byte `at` of `text`.
pub(crate) fn line_column(text: &str, at: usize) -> (usize, usize) {
    let before = &text.as_bytes()[..at.min(text.len())];
    let line = 1 + before.iter().filter(|&&b| b == b'\n').count();
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |p| p + 1);
    (line, before.len() - line_start + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str) -> Vec<Kind> {
        tokens(text).unwrap().iter().map(|t| t.kind).collect()
    }

    #[test]
    fn tokens_follow_the_document() {
        use Kind::*;
        assert_eq!(
            kinds(r#" {"a": [1, -2.5e3, "x\n"], "b": {}, "c": [true, false, null]} "#),
            [
                Object, Str, Array, Number, Number, EscapedStr, Str, Object, Str, Array, True,
                False, Null
            ]
        );
        let text = r#"{"a": [1, 2], "b": "q"}"#;
        let t = tokens(text).unwrap();
        // The array's next is the key after it; the object's, the end.
        assert_eq!(t[2].kind, Array);
        assert_eq!(t[2].next, 5);
        assert_eq!(t[0].next, t.len());
        assert_eq!(&text[t[6].start..t[6].end], "q");
        assert_eq!(&text[t[3].start..t[3].end], "1");
    }

    #[test]
    fn the_same_tokens_at_compile_time() {
        const TEXT: &str = r#"{"k": ["v", 1.5]}"#;
        const N: usize = count_tokens(TEXT);
        const TOKENS: [Token; N] = tokenize::<N>(TEXT);
        assert_eq!(TOKENS[..], tokens(TEXT).unwrap()[..]);
    }

    #[test]
    fn what_is_not_json_is_refused_where_it_goes_wrong() {
        for (text, message, at) in [
            ("", "EOF while parsing a value", 0),
            ("{", "EOF while parsing an object", 1),
            (r#"{"a" 1}"#, "expected `:`", 5),
            (r#"{"a": 1,}"#, "key must be a string", 8),
            (r#"{"a": 1 "b": 2}"#, "expected `,` or `}`", 8),
            ("[1 2]", "expected `,` or `]`", 3),
            ("[01]", "invalid number", 2),
            ("[1.]", "invalid number", 3),
            ("[-]", "invalid number", 2),
            ("[1e]", "invalid number", 3),
            ("[tru]", "expected value", 1),
            (r#"["\x"]"#, "invalid escape", 2),
            (r#"["\u12G4"]"#, "invalid escape", 2),
            (
                "[\"a\u{1}\"]",
                "control character (\\u0000-\\u001F) found while parsing a string",
                3,
            ),
            (r#"["abc"#, "EOF while parsing a string", 5),
            ("{} {}", "trailing characters", 3),
            (r#"{"a": 1, "a": 2}"#, "duplicate field", 11),
        ] {
            let err = tokens(text).unwrap_err();
            assert_eq!((err.message, err.at), (message, at), "{text}");
        }
        let deep = "[".repeat(MAX_DEPTH + 1);
        assert_eq!(
            tokens(&deep).unwrap_err().message,
            "recursion limit exceeded"
        );
        assert!(
            tokens(&format!(
                "{}{}",
                "[".repeat(MAX_DEPTH),
                "]".repeat(MAX_DEPTH)
            ))
            .is_ok()
        );
    }

    #[test]
    fn the_same_key_in_different_objects_is_no_repeat() {
        assert!(tokens(r#"{"a": {"a": 1}, "b": {"a": 2}, "c": [{"a": 3}]}"#).is_ok());
        assert!(tokens(r#"{"a": {"b": 1, "b": 2}}"#).is_err());
    }

    #[test]
    fn lines_and_columns_count_from_one() {
        let text = "{\n  \"a\": x\n}";
        assert_eq!(line_column(text, 0), (1, 1));
        assert_eq!(line_column(text, 1), (1, 2));
        assert_eq!(line_column(text, 9), (2, 8));
        assert_eq!(line_column(text, 99), (3, 2));
    }
}
