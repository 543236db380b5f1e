//! Policy variables: `${aws:PrincipalTag/tenant-id}` and friends.
//!
//! trainyard serves many tenants with one execution role, so the tenant boundary lives
//! in policy variables: `arn:aws:s3:::shared-bucket/${aws:PrincipalTag/tenant-id}/*`.
//! Getting substitution wrong is a cross-tenant data leak, which shapes this module:
//!
//! - A policy string is parsed once, at load, into a [`Template`]: literal text,
//!   escapes (`${*}`, `${?}`, `${$}`) and variables with an optional default
//!   (`${aws:PrincipalTag/team, 'none'}`, where `''` inside the quotes is one `'`).
//!   Malformed variables are refused at load rather than silently kept literal.
//! - Substitution happens per request and produces wildcard *tokens* (see
//!   [`crate::pattern`]), not a string. Only `*` and `?` written in the policy text are
//!   wildcards; characters from a substituted value or an escape are always literal, so
//!   a tag value of `*` cannot widen a tenant's prefix.
//! - A variable whose key is absent, or multivalued (AWS does not substitute
//!   multivalued keys), and that has no default cannot be resolved. The caller then
//!   treats the element as not matching, as AWS documents.
//! - Substitution is a single pass: a value that itself contains `${…}` stays literal.
//!
//! Policies with `Version` `2008-10-17` predate variables; their strings become
//! [`Template::literal`] and `${…}` is plain text there.

use crate::context::Context;
use crate::pattern::{Token, push_literal_text, push_wildcard_text};

/// A policy string with its variables located.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pieces: Vec<Piece>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    /// Policy text; `*` and `?` in it are wildcards where the operator allows them.
    Text(String),
    /// A character produced by `${*}`, `${?}` or `${$}`; always literal.
    Escaped(char),
    /// A variable to substitute.
    Variable(Variable),
}

/// One `${key}` or `${key, 'default'}` reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variable {
    name: String,
    // INVARIANT: `key` is `name` lower-cased, for context lookups.
    key: String,
    default: Option<String>,
}

impl Variable {
    /// The condition key as written, e.g. `aws:PrincipalTag/tenant-id`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The default value, if the variable has one.
    pub fn default_value(&self) -> Option<&str> {
        self.default.as_deref()
    }

    fn lookup<'a>(&'a self, context: &'a Context) -> Option<&'a str> {
        match context.get_lowercase(&self.key) {
            Some([value]) => Some(value.as_str()),
            _ => self.default.as_deref(),
        }
    }
}

/// Why a policy variable reference is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VariableError {
    /// `${` without a closing `}`.
    #[error("`${{` is not closed by `}}`")]
    Unterminated,
    /// `${}` or `${ }`.
    #[error("empty variable name")]
    Empty,
    /// The name contains whitespace, quotes, braces or `$`.
    #[error("invalid variable name `{name}`")]
    InvalidName {
        /// The rejected name.
        name: String,
    },
    /// The text after the comma is not a single-quoted default followed by `}`.
    #[error("invalid default value: expected `, 'value'}}`")]
    InvalidDefault,
}

impl Template {
    /// Parses a policy string, recognising variables and escapes (policy version
    /// `2012-10-17`).
    ///
    /// ```
    /// use trainyard_iam::{Request, Template};
    /// let template = Template::parse("home/${aws:username}/${aws:PrincipalTag/team, 'none'}").unwrap();
    /// let request = Request::builder()
    ///     .principal_arn("arn:aws:iam::111122223333:user/alice")
    ///     .action("s3:GetObject")
    ///     .resource("arn:aws:s3:::b")
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(template.resolve(request.context()).unwrap(), "home/alice/none");
    /// ```
    pub fn parse(raw: &str) -> Result<Self, VariableError> {
        let mut pieces = Vec::new();
        let mut text = String::new();
        let mut rest = raw;
        while let Some(start) = rest.find("${") {
            text.push_str(&rest[..start]);
            let (piece, consumed) = parse_reference(&rest[start + 2..])?;
            if !text.is_empty() {
                pieces.push(Piece::Text(std::mem::take(&mut text)));
            }
            pieces.push(piece);
            rest = &rest[start + 2 + consumed..];
        }
        text.push_str(rest);
        if !text.is_empty() {
            pieces.push(Piece::Text(text));
        }
        Ok(Self { pieces })
    }

    /// A template without variables: `${…}` is plain text (policy version `2008-10-17`).
    pub fn literal(raw: &str) -> Self {
        let pieces = if raw.is_empty() {
            Vec::new()
        } else {
            vec![Piece::Text(raw.to_owned())]
        };
        Self { pieces }
    }

    /// The variables referenced, in order of appearance.
    pub fn variables(&self) -> impl Iterator<Item = &Variable> {
        self.pieces.iter().filter_map(|piece| match piece {
            Piece::Variable(variable) => Some(variable),
            _ => None,
        })
    }

