//! A policy's defaults as a JSON document, merged under the tenant's.
//!
//! The defaults are tokenized when the policy compiles ([`defaults!`]); the
//! tenant's document is tokenized when it arrives. A [`Deserializer`] then
//! reads the configuration type from both at once: where the tenant gives a
//! key its value is read, where it does not the default's is, and where both
//! give an object the two are read as one. Nothing is parsed twice or built
//! only to be taken apart again, which keeps a call in the sandbox cheap.
//!
//! [`defaults!`]: crate::defaults

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use serde::de::value::{BorrowedStrDeserializer, StringDeserializer};
use serde::de::{
    self, DeserializeOwned, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess,
    Unexpected, VariantAccess, Visitor,
};

use crate::config::read_json;
use crate::json::{self, Kind, Token};

/// A policy's default configuration, written as a JSON document.
///
/// Make one with [`defaults!`](crate::defaults) and set it as
/// [`Policy::DEFAULTS`](crate::Policy::DEFAULTS). The tenant's document is
/// merged over it before the policy's configuration type reads the result:
///
/// - a key the tenant gives wins over the default;
/// - where both give an object, the objects merge key by key, at every
///   depth, except at the paths named with [`replace_whole`](Self::replace_whole);
/// - any other value the tenant gives (a string, a number, an array, `null`)
///   replaces the default whole: a tenant's list is the whole list;
/// - a key the defaults do not have is kept, so a misspelt key still reaches
///   the configuration type, and `#[serde(deny_unknown_fields)]` refuses it
///   naming the key (and where it is in the tenant's document);
/// - a key given twice in one object of the tenant's document is refused.
///
/// ```
/// use serde::Deserialize;
/// use tiergate_policy::{Defaults, PositiveAmount, Window, defaults};
///
/// #[derive(Debug, Deserialize)]
/// #[serde(deny_unknown_fields)]
/// struct Limits {
///     daily: Cap,
///     blocked: Vec<String>,
/// }
///
/// #[derive(Debug, Deserialize)]
/// #[serde(deny_unknown_fields)]
/// struct Cap {
///     max: PositiveAmount,
///     window: Window,
/// }
///
/// const DEFAULTS: Defaults =
///     defaults!(r#"{"daily": {"max": "100.00", "window": "24h"}, "blocked": ["gambling"]}"#);
///
/// // An empty document is every default.
/// let all: Limits = DEFAULTS.parse("").unwrap();
/// assert_eq!(all.daily.max.to_string(), "100.00");
///
/// // Objects merge key by key; lists are replaced.
/// let mine: Limits = DEFAULTS.parse(r#"{"daily": {"max": 250}, "blocked": []}"#).unwrap();
/// assert_eq!(mine.daily.max.to_string(), "250");
/// assert_eq!(mine.daily.window, Window::hours(24));
/// assert!(mine.blocked.is_empty());
///
/// // Unknown keys are still refused, by name.
/// let err = DEFAULTS.parse::<Limits>(r#"{"daily": {"maximum": 250}}"#).unwrap_err();
/// assert_eq!(
///     err,
///     "unknown field `maximum`, expected `max` or `window` at line 1 column 20"
/// );
/// ```
///
/// Numbers in both documents are read exactly: an integer that fits 64 bits
/// reaches the configuration type as an integer, any other number (with a
/// fraction or an exponent, or larger) as its text, which a
/// [`Decimal`](crate::Decimal) reads exactly and a float field refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Defaults {
    json: &'static str,
    tokens: &'static [Token],
    whole: &'static [&'static str],
}

impl Defaults {
    /// No defaults: the tenant's document is read as it is (the
    /// configuration type's own `#[serde(default)]` still applies).
    pub const NONE: Defaults = Defaults {
        json: "",
        tokens: &[],
        whole: &[],
    };

