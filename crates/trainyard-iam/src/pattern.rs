//! Wildcard matching for actions, resource ARNs and `StringLike`/`ArnLike` values.
//!
//! IAM patterns know two wildcards: `*` (any run of characters, possibly empty) and `?`
//! (exactly one character). Policies are written by tenants and evaluated on every data
//! access, so the matcher must never backtrack exponentially: a pattern like
//! `a*a*a*a*b` against a long run of `a`s has to stay cheap. The matcher below is the
//! classic two-pointer algorithm that remembers only the most recent `*`, which runs in
//! `O(pattern × text)` time in the worst case and linear time in the usual one.
//!
//! A pattern is a list of [`Token`]s rather than a string, because after policy
//! variables are substituted (see [`crate::variables`]) a `*` that came from a tag value
//! must match a literal `*`, while a `*` written in the policy is a wildcard. Keeping
//! the two apart in the token list is what stops tag values from injecting wildcards.

use std::fmt;

/// One element of a compiled wildcard pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Token {
    /// Matches exactly this character.
    Literal(char),
    /// `?`: matches any single character.
    AnyChar,
    /// `*`: matches any run of characters, including the empty one.
    AnyRun,
}

/// A compiled wildcard pattern in which `*` and `?` are wildcards.
///
/// Matching is case-sensitive unless the pattern was built with
/// [`Pattern::new_ignore_case`], in which case both sides are lower-cased first.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Pattern {
    tokens: Vec<Token>,
    ignore_case: bool,
}

impl Pattern {
    /// Compiles `pattern`, treating `*` and `?` as wildcards and every other character
    /// literally. Matching is case-sensitive, as for resource ARNs.
    pub fn new(pattern: &str) -> Self {
        Self {
            tokens: tokenize(pattern),
            ignore_case: false,
        }
    }

    /// Compiles `pattern` for case-insensitive matching, as used for IAM actions.
    pub fn new_ignore_case(pattern: &str) -> Self {
        Self {
            tokens: tokenize(&pattern.to_lowercase()),
            ignore_case: true,
        }
    }

    /// Returns whether `text` matches this pattern as a whole.
    pub fn matches(&self, text: &str) -> bool {
        if self.ignore_case {
            matches_tokens(&self.tokens, &text.to_lowercase())
        } else {
            matches_tokens(&self.tokens, text)
        }
    }

    /// Returns whether the pattern contains no wildcard at all.
    pub fn is_literal(&self) -> bool {
        self.tokens.iter().all(|t| matches!(t, Token::Literal(_)))
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for token in &self.tokens {
            match token {
                Token::Literal(c) => write!(f, "{c}")?,
                Token::AnyChar => f.write_str("?")?,
                Token::AnyRun => f.write_str("*")?,
            }
        }
        Ok(())
    }
}

/// Returns whether `text` matches the IAM wildcard `pattern` (case-sensitive).
///
/// ```
/// use trainyard_iam::wildcard_match;
/// assert!(wildcard_match("arn:aws:s3:::bucket/a/*", "arn:aws:s3:::bucket/a/x/y"));
/// assert!(wildcard_match("s3:Get?bject", "s3:GetObject"));
/// assert!(!wildcard_match("s3:Get*", "s3:PutObject"));
/// ```
pub fn wildcard_match(pattern: &str, text: &str) -> bool {
    matches_tokens(&tokenize(pattern), text)
}

/// Turns pattern text into tokens, with `*` and `?` as wildcards.
pub(crate) fn tokenize(pattern: &str) -> Vec<Token> {
    let mut tokens = Vec::with_capacity(pattern.len());
    push_wildcard_text(&mut tokens, pattern);
    tokens
}

/// Appends `text` to `tokens`, treating `*` and `?` as wildcards.
pub(crate) fn push_wildcard_text(tokens: &mut Vec<Token>, text: &str) {
    tokens.extend(text.chars().map(|c| match c {
        '*' => Token::AnyRun,
        '?' => Token::AnyChar,
        c => Token::Literal(c),
    }));
}

/// Appends `text` to `tokens` with every character literal.
pub(crate) fn push_literal_text(tokens: &mut Vec<Token>, text: &str) {
    tokens.extend(text.chars().map(Token::Literal));
}

