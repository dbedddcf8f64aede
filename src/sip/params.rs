//! `;name[=value]` parameter lists of URIs and header fields (RFC 3261 §19.1.1, §25.1
//! `generic-param`). Names compare case-insensitively; values are kept as written.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed parameter list")]
pub struct ParamsError;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params(Vec<(String, Option<String>)>);

impl Params {
    /// Reads `;a=b;c;d="quoted; value"`. LWS around `;` and `=` is allowed (RFC 3261 §25.1
    /// SEMI and EQUAL). The text must be empty or start with `;`.
    pub fn parse(text: &str) -> Result<Params, ParamsError> {
        let mut out = Vec::new();
        let text = text.trim_matches(is_lws);
        if text.is_empty() {
            return Ok(Params(out));
        }
        let mut rest = text.strip_prefix(';').ok_or(ParamsError)?;
        loop {
            let end = find_unquoted(rest, b';').unwrap_or(rest.len());
            let item = rest[..end].trim_matches(is_lws);
            let (name, value) = match item.split_once('=') {
                Some((n, v)) => (n.trim_matches(is_lws), Some(v.trim_matches(is_lws))),
                None => (item, None),
            };
            if name.is_empty() || !name.bytes().all(is_token_byte) {
                return Err(ParamsError);
            }
            if let Some(v) = value {
                let valid = if v.starts_with('"') {
                    quoted_string_end(v) == Some(v.len())
                } else if v.starts_with('[') {
                    v.ends_with(']')
                } else {
                    !v.is_empty() && v.bytes().all(is_param_value_byte)
                };
                if !valid {
                    return Err(ParamsError);
                }
            }
            out.push((name.to_string(), value.map(str::to_string)));
            if end == rest.len() {
                break;
            }
            rest = &rest[end + 1..];
        }
        Ok(Params(out))
    }

    /// `Some(Some(v))` for `name=v`, `Some(None)` for a bare `name`, `None` when absent.
    pub fn get(&self, name: &str) -> Option<Option<&str>> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_deref())
    }

    pub fn value(&self, name: &str) -> Option<&str> {
        self.get(name).flatten()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Sets (replacing) or adds a parameter.
    pub fn set(&mut self, name: &str, value: Option<&str>) {
        let value = value.map(str::to_string);
        match self
            .0
            .iter_mut()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            Some(slot) => slot.1 = value,
            None => self.0.push((name.to_string(), value)),
        }
    }

    pub fn remove(&mut self, name: &str) {
        self.0.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, Option<&str>)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_deref()))
    }
}

impl fmt::Display for Params {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (name, value) in &self.0 {
            match value {
                Some(v) => write!(f, ";{name}={v}")?,
                None => write!(f, ";{name}")?,
            }
        }
        Ok(())
    }
}

pub(crate) fn is_lws(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// RFC 3261 §25.1 `token`.
pub(crate) fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b)
}

/// Characters allowed in an unquoted parameter value: token plus what URI params permit.
fn is_param_value_byte(b: u8) -> bool {
    is_token_byte(b) || b"[]/:&+$@?".contains(&b) || b >= 0x80
}

/// Index just past the closing quote of a quoted string that starts at `text[0]`.
pub(crate) fn quoted_string_end(text: &str) -> Option<usize> {
    let b = text.as_bytes();
    if b.first() != Some(&b'"') {
        return None;
    }
    let mut i = 1;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

/// First `sep` outside quotes and angle brackets.
pub(crate) fn find_unquoted(text: &str, sep: u8) -> Option<usize> {
    let b = text.as_bytes();
    let mut in_quotes = false;
    let mut in_angle = false;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' if in_quotes => i += 1,
            b'"' => in_quotes = !in_quotes,
            b'<' if !in_quotes => in_angle = true,
            b'>' if !in_quotes => in_angle = false,
            c if c == sep && !in_quotes && !in_angle => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

/// Splits a header value on commas outside quotes and `<>` (RFC 3261 §7.3.1).
pub(crate) fn split_list(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = find_unquoted(rest, b',') {
        out.push(rest[..i].trim_matches(is_lws));
        rest = &rest[i + 1..];
    }
    out.push(rest.trim_matches(is_lws));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        let p = Params::parse(" ; tag = 98asjd8 ;lr; x=\"a;b\"").unwrap();
        assert_eq!(p.get("TAG"), Some(Some("98asjd8")));
        assert_eq!(p.get("lr"), Some(None));
        assert_eq!(p.value("x"), Some("\"a;b\""));
        assert_eq!(p.get("nope"), None);
        assert_eq!(p.to_string(), ";tag=98asjd8;lr;x=\"a;b\"");
    }

    #[test]
    fn rejects_garbage() {
        assert!(Params::parse("tag=1").is_err());
        assert!(Params::parse(";").is_err());
        assert!(Params::parse(";;").is_err());
        assert!(Params::parse(";a=\"unterminated").is_err());
        assert!(Params::parse(";a=").is_err());
    }

    #[test]
    fn splits_lists_outside_quotes() {
        assert_eq!(
            split_list("\"a, b\" <sip:x@y>;p=1, <sip:z,w@v> ,sip:q"),
            vec!["\"a, b\" <sip:x@y>;p=1", "<sip:z,w@v>", "sip:q"]
        );
    }
}