    /// What [`defaults!`](crate::defaults) expands to.
    #[doc(hidden)]
    #[allow(
        clippy::panic,
        reason = "evaluated at compile time, where a panic is a compile error naming the fault"
    )]
    pub const fn __from_tokens(json: &'static str, tokens: &'static [Token]) -> Defaults {
        if !matches!(tokens[0].kind, Kind::Object) {
            panic!("the defaults must be a JSON object");
        }
        Defaults {
            json,
            tokens,
            whole: &[],
        }
    }

    /// Names the keys whose object the tenant gives whole: at these paths
    /// the tenant's object replaces the default one instead of merging into
    /// it, so a key left out is missing rather than defaulted. A path is
    /// keys joined by `.`, from the top: `"autonomous"`, `"limits.daily"`.
    ///
    /// ```
    /// # use tiergate_policy::{Defaults, defaults};
    /// # #[derive(serde::Deserialize)] #[serde(deny_unknown_fields)]
    /// # struct Rule { max: u64, window: String }
    /// # #[derive(serde::Deserialize)] #[serde(deny_unknown_fields)]
    /// # struct Config { rule: Rule }
    /// const DEFAULTS: Defaults =
    ///     defaults!(r#"{"rule": {"max": 5, "window": "1h"}}"#).replace_whole(&["rule"]);
    /// let err = DEFAULTS.parse::<Config>(r#"{"rule": {"max": 10}}"#).err().unwrap();
    /// assert!(err.contains("missing field `window`"), "{err}");
    /// ```
    pub const fn replace_whole(self, paths: &'static [&'static str]) -> Defaults {
        Defaults {
            json: self.json,
            tokens: self.tokens,
            whole: paths,
        }
    }

    /// The defaults document (empty for [`Defaults::NONE`]).
    pub const fn document(&self) -> &'static str {
        self.json
    }

    /// Reads the tenant's `config` merged over these defaults into `T`. An
    /// empty document (or only whitespace) means `{}`: every default.
    ///
    /// The error is the text the tenant is shown, such as
    /// ``unknown field `max_amout`, expected one of ... at line 1 column 30``.
    pub fn parse<T: DeserializeOwned>(&self, config: &str) -> Result<T, String> {
        if self.tokens.is_empty() {
            return read_json(config);
        }
        let defaults = Doc {
            text: self.json,
            tokens: self.tokens,
        };
        let trimmed = config.trim();
        let tenant_tokens;
        let tenant = if trimmed.is_empty() || trimmed == "{}" {
            Doc {
                text: "",
                tokens: &[],
            }
        } else {
            tenant_tokens = json::tokens(config).map_err(|e| {
                let (line, column) = json::line_column(config, e.at);
                match e.key {
                    Some(key) => format!(
                        "{} `{}` at line {line} column {column}",
                        e.message,
                        &config[key.0..key.1]
                    ),
                    None => format!("{} at line {line} column {column}", e.message),
                }
            })?;
            Doc {
                text: config,
                tokens: &tenant_tokens,
            }
        };
        let whole = match tenant.tokens.is_empty() {
            true => Vec::new(),
            false => self
                .whole
                .iter()
                .filter_map(|p| defaults.at_path(p))
                .collect(),
        };
        let reader = Reader {
            defaults,
            tenant,
            whole: &whole,
        };
        let (side, root) = match tenant.tokens.first() {
            None => (Side::Defaults, Node::Plain(Side::Defaults, 0)),
            Some(t) if t.kind == Kind::Object => (
                Side::Tenant,
                Node::Merged {
                    defaults: 0,
                    tenant: 0,
                },
            ),
            Some(_) => (Side::Tenant, Node::Plain(Side::Tenant, 0)),
        };
        T::deserialize(At {
            r: &reader,
            node: root,
        })
        .map_err(|e| reader.describe(e.at(side, last(reader.doc(side).tokens[0]))))
    }
}

impl Default for Defaults {
    fn default() -> Self {
        Defaults::NONE
    }
}

/// A policy's defaults, from a JSON document: a [`Defaults`] whose document
/// is checked and tokenized when the policy compiles.
///
/// ```
/// use tiergate_policy::{Defaults, defaults};
///
/// const DEFAULTS: Defaults = defaults!(r#"{"limit": "100.00", "window": "24h"}"#);
/// ```
///
/// Keep the document in a file of the policy crate, so tenants can read the
/// defaults they override:
///
/// ```text
/// impl Policy for MyPolicy {
///     const DEFAULTS: Defaults = defaults!(include_str!("../defaults.json"));
///     // ...
/// }
/// ```
///
/// A document that is not JSON, is not an object, or repeats a key in one
/// object fails the build, naming the problem:
///
/// ```compile_fail
/// const BROKEN: tiergate_policy::Defaults = tiergate_policy::defaults!(r#"{"limit": }"#);
/// ```
#[macro_export]
macro_rules! defaults {
    ($json:expr $(,)?) => {{
        const JSON: &str = $json;
        const TOKENS: &[$crate::__private::Token] =
            &$crate::__private::tokenize::<{ $crate::__private::count_tokens(JSON) }>(JSON);
        $crate::Defaults::__from_tokens(JSON, TOKENS)
    }};
}

/// Which document a token is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Defaults,
    Tenant,
}

