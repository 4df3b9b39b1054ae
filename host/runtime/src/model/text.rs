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
pub fn unprintable(c: char) -> bool {
    c.is_control()
        || matches!(
            c.general_category(),
            GeneralCategory::Format
                | GeneralCategory::LineSeparator
                | GeneralCategory::ParagraphSeparator
        )
}

/// Unicode's bidirectional controls: they reorder the text shown around
/// them (U+202E shows `txt.exe` as `exe.txt`). All are format characters.
pub fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// An invisible format character (category Cf): zero-width spaces and
/// joiners, the byte-order mark, tags, the bidi controls.
pub fn is_format(c: char) -> bool {
    c.general_category() == GeneralCategory::Format
}

/// A character refused in text people read, and why: it names the code
/// point and what the character would do, as in `must not contain U+202E,
/// a bidirectional control: it reorders the text shown around it`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// The first character refused.
    pub char: char,
    what: &'static str,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "must not contain {}, {}",
            code_point(self.char),
            self.what
        )
    }
}

impl Refused {
    fn of(c: char) -> Self {
        let what = if c.is_control() {
            "a control character: it acts on a terminal or starts another line"
        } else if is_bidi_control(c) {
            "a bidirectional control: it reorders the text shown around it"
        } else if is_format(c) {
            "an invisible format character (Unicode category Cf): it would make a name that looks like another"
        } else {
            "a line or paragraph separator: it starts another line"
        };
        Refused { char: c, what }
    }
}

/// Checks a name people read and match (a budget owner, a team, a key's
/// subject): no character [`unprintable`] refuses, so no name can look
/// like another or act on the screen showing it.
pub fn check_name(value: &str) -> Result<(), Refused> {
    first_unprintable(value).map_or(Ok(()), |c| Err(Refused::of(c)))
}

/// Checks free text people read (an owner's reason or note): newlines and
/// tabs are kept, as is any script; control characters and the bidi
/// controls, which act on a terminal or reorder what is shown, are refused.
pub fn check_free_text(value: &str) -> Result<(), Refused> {
    let plain = |b: u8| (b' '..=b'~').contains(&b) || b == b'\n' || b == b'\t';
    if value.bytes().all(plain) {
        return Ok(());
    }
    value
        .chars()
        .find(|&c| (c.is_control() && c != '\n' && c != '\t') || is_bidi_control(c))
        .map_or(Ok(()), |c| Err(Refused::of(c)))
}

/// `value` in Unicode's composed form (NFC), so text that looks the same
/// is kept, compared and hashed the same.
pub fn nfc(value: &mut String) {
    if !value.is_ascii() && !unicode_normalization::is_nfc(value) {
        *value = unicode_normalization::UnicodeNormalization::nfc(value.as_str()).collect();
    }
}

/// The first character of `text` that [`unprintable`] refuses.
pub fn first_unprintable(text: &str) -> Option<char> {
    text.chars().find(|&c| unprintable(c))
}

/// `c` as the host names it in a message: `U+001B`.
pub fn code_point(c: char) -> String {
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
    fn names_refuse_what_free_text_keeps_and_both_refuse_controls_and_bidi() {
        let name = |t: &str| check_name(t).map_err(|r| r.to_string());
        let free = |t: &str| check_free_text(t).map_err(|r| r.to_string());
        assert_eq!(name("Zoë Müller"), Ok(()));
        assert_eq!(free("ok\n\tcafé, \u{200d}👍"), Ok(()));
        for bad in [
            "a\u{200b}b",
            "a\u{feff}",
            "a\u{e0041}",
            "a\u{2028}b",
            "a\nb",
        ] {
            assert!(name(bad).is_err(), "{bad:?}");
        }
        assert!(
            free("a\u{200b}b").is_ok(),
            "free text may join or break words"
        );
        for (bad, shown) in [
            ("a\u{202e}b", "U+202E, a bidirectional control"),
            ("a\u{2066}b", "U+2066, a bidirectional control"),
            ("a\u{1b}[2J", "U+001B, a control character"),
            ("a\rb", "U+000D, a control character"),
            ("a\u{85}", "U+0085, a control character"),
        ] {
            assert!(name(bad).unwrap_err().contains(shown), "{bad:?}");
            assert!(free(bad).unwrap_err().contains(shown), "{bad:?}");
        }
        assert!(name("a\u{200b}").unwrap_err().contains("Cf"));
        let mut composed = String::from("cafe\u{301}");
        nfc(&mut composed);
        assert_eq!(composed, "caf\u{e9}");
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
