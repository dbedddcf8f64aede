//! What a user agent server checks before acting on a new request (RFC 3261 §8.2):
//! method, Request-URI scheme and user, required extensions, and the body's type.

use super::message::{HeaderName, Method, Request, Response};
use super::uri::Uri;

/// Methods we implement; the rest are known but not allowed here (RFC 3261 §8.2.1).
pub fn is_allowed(method: &Method) -> bool {
    matches!(
        method,
        Method::Invite
            | Method::Ack
            | Method::Bye
            | Method::Cancel
            | Method::Options
            | Method::Info
            | Method::Update
    )
}

/// Body types we understand (RFC 3261 §8.2.3): SDP and DTMF relay for INFO.
pub const ACCEPTED_TYPES: &str = "application/sdp, application/dtmf-relay";

/// Option tags we support (RFC 3261 §8.2.2.3, §19.2).
pub const SUPPORTED_EXTENSIONS: &[&str] = &[];

/// Who this user agent answers for.
#[derive(Debug, Clone, Default)]
pub struct UasPolicy {
    /// User parts (unescaped) we accept in the Request-URI; empty means any (peer to peer).
    pub local_users: Vec<String>,
}

/// Checks a new out-of-dialog or in-dialog request; `Err` carries the response to send.
pub fn inspect_request(request: &Request, policy: &UasPolicy) -> Result<(), Response> {
    let headers = &request.headers;
    let reject = |status: u16| Response::for_request(headers, status);
    // RFC 3261 §8.2.1: a known method we do not do -> 405 with Allow; unknown -> 501.
    if !is_allowed(&request.method) {
        let mut response = match request.method {
            Method::Extension(_) => reject(501),
            _ => reject(405),
        };
        response
            .headers
            .push(HeaderName::Allow, super::ALLOWED_METHODS);
        return Err(response);
    }
    // ACK and CANCEL are never answered on these grounds (RFC 3261 §8.2.2.3, §9.2).
    if matches!(request.method, Method::Ack | Method::Cancel) {
        return Ok(());
    }
    // RFC 3261 §8.2.2.1: scheme, then whether the user is ours.
    match &request.uri {
        Uri::Sip(sip) => {
            if !policy.local_users.is_empty() {
                let user = sip.user_unescaped().unwrap_or_default();
                if !policy.local_users.iter().any(|u| u == &user) {
                    return Err(reject(404));
                }
            }
        }
        Uri::Tel { .. } | Uri::Other { .. } => return Err(reject(416)),
    }
    // RFC 3261 §8.2.2.3: every option tag in Require must be one we support.
    let unsupported: Vec<&str> = headers
        .tokens(&HeaderName::Require)
        .filter(|tag| {
            !SUPPORTED_EXTENSIONS
                .iter()
                .any(|s| s.eq_ignore_ascii_case(tag))
        })
        .collect();
    if !unsupported.is_empty() {
        let mut response = reject(420);
        response
            .headers
            .push(HeaderName::Unsupported, unsupported.join(", "));
        return Err(response);
    }
    // RFC 3261 §8.2.3: a body we cannot read, unless it is optional to handle.
    if !request.body.is_empty() && !body_is_optional(request) {
        let content_type = headers
            .get(&HeaderName::ContentType)
            .map(media_type)
            .unwrap_or_default();
        if !ACCEPTED_TYPES
            .split(", ")
            .any(|t| t.eq_ignore_ascii_case(&content_type))
        {
            let mut response = reject(415);
            response.headers.push(HeaderName::Accept, ACCEPTED_TYPES);
            return Err(response);
        }
    }
    // RFC 3261 §21.4.7: an INVITE whose Accept excludes SDP cannot get an answer we can give.
    if request.method == Method::Invite && headers.contains(&HeaderName::Accept) {
        let accepts_sdp = headers.tokens(&HeaderName::Accept).any(|t| {
            let t = media_type(t);
            t == "application/sdp" || t == "application/*" || t == "*/*"
        });
        if !accepts_sdp {
            let mut response = reject(406);
            response.headers.push(
                HeaderName::Warning,
                "399 siphon \"only application/sdp bodies\"",
            );
            return Err(response);
        }
    }
    Ok(())
}

/// `type/subtype` in lower case, without parameters.
fn media_type(value: &str) -> String {
    value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// RFC 3261 §20.11: `handling=optional` in Content-Disposition lets us ignore the body.
fn body_is_optional(request: &Request) -> bool {
    request
        .headers
        .get(&HeaderName::ContentDisposition)
        .is_some_and(|d| {
            d.split(';')
                .skip(1)
                .any(|p| p.trim().eq_ignore_ascii_case("handling=optional"))
        })
}