#[derive(Debug, Clone, Copy)]
struct Doc<'a> {
    text: &'a str,
    tokens: &'a [Token],
}

impl<'a> Doc<'a> {
    fn text(&self, t: Token) -> &'a str {
        &self.text[t.start..t.end]
    }

    /// The token of the value at a `.`-joined path of keys, if there is one.
    fn at_path(&self, path: &str) -> Option<usize> {
        let mut at = 0;
        for key in path.split('.') {
            if self.tokens[at].kind != Kind::Object {
                return None;
            }
            at = self.find(at, (key, Kind::Str))?;
        }
        Some(at)
    }

    /// The value of `key` in the object at `object`.
    fn find(&self, object: usize, key: (&str, Kind)) -> Option<usize> {
        let mut k = object + 1;
        while k < self.tokens[object].next {
            let t = self.tokens[k];
            if same_key((self.text(t), t.kind), key) {
                return Some(k + 1);
            }
            k = self.tokens[k + 1].next;
        }
        None
    }
}

fn same_key(a: (&str, Kind), b: (&str, Kind)) -> bool {
    match (a.1, b.1) {
        (Kind::Str, Kind::Str) => a.0 == b.0,
        _ => unescape(a.0).ok() == unescape(b.0).ok(),
    }
}

/// Both documents, and the defaults' values the tenant replaces whole.
struct Reader<'a> {
    defaults: Doc<'a>,
    tenant: Doc<'a>,
    whole: &'a [usize],
}

impl<'a> Reader<'a> {
    fn doc(&self, side: Side) -> Doc<'a> {
        match side {
            Side::Defaults => self.defaults,
            Side::Tenant => self.tenant,
        }
    }

    /// The error as the tenant reads it, with its line and column.
    fn describe(&self, e: Error) -> String {
        let Problem { message, at, .. } = *e.0;
        let Some((side, offset)) = at else {
            return message;
        };
        let (line, column) = json::line_column(self.doc(side).text, offset);
        match side {
            Side::Tenant => format!("{message} at line {line} column {column}"),
            Side::Defaults => format!(
                "the policy's own defaults do not read: {message} at line {line} column {column} of the defaults"
            ),
        }
    }
}

/// A value to read: one document's, or an object both give.
#[derive(Debug, Clone, Copy)]
enum Node {
    Plain(Side, usize),
    Merged { defaults: usize, tenant: usize },
}

impl Node {
    /// Where errors about it point: for an object both give, the tenant's.
    fn place(self) -> (Side, usize) {
        match self {
            Node::Plain(side, index) => (side, index),
            Node::Merged { tenant, .. } => (Side::Tenant, tenant),
        }
    }
}

/// An error while reading, and where it happened once known. Boxed, so
/// that the results passed up through every value stay small.
#[derive(Debug)]
struct Error(alloc::boxed::Box<Problem>);

#[derive(Debug)]
struct Problem {
    message: String,
    /// Where it happened, once placed.
    at: Option<(Side, usize)>,
    placed: bool,
    /// A key missing from an object: the tenant's to give, even when the
    /// object is the defaults'.
    missing: bool,
}

impl Error {
    /// Places the error at byte `offset` of `side`'s document, unless a
    /// value inside already did. A key missing from the defaults' object is
    /// placed nowhere: the tenant's document does not have the object.
    fn at(mut self, side: Side, offset: usize) -> Self {
        let p = &mut *self.0;
        if !p.placed {
            p.placed = true;
            if !(p.missing && side == Side::Defaults) {
                p.at = Some((side, offset));
            }
        }
        self
    }

    fn new(message: String, missing: bool) -> Self {
        Error(alloc::boxed::Box::new(Problem {
            message,
            at: None,
            placed: false,
            missing,
        }))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.message)
    }
}

impl de::StdError for Error {}

impl de::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Error::new(msg.to_string(), false)
    }

    fn missing_field(field: &'static str) -> Self {
        Error::new(format!("missing field `{field}`"), true)
    }
}

