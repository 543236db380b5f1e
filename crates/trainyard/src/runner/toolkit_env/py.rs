//! A model of the Python values the toolkit handles: `json.loads` with Python's semantics
//! (unbounded ints, `NaN`, insertion-ordered dicts), and the renderings the toolkit's
//! variables use (`json.dumps(sort_keys=True)`, `str()`, `repr()`).
//!
//! Why apart: it is a small language runtime of its own, tested against the toolkit's outputs
//! in the parent's tests, and the parent only needs to parse and render.

use super::MAX_DEPTH;
use super::MAX_INT_DIGITS;
use serde_json::Value;

/// A Python value as produced by `json.loads`.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Py {
    None,
    Bool(bool),
    /// Decimal digits with an optional leading `-`, never `-0`; Python ints are unbounded.
    Int(String),
    Float(f64),
    Str(String),
    List(Vec<Py>),
    /// Insertion order (Python dicts keep it; `repr` shows it), keys unique.
    Dict(Vec<(String, Py)>),
}

pub(super) fn dict_get<'v>(entries: &'v [(String, Py)], key: &str) -> Option<&'v Py> {
    entries.iter().find(|(k, _)| k == key).map(|(_, v)| v)
}

/// `d[key] = value`: an existing key keeps its position and takes the new value.
pub(super) fn dict_insert(entries: &mut Vec<(String, Py)>, key: String, value: Py) {
    match entries.iter_mut().find(|(k, _)| *k == key) {
        Some(slot) => slot.1 = value,
        None => entries.push((key, value)),
    }
}

/// Python `==`, with ints, floats and bools compared as numbers.
pub(super) fn py_eq(a: &Py, b: &Py) -> bool {
    match (a, b) {
        (Py::None, Py::None) => true,
        (Py::Str(x), Py::Str(y)) => x == y,
        (Py::Int(x), Py::Int(y)) => x == y,
        (Py::List(x), Py::List(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(u, v)| py_eq(u, v))
        }
        (Py::Dict(x), Py::Dict(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, u)| dict_get(y, k).is_some_and(|v| py_eq(u, v)))
        }
        _ => match (a.as_number(), b.as_number()) {
            (Some(x), Some(y)) => x == y,
            _ => false,
        },
    }
}

/// Python `needle in haystack` for the container types; other types make Python raise.
pub(super) fn py_contains(haystack: &Py, needle: &Py) -> bool {
    match (haystack, needle) {
        (Py::List(items), _) => items.iter().any(|item| py_eq(item, needle)),
        (Py::Str(text), Py::Str(part)) => text.contains(part.as_str()),
        (Py::Dict(entries), Py::Str(key)) => dict_get(entries, key).is_some(),
        _ => false,
    }
}

impl Py {
    pub(super) fn from_json(value: &Value) -> Py {
        match value {
            Value::Null => Py::None,
            Value::Bool(b) => Py::Bool(*b),
            Value::Number(number) => {
                if number.is_f64() {
                    Py::Float(number.as_f64().unwrap_or(f64::NAN))
                } else {
                    Py::Int(number.to_string())
                }
            }
            Value::String(s) => Py::Str(s.clone()),
            Value::Array(items) => Py::List(items.iter().map(Py::from_json).collect()),
            Value::Object(map) => Py::Dict(
                map.iter()
                    .map(|(k, v)| (k.clone(), Py::from_json(v)))
                    .collect(),
            ),
        }
    }

    pub(super) fn get(&self, key: &str) -> Option<&Py> {
        match self {
            Py::Dict(entries) => dict_get(entries, key),
            _ => None,
        }
    }

    /// Python `bool(value)`.
    pub(super) fn truthy(&self) -> bool {
        match self {
            Py::None => false,
            Py::Bool(b) => *b,
            Py::Int(digits) => digits != "0",
            Py::Float(x) => *x != 0.0,
            Py::Str(s) => !s.is_empty(),
            Py::List(items) => !items.is_empty(),
            Py::Dict(entries) => !entries.is_empty(),
        }
    }

    pub(super) fn as_number(&self) -> Option<f64> {
        match self {
            Py::Bool(b) => Some(f64::from(u8::from(*b))),
            Py::Int(digits) => digits.parse().ok(),
            Py::Float(x) => Some(*x),
            _ => None,
        }
    }

    /// `mapping.to_env_vars` value rule: strings as they are, `None` empty, the rest as JSON.
    pub(super) fn to_env_value(&self) -> String {
        match self {
            Py::Str(s) => s.clone(),
            Py::None => String::new(),
            other => {
                let mut out = String::new();
                other.write_json(&mut out);
                out
            }
        }
    }