/// Matches `text` against `pattern` as a whole.
///
/// Greedy scan that remembers the position of the last `*` seen and, on a mismatch,
/// lets that `*` swallow one more character. Earlier `*`s never need revisiting: any
/// match found by extending an earlier star can also be found by extending the later
/// one, which is why the worst case is `O(pattern × text)` and not exponential.
pub(crate) fn matches_tokens(pattern: &[Token], text: &str) -> bool {
    let text: Vec<char> = text.chars().collect();
    let (mut p, mut t) = (0, 0);
    // Pattern index just after the last `*`, and the text index that `*` resumes from.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        let current = text[t];
        match pattern.get(p) {
            Some(Token::AnyRun) => {
                star = Some((p + 1, t));
                p += 1;
            }
            Some(Token::AnyChar) => {
                p += 1;
                t += 1;
            }
            Some(Token::Literal(c)) if *c == current => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((after_star, resume)) => {
                    // INVARIANT: `resume < text.len()` because `t >= resume` and `t < len`.
                    p = after_star;
                    t = resume + 1;
                    star = Some((after_star, resume + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|token| *token == Token::AnyRun)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let cases: &[(&str, &str, bool)] = &[
            ("", "", true),
            ("", "a", false),
            ("*", "", true),
            ("*", "anything/at:all", true),
            ("?", "", false),
            ("?", "x", true),
            ("?", "xy", false),
            ("a*", "a", true),
            ("a*", "ab/c", true),
            ("a*", "ba", false),
            ("*a", "bba", true),
            ("*a", "bab", false),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("a*b*c", "aXXbYYc", true),
            ("a*b*c", "aXXcYYb", false),
            ("*.txt", "dir/file.txt", true),
            ("s3:Get*", "s3:GetObject", true),
            ("s3:Get*", "s3:getobject", false),
            ("arn:aws:s3:::b/*", "arn:aws:s3:::b/", true),
            ("arn:aws:s3:::b/*", "arn:aws:s3:::b", false),
            ("**", "x", true),
            ("*?", "", false),
            ("*?", "x", true),
            ("ab*ba", "aba", false),
            ("ab*ba", "abba", true),
            ("ünï*", "ünïcödé", true),
            ("?ö", "öö", true),
        ];
        for (pattern, text, expected) in cases {
            assert_eq!(
                wildcard_match(pattern, text),
                *expected,
                "pattern {pattern:?} text {text:?}"
            );
        }
    }

    #[test]
    fn ignore_case() {
        let cases: &[(&str, &str, bool)] = &[
            ("s3:GetObject", "S3:GETOBJECT", true),
            ("S3:get*", "s3:GetObjectAcl", true),
            ("iam:*", "IAM:CreateUser", true),
            ("s3:Get*", "s3:PutObject", false),
        ];
        for (pattern, text, expected) in cases {
            assert_eq!(
                Pattern::new_ignore_case(pattern).matches(text),
                *expected,
                "pattern {pattern:?} text {text:?}"
            );
        }
    }

    #[test]
    fn literal_tokens_match_wildcard_characters_literally() {
        let mut tokens = Vec::new();
        push_wildcard_text(&mut tokens, "bucket/");
        push_literal_text(&mut tokens, "*");
        push_wildcard_text(&mut tokens, "/*");
        assert!(matches_tokens(&tokens, "bucket/*/x"));
        assert!(!matches_tokens(&tokens, "bucket/a/x"));
    }

    #[test]
    fn pathological_pattern_is_fast() {
        let pattern = format!("{}b", "a*".repeat(40));
        let text = "a".repeat(5_000);
        let start = std::time::Instant::now();
        assert!(!wildcard_match(&pattern, &text));
        assert!(start.elapsed() < std::time::Duration::from_secs(2));
    }

    #[test]
    fn display_round_trips() {
        for raw in ["a*b?c", "*", "", "arn:aws:s3:::x/*"] {
            assert_eq!(Pattern::new(raw).to_string(), raw);
        }
        assert!(Pattern::new("abc").is_literal());
        assert!(!Pattern::new("a?c").is_literal());
    }
}