/// A string's contents with its escapes replaced.
fn unescape(raw: &str) -> Result<String, Error> {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let c = match chars.next() {
            Some('b') => '\u{8}',
            Some('f') => '\u{c}',
            Some('n') => '\n',
            Some('r') => '\r',
            Some('t') => '\t',
            Some('u') => {
                let hex = |chars: &mut core::str::Chars<'_>| {
                    let digits = chars.as_str().get(..4)?;
                    let n = u32::from_str_radix(digits, 16).ok()?;
                    *chars = chars.as_str()[4..].chars();
                    Some(n)
                };
                let bad = || de::Error::custom("invalid unicode escape");
                let first = hex(&mut chars).ok_or_else(bad)?;
                let code = if (0xD800..0xDC00).contains(&first) {
                    let rest = chars.as_str();
                    if !rest.starts_with("\\u") {
                        return Err(bad());
                    }
                    chars = rest[2..].chars();
                    let second = hex(&mut chars).ok_or_else(bad)?;
                    if !(0xDC00..0xE000).contains(&second) {
                        return Err(bad());
                    }
                    0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)
                } else {
                    first
                };
                char::from_u32(code).ok_or_else(bad)?
            }
            Some(c) => c,
            None => return Err(bad_end()),
        };
        out.push(c);
    }
    Ok(out)
}

fn bad_end() -> Error {
    de::Error::custom("invalid escape")
}

/// Where errors about a value point, as serde_json's do: at its last
/// byte (a string's closing quote, a container's closing bracket).
fn last(t: Token) -> usize {
    match t.kind {
        Kind::Str | Kind::EscapedStr => t.end,
        _ => t.end - 1,
    }
}

/// A number as an integer when it is one that fits 64 bits, else as its
/// text, for a `Decimal` to read exactly.
fn number<'a, V: Visitor<'a>>(text: &'a str, visitor: V) -> Result<V::Value, Error> {
    if !text.bytes().any(|b| matches!(b, b'.' | b'e' | b'E')) {
        if let Ok(n) = text.parse::<u64>() {
            return visitor.visit_u64(n);
        }
        if let Ok(n) = text.parse::<i64>() {
            return visitor.visit_i64(n);
        }
    }
    visitor.visit_borrowed_str(text)
}

/// Reads one [`Node`]. Errors are placed by whoever asked for the node
/// (the map or list it is in, or [`Defaults::parse`] for the root), once.
struct At<'r, 'a> {
    r: &'r Reader<'a>,
    node: Node,
}

impl<'r, 'a> At<'r, 'a> {
    fn plain(r: &'r Reader<'a>, side: Side, index: usize) -> Self {
        At {
            r,
            node: Node::Plain(side, index),
        }
    }

    /// Reads `node` with `seed`, placing an error at it.
    fn read<T: DeserializeSeed<'a>>(
        r: &'r Reader<'a>,
        node: Node,
        seed: T,
    ) -> Result<T::Value, Error> {
        seed.deserialize(At { r, node }).map_err(|e| {
            let (side, index) = node.place();
            e.at(side, last(r.doc(side).tokens[index]))
        })
    }

    /// Reads a key token as a string.
    fn key<T: DeserializeSeed<'a>>(
        r: &'r Reader<'a>,
        side: Side,
        index: usize,
        seed: T,
    ) -> Result<T::Value, Error> {
        let doc = r.doc(side);
        let t = doc.tokens[index];
        let read = match t.kind {
            Kind::EscapedStr => unescape(doc.text(t))
                .and_then(|k| seed.deserialize(StringDeserializer::<Error>::new(k))),
            _ => seed.deserialize(BorrowedStrDeserializer::<Error>::new(doc.text(t))),
        };
        // Where serde_json says it: at the key's closing quote.
        read.map_err(|e| e.at(side, t.end))
    }
}