    /// `json.dumps(self, sort_keys=True, separators=(",", ":"))` (ASCII-only output).
    pub(super) fn write_json(&self, out: &mut String) {
        match self {
            Py::None => out.push_str("null"),
            Py::Bool(true) => out.push_str("true"),
            Py::Bool(false) => out.push_str("false"),
            Py::Int(digits) => out.push_str(digits),
            Py::Float(x) if x.is_nan() => out.push_str("NaN"),
            Py::Float(x) if x.is_infinite() => {
                out.push_str(if *x > 0.0 { "Infinity" } else { "-Infinity" });
            }
            Py::Float(x) => out.push_str(&float_repr(*x)),
            Py::Str(s) => write_json_string(s, out),
            Py::List(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.write_json(out);
                }
                out.push(']');
            }
            Py::Dict(entries) => {
                let mut sorted: Vec<&(String, Py)> = entries.iter().collect();
                sorted.sort_by(|a, b| a.0.cmp(&b.0));
                out.push('{');
                for (i, (key, value)) in sorted.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write_json_string(key, out);
                    out.push(':');
                    value.write_json(out);
                }
                out.push('}');
            }
        }
    }

    /// Python `str(self)`.
    pub(super) fn to_py_str(&self) -> String {
        match self {
            Py::Str(s) => s.clone(),
            other => {
                let mut out = String::new();
                other.write_repr(&mut out);
                out
            }
        }
    }

    /// Python `repr(self)`.
    pub(super) fn write_repr(&self, out: &mut String) {
        match self {
            Py::None => out.push_str("None"),
            Py::Bool(true) => out.push_str("True"),
            Py::Bool(false) => out.push_str("False"),
            Py::Int(digits) => out.push_str(digits),
            Py::Float(x) if x.is_nan() => out.push_str("nan"),
            Py::Float(x) if x.is_infinite() => out.push_str(if *x > 0.0 { "inf" } else { "-inf" }),
            Py::Float(x) => out.push_str(&float_repr(*x)),
            Py::Str(s) => write_str_repr(s, out),
            Py::List(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    item.write_repr(out);
                }
                out.push(']');
            }
            Py::Dict(entries) => {
                out.push('{');
                for (i, (key, value)) in entries.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    write_str_repr(key, out);
                    out.push_str(": ");
                    value.write_repr(out);
                }
                out.push('}');
            }
        }
    }
}

/// A JSON string literal with `ensure_ascii=True`: short escapes for `"` `\` and five controls,
/// `\u00XX` (lower-case hex) for everything else outside printable ASCII, surrogate pairs above
/// the BMP.
pub(super) fn write_json_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
        }
    }
    out.push('"');
}

/// Python's `repr` of a `str`: single quotes unless the text has `'` and no `"`.
pub(super) fn write_str_repr(s: &str, out: &mut String) {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    out.push(quote);
    for c in s.chars() {
        let code = u32::from(c);
        match c {
            _ if c == quote || c == '\\' => {
                out.push('\\');
                out.push(c);
            }
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            ' '..='~' => out.push(c),
            _ if code >= 0x80 && is_printable(code) => out.push(c),
            _ if code <= 0xff => out.push_str(&format!("\\x{code:02x}")),
            _ if code <= 0xffff => out.push_str(&format!("\\u{code:04x}")),
            _ => out.push_str(&format!("\\U{code:08x}")),
        }
    }
    out.push(quote);
}

/// Code points (at or above U+0080) that Python's `str.isprintable` rejects and that are
/// assigned: categories Cc, Cf, Zs, Zl, Zp, Co and Cs (Unicode 14, as in CPython 3.11).
pub(super) const NON_PRINTABLE: [(u32, u32); 27] = [
    (0x80, 0xa0),
    (0xad, 0xad),
    (0x600, 0x605),
    (0x61c, 0x61c),
    (0x6dd, 0x6dd),
    (0x70f, 0x70f),
    (0x890, 0x891),
    (0x8e2, 0x8e2),
    (0x1680, 0x1680),
    (0x180e, 0x180e),
    (0x2000, 0x200f),
    (0x2028, 0x202f),
    (0x205f, 0x2064),
    (0x2066, 0x206f),
    (0x3000, 0x3000),
    (0xd800, 0xf8ff),
    (0xfeff, 0xfeff),
    (0xfff9, 0xfffb),
    (0x110bd, 0x110bd),
    (0x110cd, 0x110cd),
    (0x13430, 0x13438),
    (0x1bca0, 0x1bca3),
    (0x1d173, 0x1d17a),
    (0xe0001, 0xe0001),
    (0xe0020, 0xe007f),
    (0xf0000, 0xffffd),
    (0x100000, 0x10fffd),
];