    /// Substitutes every variable from `context` and returns the resulting string, or
    /// the first variable that has neither a single value nor a default.
    pub fn resolve<'a>(&'a self, context: &Context) -> Result<String, &'a Variable> {
        let mut out = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Text(text) => out.push_str(text),
                Piece::Escaped(c) => out.push(*c),
                Piece::Variable(variable) => {
                    out.push_str(variable.lookup(context).ok_or(variable)?)
                }
            }
        }
        Ok(out)
    }

    /// Substitutes variables and returns wildcard tokens. With `wildcards`, `*` and `?`
    /// in the policy text are wildcards; substituted values and escapes never are.
    pub(crate) fn resolve_tokens<'a>(
        &'a self,
        context: &Context,
        wildcards: bool,
    ) -> Result<Vec<Token>, &'a Variable> {
        let mut tokens = Vec::new();
        for piece in &self.pieces {
            match piece {
                Piece::Text(text) if wildcards => push_wildcard_text(&mut tokens, text),
                Piece::Text(text) => push_literal_text(&mut tokens, text),
                Piece::Escaped(c) => tokens.push(Token::Literal(*c)),
                Piece::Variable(variable) => {
                    push_literal_text(&mut tokens, variable.lookup(context).ok_or(variable)?);
                }
            }
        }
        Ok(tokens)
    }

    /// Splits the template at the first five `:` of its policy text into the six ARN
    /// segments, or returns `None` when it has fewer. Colons inside substituted values
    /// do not split, so a value cannot shift segments.
    pub(crate) fn split_arn_segments(&self) -> Option<Vec<Template>> {
        const SEGMENTS: usize = 6;
        let mut segments = vec![Template { pieces: Vec::new() }];
        for piece in &self.pieces {
            let Piece::Text(text) = piece else {
                if let Some(last) = segments.last_mut() {
                    last.pieces.push(piece.clone());
                }
                continue;
            };
            let mut rest = text.as_str();
            loop {
                let split = if segments.len() < SEGMENTS {
                    rest.split_once(':')
                } else {
                    None
                };
                let (head, tail) = split.unwrap_or((rest, ""));
                if let (Some(last), false) = (segments.last_mut(), head.is_empty()) {
                    last.pieces.push(Piece::Text(head.to_owned()));
                }
                if split.is_none() {
                    break;
                }
                segments.push(Template { pieces: Vec::new() });
                rest = tail;
            }
        }
        (segments.len() == SEGMENTS).then_some(segments)
    }
}

/// Parses what follows `${` up to and including the closing `}`; returns the piece and
/// the number of bytes consumed.
fn parse_reference(s: &str) -> Result<(Piece, usize), VariableError> {
    let end = s.find([',', '}']).ok_or(VariableError::Unterminated)?;
    let name = s[..end].trim();
    if s[end..].starts_with('}') {
        let piece = match name {
            "*" => Piece::Escaped('*'),
            "?" => Piece::Escaped('?'),
            "$" => Piece::Escaped('$'),
            _ => Piece::Variable(variable(name, None)?),
        };
        return Ok((piece, end + 1));
    }
    // A default value follows the comma: `, 'text'}` where `''` is a literal quote.
    let after_comma = &s[end + 1..];
    let quoted = after_comma.trim_start();
    let mut offset = end + 1 + (after_comma.len() - quoted.len());
    let mut chars = quoted.char_indices().peekable();
    if !matches!(chars.next(), Some((_, '\''))) {
        return Err(VariableError::InvalidDefault);
    }
    let mut default = String::new();
    let closing = loop {
        match chars.next() {
            None => return Err(VariableError::Unterminated),
            Some((i, '\'')) => {
                if matches!(chars.peek(), Some((_, '\''))) {
                    chars.next();
                    default.push('\'');
                } else {
                    break i;
                }
            }
            Some((_, c)) => default.push(c),
        }
    };
    offset += closing + 1;
    let tail = &s[offset..];
    let trimmed = tail.trim_start();
    if !trimmed.starts_with('}') {
        return Err(if trimmed.is_empty() {
            VariableError::Unterminated
        } else {
            VariableError::InvalidDefault
        });
    }
    offset += tail.len() - trimmed.len() + 1;
    Ok((Piece::Variable(variable(name, Some(default))?), offset))
}