impl<'de> Deserializer<'de> for At<'_, 'de> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let r = self.r;
        let (side, index) = match self.node {
            Node::Merged { defaults, tenant } => {
                return visitor.visit_map(Merged {
                    r,
                    defaults,
                    tenant,
                    next_default: defaults + 1,
                    next_tenant: tenant + 1,
                    value: None,
                });
            }
            Node::Plain(side, index) => (side, index),
        };
        let doc = r.doc(side);
        let t = doc.tokens[index];
        let text = doc.text(t);
        match t.kind {
            Kind::Null => visitor.visit_unit(),
            Kind::True => visitor.visit_bool(true),
            Kind::False => visitor.visit_bool(false),
            Kind::Number => number(text, visitor),
            Kind::Str => visitor.visit_borrowed_str(text),
            Kind::EscapedStr => unescape(text).and_then(|s| visitor.visit_string(s)),
            Kind::Array => visitor.visit_seq(Seq {
                r,
                side,
                next: index + 1,
                end: t.next,
            }),
            Kind::Object => visitor.visit_map(Map {
                r,
                side,
                next: index + 1,
                end: t.next,
                value: None,
            }),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.node {
            Node::Plain(side, index) if self.r.doc(side).tokens[index].kind == Kind::Null => {
                visitor.visit_none()
            }
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        // Where both give an object, an enum is not merged: the tenant's wins.
        let (side, index) = self.node.place();
        let r = self.r;
        let doc = r.doc(side);
        let t = doc.tokens[index];
        match t.kind {
            Kind::Str => visitor.visit_enum(BorrowedStrDeserializer::<Error>::new(doc.text(t))),
            Kind::EscapedStr => {
                unescape(doc.text(t)).and_then(|s| visitor.visit_enum(StringDeserializer::new(s)))
            }
            // `{"variant": value}`
            Kind::Object if t.next > index + 1 && doc.tokens[index + 2].next == t.next => visitor
                .visit_enum(Variant {
                    r,
                    side,
                    key: index + 1,
                }),
            _ => At::plain(r, side, index).deserialize_any(visitor),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_unit()
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple tuple_struct map struct identifier
    }
}

/// The elements of one document's array.
struct Seq<'r, 'a> {
    r: &'r Reader<'a>,
    side: Side,
    next: usize,
    end: usize,
}

impl<'a> SeqAccess<'a> for Seq<'_, 'a> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'a>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        if self.next >= self.end {
            return Ok(None);
        }
        let index = self.next;
        self.next = self.r.doc(self.side).tokens[index].next;
        At::read(self.r, Node::Plain(self.side, index), seed).map(Some)
    }

    fn size_hint(&self) -> Option<usize> {
        // So a `Vec` is allocated once, at its size.
        let tokens = self.r.doc(self.side).tokens;
        let (mut at, mut n) = (self.next, 0);
        while at < self.end {
            at = tokens[at].next;
            n += 1;
        }
        Some(n)
    }
}

/// The members of one document's object.
struct Map<'r, 'a> {
    r: &'r Reader<'a>,
    side: Side,
    next: usize,
    end: usize,
    value: Option<usize>,
}

impl<'a> MapAccess<'a> for Map<'_, 'a> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'a>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        if self.next >= self.end {
            return Ok(None);
        }
        let key = self.next;
        self.value = Some(key + 1);
        self.next = self.r.doc(self.side).tokens[key + 1].next;
        At::key(self.r, self.side, key, seed).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'a>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let index = self
            .value
            .take()
            .ok_or_else(|| de::Error::custom("value before key"))?;
        At::read(self.r, Node::Plain(self.side, index), seed)
    }
}

/// The members of an object both documents give: the defaults' keys first,
/// each with the tenant's value when it gives one, then the keys only the
/// tenant gives.
struct Merged<'r, 'a> {
    r: &'r Reader<'a>,
    defaults: usize,
    tenant: usize,
    next_default: usize,
    next_tenant: usize,
    value: Option<Node>,
}

impl<'a> MapAccess<'a> for Merged<'_, 'a> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'a>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        let (defaults, tenant) = (self.r.defaults, self.r.tenant);
        if self.next_default < defaults.tokens[self.defaults].next {
            let key = self.next_default;
            let value = key + 1;
            self.next_default = defaults.tokens[value].next;
            let t = defaults.tokens[key];
            let Some(theirs) = tenant.find(self.tenant, (defaults.text(t), t.kind)) else {
                self.value = Some(Node::Plain(Side::Defaults, value));
                return At::key(self.r, Side::Defaults, key, seed).map(Some);
            };
            let both_objects = defaults.tokens[value].kind == Kind::Object
                && tenant.tokens[theirs].kind == Kind::Object;
            self.value = Some(if both_objects && !self.r.whole.contains(&value) {
                Node::Merged {
                    defaults: value,
                    tenant: theirs,
                }
            } else {
                Node::Plain(Side::Tenant, theirs)
            });
            // Errors about the key point at the tenant's.
            return At::key(self.r, Side::Tenant, theirs - 1, seed).map(Some);
        }
        while self.next_tenant < tenant.tokens[self.tenant].next {
            let key = self.next_tenant;
            self.next_tenant = tenant.tokens[key + 1].next;
            let t = tenant.tokens[key];
            if defaults
                .find(self.defaults, (tenant.text(t), t.kind))
                .is_none()
            {
                self.value = Some(Node::Plain(Side::Tenant, key + 1));
                return At::key(self.r, Side::Tenant, key, seed).map(Some);
            }
        }
        Ok(None)
    }

    fn next_value_seed<V: DeserializeSeed<'a>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let node = self
            .value
            .take()
            .ok_or_else(|| de::Error::custom("value before key"))?;
        At::read(self.r, node, seed)
    }
}

/// `{"variant": value}` read as an enum.
struct Variant<'r, 'a> {
    r: &'r Reader<'a>,
    side: Side,
    key: usize,
}

