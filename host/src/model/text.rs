//! Text the host did not write (a policy's answer, an agent's request, an
//! owner's note) as it may be kept and shown: characters a terminal acts on
//! or that reorder what it shows are refused where the text comes in, and
//! escaped wherever it goes out.

use std::borrow::Cow;
use std::fmt::Write;

use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

/// Whether `c` would act on a terminal or change how text around it reads:
/// C0 and C1 controls (ESC, BEL, NUL, CR, LF...), format characters
/// (category Cf: bidi overrides such as RLO, zero-width characters, the
/// byte-order mark, tags) and the line and paragraph separators.
pub(crate) fn unprintable(c: char) -> bool {
    c.is_control()
        || matches!(
            c.general_category(),
            GeneralCategory::Format
                | GeneralCategory::LineSeparator
                | GeneralCategory::ParagraphSeparator
        )
}

/// The first character of `text` that [`unprintable`] refuses.
pub(crate) fn first_unprintable(text: &str) -> Option<char> {
    text.chars().find(|&c| unprintable(c))
}

/// `c` as the host names it in a message: `U+001B`.
pub(crate) fn code_point(c: char) -> String {
    format!("U+{:04X}", c as u32)
}

/// `text` with every unprintable character escaped (`\n`, `\t`, `\r`, or
/// `\u{1b}`), so it prints on one line as written. Other text is kept.
pub fn escaped(text: &str) -> Cow<'_, str> {
    if first_unprintable(text).is_none() {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if unprintable(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// JSON text with every unprintable character that serde_json leaves raw
/// (C1 controls, format characters, separators) written as a JSON escape,
/// so the document means the same and prints safely.
pub fn escaped_json(json: &str) -> Cow<'_, str> {
    if first_unprintable(json).is_none() {
        return Cow::Borrowed(json);
    }
    let mut out = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        if unprintable(c) {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                let _ = write!(out, "\\u{unit:04x}");
            }
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_and_format_characters_are_escaped_and_the_rest_kept() {
        assert_eq!(escaped("café ✓ 💥"), "café ✓ 💥");
        assert_eq!(
            escaped("a\u{1b}[2J\u{7}b\nc\u{202e}d\u{200b}\u{feff}\u{9b}\u{2028}"),
            r"a\u{1b}[2J\u{7}b\nc\u{202e}d\u{200b}\u{feff}\u{9b}\u{2028}"
        );
        assert_eq!(first_unprintable("tag\u{e0041}"), Some('\u{e0041}'));
        assert_eq!(first_unprintable("no break\u{a0}space"), None);
        assert_eq!(code_point('\u{1b}'), "U+001B");
    }

    #[test]
    fn json_keeps_its_meaning() {
        let text = serde_json::to_string("x\u{202e}y\u{1b}\u{e0041}").unwrap();
        let safe = escaped_json(&text);
        assert!(first_unprintable(&safe).is_none(), "{safe}");
        assert_eq!(
            serde_json::from_str::<String>(&safe).unwrap(),
            "x\u{202e}y\u{1b}\u{e0041}"
        );
    }
}