pub(super) fn is_printable(code: u32) -> bool {
    let noncharacter = (0xfdd0..=0xfdef).contains(&code) || code & 0xfffe == 0xfffe;
    !noncharacter
        && !NON_PRINTABLE
            .iter()
            .any(|&(lo, hi)| (lo..=hi).contains(&code))
}

/// Python's `repr(float)` for a finite value: the shortest digits that round-trip, in positional
/// notation for decimal exponents -4 ..= 15 (always with a fractional part) and as `d.ddde±XX`
/// otherwise.
pub(super) fn float_repr(x: f64) -> String {
    if x == 0.0 {
        return if x.is_sign_negative() { "-0.0" } else { "0.0" }.to_owned();
    }
    let sign = if x < 0.0 { "-" } else { "" };
    // Rust's `{:e}` prints a shortest round-tripping digit string, `d[.ddd]e<exp>`, but when
    // two such strings are equally close to `x` it may pick the other one than Python, which
    // takes the correctly rounded one (ties to even). So take only the length from it and round
    // `x` to that many digits, unless that result does not round-trip (possible next to a
    // power of two, where the rounding interval is lopsided).
    let shortest = format!("{:e}", x.abs());
    let length = shortest
        .split_once('e')
        .map_or(shortest.as_str(), |(m, _)| m)
        .chars()
        .filter(char::is_ascii_digit)
        .count();
    let rounded = format!("{:.*e}", length.saturating_sub(1), x.abs());
    let sci = if rounded.parse::<f64>().ok() == Some(x.abs()) {
        rounded
    } else {
        shortest
    };
    let (mantissa, exponent) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let point = exponent + 1;
    let body = if !(-3..=16).contains(&point) {
        let (head, tail) = digits.split_at(1);
        let fraction = if tail.is_empty() {
            String::new()
        } else {
            format!(".{tail}")
        };
        let exp_sign = if exponent < 0 { '-' } else { '+' };
        format!("{head}{fraction}e{exp_sign}{:02}", exponent.unsigned_abs())
    } else if point <= 0 {
        format!("0.{}{digits}", "0".repeat(point.unsigned_abs() as usize))
    } else {
        let point = point.unsigned_abs() as usize;
        if point >= digits.len() {
            format!("{digits}{}.0", "0".repeat(point - digits.len()))
        } else {
            format!("{}.{}", &digits[..point], &digits[point..])
        }
    };
    format!("{sign}{body}")
}

/// Python's `json.loads(text)`; `None` where Python raises `ValueError`.
pub(super) fn json_loads(text: &str) -> Option<Py> {
    let mut parser = Parser {
        bytes: text.as_bytes(),
        text,
        pos: 0,
        depth: 0,
    };
    parser.skip_whitespace();
    let value = parser.value()?;
    parser.skip_whitespace();
    (parser.pos == parser.bytes.len()).then_some(value)
}

/// A recursive-descent parser with the grammar of CPython's `json` scanner: standard JSON plus
/// `NaN`, `Infinity`, `-Infinity`; whitespace is only space, tab, CR and LF.
#[derive(Debug)]
pub(super) struct Parser<'a> {
    bytes: &'a [u8],
    text: &'a str,
    pos: usize,
    depth: usize,
}