fn variable(name: &str, default: Option<String>) -> Result<Variable, VariableError> {
    if name.is_empty() {
        return Err(VariableError::Empty);
    }
    if name
        .chars()
        .any(|c| c.is_whitespace() || matches!(c, '{' | '}' | '$' | '\'' | '"'))
    {
        return Err(VariableError::InvalidName {
            name: name.to_owned(),
        });
    }
    Ok(Variable {
        name: name.to_owned(),
        key: name.to_lowercase(),
        default,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pattern::matches_tokens;

    fn context(pairs: &[(&str, &[&str])]) -> Context {
        let mut context = Context::new();
        for (key, values) in pairs {
            context.insert(key, values.iter().copied());
        }
        context
    }

    #[test]
    fn resolve_table() {
        let ctx = context(&[
            ("aws:PrincipalTag/tenant-id", &["acme"]),
            ("aws:username", &["alice"]),
            ("aws:TagKeys", &["a", "b"]),
            ("s3:prefix", &["x/"]),
        ]);
        let cases: &[(&str, Result<&str, &str>)] = &[
            ("plain", Ok("plain")),
            ("", Ok("")),
            ("${aws:username}", Ok("alice")),
            ("home/${aws:username}/", Ok("home/alice/")),
            ("${AWS:PRINCIPALTAG/TENANT-ID}", Ok("acme")),
            ("${ aws:username }", Ok("alice")),
            ("${aws:PrincipalTag/team, 'none'}", Ok("none")),
            ("${aws:PrincipalTag/team,'none'}", Ok("none")),
            ("${aws:PrincipalTag/team , 'it''s' }", Ok("it's")),
            ("${aws:PrincipalTag/team, ''}", Ok("")),
            ("${aws:PrincipalTag/tenant-id, 'none'}", Ok("acme")),
            (
                "${aws:PrincipalTag/team, '${aws:username}'}",
                Ok("${aws:username}"),
            ),
            ("${aws:PrincipalTag/team, 'a}b'}", Ok("a}b")),
            ("a${*}b${?}c${$}d", Ok("a*b?c$d")),
            ("${s3:prefix}", Ok("x/")),
            ("${aws:PrincipalTag/team}", Err("aws:PrincipalTag/team")),
            ("${aws:TagKeys}", Err("aws:TagKeys")),
            ("$ {x} $x {x}", Ok("$ {x} $x {x}")),
        ];
        for (raw, expected) in cases {
            let template = Template::parse(raw).unwrap();
            let got = template.resolve(&ctx).map_err(Variable::name);
            assert_eq!(got.as_deref(), expected.as_deref(), "template {raw:?}");
        }
    }

    #[test]
    fn parse_errors() {
        let cases: &[(&str, VariableError)] = &[
            ("${aws:username", VariableError::Unterminated),
            ("${}", VariableError::Empty),
            ("${ }", VariableError::Empty),
            (
                "${aws: username}",
                VariableError::InvalidName {
                    name: "aws: username".to_owned(),
                },
            ),
            ("${a, default}", VariableError::InvalidDefault),
            ("${a, 'default}", VariableError::Unterminated),
            ("${a, 'default'", VariableError::Unterminated),
            ("${a, 'default' x}", VariableError::InvalidDefault),
        ];
        for (raw, expected) in cases {
            assert_eq!(
                Template::parse(raw).unwrap_err(),
                *expected,
                "template {raw:?}"
            );
        }
    }

    #[test]
    fn literal_templates_do_not_substitute() {
        let ctx = context(&[("aws:username", &["alice"])]);
        let template = Template::literal("home/${aws:username}/");
        assert_eq!(template.resolve(&ctx).unwrap(), "home/${aws:username}/");
        assert_eq!(template.variables().count(), 0);
    }

    #[test]
    fn substituted_wildcards_are_literal() {
        let ctx = context(&[("aws:PrincipalTag/tenant-id", &["*"])]);
        let template = Template::parse("bucket/${aws:PrincipalTag/tenant-id}/*").unwrap();
        let tokens = template.resolve_tokens(&ctx, true).unwrap();
        assert!(matches_tokens(&tokens, "bucket/*/file"));
        assert!(!matches_tokens(&tokens, "bucket/other-tenant/file"));
        let escaped = Template::parse("bucket/${*}").unwrap();
        let tokens = escaped.resolve_tokens(&ctx, true).unwrap();
        assert!(matches_tokens(&tokens, "bucket/*"));
        assert!(!matches_tokens(&tokens, "bucket/x"));
        let literal = Template::parse("a*").unwrap();
        let tokens = literal.resolve_tokens(&ctx, false).unwrap();
        assert!(matches_tokens(&tokens, "a*"));
        assert!(!matches_tokens(&tokens, "ab"));
    }

    #[test]
    fn arn_segments() {
        let ctx = context(&[("k", &["x:y"])]);
        let cases: &[(&str, Option<[&str; 6]>)] = &[
            (
                "arn:aws:s3:::b/${k}/k:z",
                Some(["arn", "aws", "s3", "", "", "b/x:y/k:z"]),
            ),
            (
                "arn:${k}:iam::1:role/*",
                Some(["arn", "x:y", "iam", "", "1", "role/*"]),
            ),
            ("arn:aws:s3", None),
            ("*", None),
        ];
        for (raw, expected) in cases {
            let segments = Template::parse(raw).unwrap().split_arn_segments();
            let got = segments.map(|segments| {
                segments
                    .iter()
                    .map(|s| s.resolve(&ctx).unwrap())
                    .collect::<Vec<_>>()
            });
            let expected = expected.map(|e| e.iter().map(|s| s.to_string()).collect::<Vec<_>>());
            assert_eq!(got, expected, "template {raw:?}");
        }
    }
}