impl<'r, 'a> EnumAccess<'a> for Variant<'r, 'a> {
    type Error = Error;
    type Variant = At<'r, 'a>;

    fn variant_seed<V: DeserializeSeed<'a>>(
        self,
        seed: V,
    ) -> Result<(V::Value, At<'r, 'a>), Error> {
        let name = At::key(self.r, self.side, self.key, seed)?;
        Ok((name, At::plain(self.r, self.side, self.key + 1)))
    }
}

impl<'a> VariantAccess<'a> for At<'_, 'a> {
    type Error = Error;

    fn unit_variant(self) -> Result<(), Error> {
        let (side, index) = self.node.place();
        match self.r.doc(side).tokens[index].kind {
            Kind::Null => Ok(()),
            _ => Err(de::Error::invalid_type(Unexpected::Map, &"a unit variant")),
        }
    }

    fn newtype_variant_seed<T: DeserializeSeed<'a>>(self, seed: T) -> Result<T::Value, Error> {
        At::read(self.r, self.node, seed)
    }

    fn tuple_variant<V: Visitor<'a>>(self, _len: usize, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_any(visitor)
    }

    fn struct_variant<V: Visitor<'a>>(
        self,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_any(visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{PositiveAmount, Tier, Window};
    use serde::Deserialize;
    use serde_json::{Value, json};

    const DEFAULTS: Defaults = crate::defaults!(
        r#"{
            "name": "default",
            "list": ["a", "b"],
            "limits": {"daily": {"max": "100.00", "window": "24h"}, "hourly": {"max": "10.00", "window": "1h"}},
            "rule": {"max": 5, "window": "1h"},
            "off": "x"
        }"#
    );

    fn merged(defaults: Defaults, config: &str) -> Value {
        defaults.parse::<Value>(config).unwrap()
    }

    #[test]
    fn an_empty_document_is_every_default() {
        let all = json!({
            "name": "default",
            "list": ["a", "b"],
            "limits": {"daily": {"max": "100.00", "window": "24h"}, "hourly": {"max": "10.00", "window": "1h"}},
            "rule": {"max": 5, "window": "1h"},
            "off": "x"
        });
        for config in ["", "  \n", "{}", " { } ", "{\n}"] {
            assert_eq!(merged(DEFAULTS, config), all, "{config:?}");
        }
    }

    #[test]
    fn tenant_keys_win_and_objects_merge_key_by_key() {
        let got = merged(
            DEFAULTS,
            r#"{"name": "mine", "limits": {"daily": {"max": "250.00"}}, "extra": 1}"#,
        );
        assert_eq!(got["name"], "mine");
        // Only the key given changed, at any depth.
        assert_eq!(
            got["limits"],
            json!({"daily": {"max": "250.00", "window": "24h"}, "hourly": {"max": "10.00", "window": "1h"}})
        );
        // Untouched keys keep their defaults; new keys are kept.
        assert_eq!(got["list"], json!(["a", "b"]));
        assert_eq!(got["extra"], 1);
    }

    #[test]
    fn arrays_scalars_and_null_replace_the_default_whole() {
        let got = merged(
            DEFAULTS,
            r#"{"list": ["c"], "limits": {"daily": null}, "rule": 7, "off": null}"#,
        );
        assert_eq!(got["list"], json!(["c"]));
        assert_eq!(got["limits"]["daily"], Value::Null);
        assert_eq!(got["limits"]["hourly"]["max"], "10.00");
        assert_eq!(got["rule"], 7);
        assert_eq!(got["off"], Value::Null);
        // An object where the default is not one replaces it too, and so
        // does a tenant's document that is not an object.
        assert_eq!(
            merged(DEFAULTS, r#"{"name": {"a": 1}}"#)["name"],
            json!({"a": 1})
        );
        assert_eq!(merged(DEFAULTS, "[1, 2]"), json!([1, 2]));
    }

    #[test]
    fn paths_named_whole_are_replaced_not_merged() {
        let whole = DEFAULTS.replace_whole(&["rule", "limits.daily"]);
        let got = merged(
            whole,
            r#"{"rule": {"max": 9}, "limits": {"daily": {"max": "1.00"}, "hourly": {"max": "2.00"}}}"#,
        );
        assert_eq!(got["rule"], json!({"max": 9}));
        assert_eq!(got["limits"]["daily"], json!({"max": "1.00"}));
        // Beside a whole path, objects still merge.
        assert_eq!(
            got["limits"]["hourly"],
            json!({"max": "2.00", "window": "1h"})
        );
        // A name matches a whole path only, not a key of the same name deeper.
        let got = merged(
            DEFAULTS.replace_whole(&["daily"]),
            r#"{"limits": {"daily": {"max": "1.00"}}}"#,
        );
        assert_eq!(got["limits"]["daily"]["window"], "24h");
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Config {
        name: String,
        list: Vec<String>,
        limits: Limits,
        rule: Rule,
        off: Option<String>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Limits {
        daily: Cap,
        hourly: Cap,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Cap {
        max: PositiveAmount,
        window: Window,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Rule {
        max: u64,
        window: Window,
    }

    #[test]
    fn the_merged_document_reads_into_the_configuration_type() {
        let c: Config = DEFAULTS
            .parse(r#"{"name": "n\u00e9\n", "limits": {"hourly": {"max": 2.5}}, "off": null}"#)
            .unwrap();
        assert_eq!(c.name, "né\n");
        assert_eq!(c.list, ["a", "b"]);
        assert_eq!(c.limits.hourly.max.to_string(), "2.5");
        assert_eq!(c.limits.hourly.window, Window::hours(1));
        assert_eq!(c.limits.daily.max.to_string(), "100.00");
        assert_eq!(c.limits.daily.window, Window::hours(24));
        assert_eq!((c.rule.max, c.rule.window), (5, Window::hours(1)));
        assert_eq!(c.off, None);
        let c: Config = DEFAULTS.parse("").unwrap();
        assert_eq!(c.off.as_deref(), Some("x"));
    }

    #[test]
    fn numbers_stay_exact_through_the_merge() {
        let c: Config = DEFAULTS
            .parse(r#"{"limits": {"daily": {"max": 1.0000000000000001}}}"#)
            .unwrap();
        assert_eq!(c.limits.daily.max.to_string(), "1.0000000000000001");
        let c: Config = DEFAULTS
            .parse(r#"{"limits": {"daily": {"max": 1e2}}}"#)
            .unwrap();
        assert_eq!(c.limits.daily.max.get(), crate::Decimal::new(100, 0));
        let c: Config = DEFAULTS
            .parse(r#"{"rule": {"max": 18446744073709551615}}"#)
            .unwrap();
        assert_eq!(c.rule.max, u64::MAX);
        let err = DEFAULTS
            .parse::<Config>(r#"{"rule": {"max": 18446744073709551616}}"#)
            .unwrap_err();
        assert!(
            err.contains("invalid type: string \"18446744073709551616\""),
            "{err}"
        );
        let err = DEFAULTS
            .parse::<Config>(r#"{"rule": {"max": -1}}"#)
            .unwrap_err();
        assert!(err.contains("invalid value: integer `-1`"), "{err}");
    }

    #[test]
    fn unknown_keys_are_refused_by_name_and_place_at_any_depth() {
        let err = DEFAULTS.parse::<Config>(r#"{"nmae": "x"}"#).unwrap_err();
        assert_eq!(
            err,
            "unknown field `nmae`, expected one of `name`, `list`, `limits`, `rule`, `off` at line 1 column 7"
        );
        let err = DEFAULTS
            .parse::<Config>("{\"limits\": {\n  \"daily\": {\"maximum\": \"1.00\"}}}")
            .unwrap_err();
        assert_eq!(
            err,
            "unknown field `maximum`, expected `max` or `window` at line 2 column 21"
        );
    }

    #[test]
    fn a_key_given_twice_is_refused() {
        let err = DEFAULTS
            .parse::<Config>(r#"{"name": "a", "limits": {"daily": {"max": 1, "max": 2}}}"#)
            .unwrap_err();
        assert_eq!(err, "duplicate field `max` at line 1 column 50");
    }

    #[test]
    fn errors_in_values_and_documents_say_where() {
        let err = DEFAULTS
            .parse::<Config>(r#"{"limits": {"daily": {"max": "0"}}}"#)
            .unwrap_err();
        assert_eq!(
            err,
            "an amount here must be positive, not 0 at line 1 column 32"
        );
        let err = DEFAULTS
            .parse::<Config>(r#"{"limits": {"daily": {"window": "1 h"}}}"#)
            .unwrap_err();
        assert!(err.starts_with("invalid window `1 h`"), "{err}");
        assert!(err.ends_with("at line 1 column 37"), "{err}");
        let err = DEFAULTS.parse::<Config>(r#"{"list": "a"}"#).unwrap_err();
        assert_eq!(
            err,
            "invalid type: string \"a\", expected a sequence at line 1 column 12"
        );
        let err = DEFAULTS.parse::<Config>(r#"{"name": "#).unwrap_err();
        assert_eq!(err, "EOF while parsing a value at line 1 column 10");
        // A whole path the tenant leaves a key out of.
        let err = DEFAULTS
            .replace_whole(&["rule"])
            .parse::<Config>(r#"{"rule": {"max": 3}}"#)
            .unwrap_err();
        assert_eq!(err, "missing field `window` at line 1 column 19");
    }

    #[test]
    fn a_key_neither_gives_is_the_tenants_to_give() {
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Needs {
            #[serde(rename = "name")]
            _name: String,
            #[serde(rename = "required")]
            _required: u64,
        }
        const SOME: Defaults = crate::defaults!(r#"{"name": "x"}"#);
        assert_eq!(
            SOME.parse::<Needs>("").unwrap_err(),
            "missing field `required`"
        );
        assert_eq!(
            SOME.parse::<Needs>(r#"{"name": "y"}"#).unwrap_err(),
            "missing field `required` at line 1 column 13"
        );
    }

    #[test]
    fn a_mistake_in_the_defaults_is_the_policys() {
        const WRONG: Defaults = crate::defaults!(r#"{"name": 5, "list": [], "limits": {}}"#);
        let err = WRONG.parse::<Config>("").unwrap_err();
        assert_eq!(
            err,
            "the policy's own defaults do not read: invalid type: integer `5`, expected a string at line 1 column 10 of the defaults"
        );
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(rename_all = "snake_case")]
    enum Shape {
        Unit,
        Newtype(u64),
        Pair(u64, String),
        Named { size: u64 },
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Shapes {
        tier: Tier,
        shapes: Vec<Shape>,
        maybe: Option<Box<Shape>>,
    }

    #[test]
    fn enums_options_and_nesting_read_as_serde_json_reads_them() {
        const SHAPES: Defaults = crate::defaults!(
            r#"{"tier": "supervised", "shapes": ["unit", {"newtype": 3}, {"pair": [1, "a"]}, {"named": {"size": 2}}], "maybe": null}"#
        );
        let s: Shapes = SHAPES.parse("").unwrap();
        assert_eq!(s.tier, Tier::Supervised);
        assert_eq!(
            s.shapes,
            [
                Shape::Unit,
                Shape::Newtype(3),
                Shape::Pair(1, "a".into()),
                Shape::Named { size: 2 }
            ]
        );
        assert_eq!(s.maybe, None);
        let s: Shapes = SHAPES
            .parse(r#"{"tier": "prohibited", "maybe": {"named": {"size": 9}}}"#)
            .unwrap();
        assert_eq!(s.tier, Tier::Prohibited);
        assert_eq!(s.maybe.as_deref(), Some(&Shape::Named { size: 9 }));
        let err = SHAPES
            .parse::<Shapes>(r#"{"tier": "supervisd"}"#)
            .unwrap_err();
        assert!(err.contains("unknown variant `supervisd`"), "{err}");
        assert!(err.ends_with("at line 1 column 20"), "{err}");
    }

    #[test]
    fn escaped_keys_match_their_plain_spelling() {
        let got = merged(DEFAULTS, r#"{"n\u0061me": "mine"}"#);
        assert_eq!(got["name"], "mine");
        let c: Config = DEFAULTS.parse(r#"{"n\u0061me": "mine"}"#).unwrap();
        assert_eq!(c.name, "mine");
    }

    #[test]
    fn without_defaults_the_document_is_read_as_it_is() {
        let err = Defaults::NONE
            .parse::<Config>(r#"{"nmae": "x"}"#)
            .unwrap_err();
        // serde_json's own message, with where it is.
        assert!(err.contains("unknown field `nmae`"), "{err}");
        assert!(err.contains("at line 1 column 7"), "{err}");
        assert_eq!(Defaults::NONE.parse::<Value>("").unwrap(), json!({}));
        assert_eq!(Defaults::default(), Defaults::NONE);
        assert_eq!(Defaults::NONE.document(), "");
        assert!(DEFAULTS.document().contains("\"limits\""));
    }

    #[test]
    fn unescape_reads_every_escape() {
        assert_eq!(
            unescape(r#"a\"b\\c\/d\b\f\n\r\t\u00e9\ud83d\ude00"#).unwrap(),
            "a\"b\\c/d\u{8}\u{c}\n\r\té😀"
        );
        for bad in [r#"\ud83d"#, r#"\ud83dx"#, r#"\ud83d\u0041"#, r#"\u12"#] {
            assert!(unescape(bad).is_err(), "{bad}");
        }
    }
}