impl Parser<'_> {
    pub(super) fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    pub(super) fn skip_whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    pub(super) fn eat(&mut self, literal: &str) -> bool {
        let found = self.bytes[self.pos..].starts_with(literal.as_bytes());
        if found {
            self.pos += literal.len();
        }
        found
    }

    pub(super) fn value(&mut self) -> Option<Py> {
        match self.peek()? {
            b'"' => self.string().map(Py::Str),
            b'{' => self.nested(Self::object),
            b'[' => self.nested(Self::array),
            b'n' if self.eat("null") => Some(Py::None),
            b't' if self.eat("true") => Some(Py::Bool(true)),
            b'f' if self.eat("false") => Some(Py::Bool(false)),
            b'N' if self.eat("NaN") => Some(Py::Float(f64::NAN)),
            b'I' if self.eat("Infinity") => Some(Py::Float(f64::INFINITY)),
            b'-' if self.eat("-Infinity") => Some(Py::Float(f64::NEG_INFINITY)),
            b'-' | b'0'..=b'9' => self.number(),
            _ => None,
        }
    }

    pub(super) fn nested(&mut self, parse: fn(&mut Self) -> Option<Py>) -> Option<Py> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return None;
        }
        let value = parse(self);
        self.depth -= 1;
        value
    }

    pub(super) fn object(&mut self) -> Option<Py> {
        self.pos += 1;
        let mut entries = Vec::new();
        self.skip_whitespace();
        if self.eat("}") {
            return Some(Py::Dict(entries));
        }
        loop {
            if self.peek()? != b'"' {
                return None;
            }
            let key = self.string()?;
            self.skip_whitespace();
            if !self.eat(":") {
                return None;
            }
            self.skip_whitespace();
            let value = self.value()?;
            dict_insert(&mut entries, key, value);
            self.skip_whitespace();
            if self.eat("}") {
                return Some(Py::Dict(entries));
            }
            if !self.eat(",") {
                return None;
            }
            self.skip_whitespace();
        }
    }

    pub(super) fn array(&mut self) -> Option<Py> {
        self.pos += 1;
        let mut items = Vec::new();
        self.skip_whitespace();
        if self.eat("]") {
            return Some(Py::List(items));
        }
        loop {
            items.push(self.value()?);
            self.skip_whitespace();
            if self.eat("]") {
                return Some(Py::List(items));
            }
            if !self.eat(",") {
                return None;
            }
            self.skip_whitespace();
        }
    }

    pub(super) fn digits(&mut self) -> usize {
        let start = self.pos;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.pos += 1;
        }
        self.pos - start
    }

    pub(super) fn number(&mut self) -> Option<Py> {
        let start = self.pos;
        let negative = self.eat("-");
        match self.peek()? {
            b'0' => self.pos += 1,
            b'1'..=b'9' => {
                self.digits();
            }
            _ => return None,
        }
        let mut is_float = false;
        if self.peek() == Some(b'.') && matches!(self.bytes.get(self.pos + 1), Some(b'0'..=b'9')) {
            self.pos += 1;
            self.digits();
            is_float = true;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            let mark = self.pos;
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            if self.digits() == 0 {
                self.pos = mark;
            } else {
                is_float = true;
            }
        }
        let literal = &self.text[start..self.pos];
        if is_float {
            return literal.parse().ok().map(Py::Float);
        }
        let magnitude = literal.trim_start_matches('-');
        if magnitude.len() > MAX_INT_DIGITS {
            return None;
        }
        Some(Py::Int(if negative && magnitude != "0" {
            literal.to_owned()
        } else {
            magnitude.to_owned()
        }))
    }

    pub(super) fn hex4(&mut self) -> Option<u32> {
        let hex = self.text.get(self.pos..self.pos + 4)?;
        if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        self.pos += 4;
        u32::from_str_radix(hex, 16).ok()
    }

    pub(super) fn string(&mut self) -> Option<String> {
        self.pos += 1;
        let mut out = String::new();
        loop {
            let start = self.pos;
            while matches!(self.peek(), Some(b) if b != b'"' && b != b'\\' && b >= 0x20) {
                self.pos += 1;
            }
            out.push_str(&self.text[start..self.pos]);
            match self.peek()? {
                b'"' => {
                    self.pos += 1;
                    return Some(out);
                }
                b'\\' => {
                    self.pos += 1;
                    let escape = self.peek()?;
                    self.pos += 1;
                    match escape {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => out.push(self.unicode_escape()?),
                        _ => return None,
                    }
                }
                _ => return None,
            }
        }
    }

    /// The code point of a `\uXXXX` escape (already past `\u`), joining a following low
    /// surrogate escape; a lone surrogate becomes U+FFFD.
    pub(super) fn unicode_escape(&mut self) -> Option<char> {
        let high = self.hex4()?;
        if (0xd800..0xdc00).contains(&high) && self.bytes[self.pos..].starts_with(b"\\u") {
            let mark = self.pos;
            self.pos += 2;
            match self.hex4() {
                Some(low) if (0xdc00..0xe000).contains(&low) => {
                    let code = 0x10000 + ((high - 0xd800) << 10) + (low - 0xdc00);
                    return char::from_u32(code);
                }
                _ => self.pos = mark,
            }
        }
        Some(char::from_u32(high).unwrap_or(char::REPLACEMENT_CHARACTER))
    }
}
