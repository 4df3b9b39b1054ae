//! Reading transactions and contexts from files and stdin.

use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result};
use serde_json::value::RawValue;
use tiergate_runtime::StaticContext;

/// The input's name for messages, and its text. `-` or no path is stdin.
pub fn read_text(path: Option<&Path>) -> Result<(String, String)> {
    match path {
        Some(p) if p.as_os_str() != "-" => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read {}", p.display()))?;
            Ok((p.display().to_string(), text))
        }
        _ => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("cannot read stdin")?;
            Ok(("<stdin>".into(), text))
        }
    }
}

/// A `--context` file.
pub fn read_context(path: &Path) -> Result<StaticContext> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read context {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("invalid context {}", path.display()))
}

/// The JSON values in `text`, as text, with the line each starts on: one
/// document, JSON Lines, or the elements of a top-level array. Values stay
/// text so numbers are never parsed twice. A syntax error ends the stream,
/// since nothing after it can be trusted to line up.
pub fn json_values(text: &str) -> impl Iterator<Item = Result<(usize, &str), String>> + '_ {
    let mut stream = serde_json::Deserializer::from_str(text).into_iter::<&RawValue>();
    let mut pending: std::vec::IntoIter<(usize, &str)> = Vec::new().into_iter();
    let mut failed = false;
    std::iter::from_fn(move || {
        loop {
            if let Some(item) = pending.next() {
                return Some(Ok(item));
            }
            if failed {
                return None;
            }
            let start = text[stream.byte_offset()..]
                .find(|c: char| !c.is_whitespace())
                .map(|i| stream.byte_offset() + i)
                .unwrap_or(text.len());
            let line = line_of(text, start);
            match stream.next()? {
                // An array's elements queue up; an empty one yields nothing
                // and the loop moves on to what follows it.
                Ok(raw) if raw.get().starts_with('[') => {
                    match serde_json::from_str::<Vec<&RawValue>>(raw.get()) {
                        Ok(items) => {
                            pending = items
                                .into_iter()
                                .map(|v| (line, v.get()))
                                .collect::<Vec<_>>()
                                .into_iter()
                        }
                        Err(e) => {
                            return Some(Err(format!("line {line}: malformed JSON array: {e}")));
                        }
                    }
                }
                Ok(raw) => return Some(Ok((line, raw.get()))),
                Err(e) => {
                    failed = true;
                    return Some(Err(format!("malformed JSON: {e}")));
                }
            }
        }
    })
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset].bytes().filter(|b| *b == b'\n').count() + 1
}

/// A `--from`/`--to` flag's UTC day (`YYYY-MM-DD`) as milliseconds since the epoch.
pub fn day_flag(flag: &str, text: &Option<String>) -> anyhow::Result<Option<u64>> {
    use anyhow::Context;
    text.as_ref()
        .map(|t| {
            tiergate_core::audit::parse_day(t)
                .with_context(|| format!("--{flag} {t:?} is not a UTC day written YYYY-MM-DD"))
        })
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_one_document_lines_and_arrays() {
        let lines: Vec<usize> = json_values("{\"a\": 1}\n\n{\"a\": 2}\n")
            .map(|r| r.unwrap().0)
            .collect();
        assert_eq!(lines, [1, 3]);
        let pretty = "{\n  \"a\": 1\n}\n";
        assert_eq!(json_values(pretty).count(), 1);
        assert_eq!(json_values("[{\"a\":1},{\"a\":2}]").count(), 2);
        let results: Vec<_> = json_values("{\"a\": 1}\n{\"a\": }\n{\"a\": 3}").collect();
        assert_eq!(results.len(), 2);
        let err = results[1].as_ref().unwrap_err();
        assert!(
            err.starts_with("malformed JSON") && err.contains("line 2 column 7"),
            "{err}"
        );
        // An empty array is skipped, not the end of the input.
        let lines: Vec<usize> = json_values("{\"a\": 1}\n[]\n{\"a\": 2}")
            .map(|r| r.unwrap().0)
            .collect();
        assert_eq!(lines, [1, 3]);
    }
}
