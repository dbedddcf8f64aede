//! Dialogs (RFC 3261 §12): the state two user agents share for a call, and the rules for
//! building and accepting requests inside it.

use super::headers::NameAddr;
use super::message::{HeaderName, Method, Request, Response};
use super::uri::Uri;

/// Identifies a dialog from our side: Call-ID, our tag, their tag (RFC 3261 §12).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DialogId {
    pub call_id: String,
    pub local_tag: String,
    pub remote_tag: String,
}

impl DialogId {
    /// The id of the dialog a request received belongs to (their From tag is the remote
    /// tag, their To tag ours).
    pub fn for_incoming(request: &Request) -> Option<DialogId> {
        Some(DialogId {
            call_id: request.headers.call_id()?.to_string(),
            local_tag: request.headers.to().ok()?.tag()?.to_string(),
            remote_tag: request.headers.from().ok()?.tag()?.to_string(),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dialog {
    pub id: DialogId,
    /// Our CSeq for requests we send; `None` until we send one (UAS side, §12.1.1).
    pub local_seq: Option<u32>,
    /// The highest CSeq seen from the peer (§12.2.2).
    pub remote_seq: Option<u32>,
    pub local_uri: NameAddr,
    pub remote_uri: NameAddr,
    /// Where in-dialog requests go (their Contact, §12.1.1, updated by target refresh).
    pub remote_target: Uri,
    /// Record-Route in the order to put in Route headers of our requests (§12.1).
    pub route_set: Vec<NameAddr>,
    /// Our Contact, sent in target-refresh requests and their responses.
    pub local_contact: Uri,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DialogError {
    #[error("response has no To tag")]
    MissingRemoteTag,
    #[error("no usable Contact")]
    MissingContact,
    #[error("malformed header: {0}")]
    Header(String),
    /// RFC 3261 §12.2.2: a CSeq lower than one already seen: answer 500.
    #[error("CSeq out of order")]
    OutOfOrder,
}

fn header_error(e: impl std::fmt::Display) -> DialogError {
    DialogError::Header(e.to_string())
}

impl Dialog {
    /// The UAC side, from our INVITE and a 1xx (with To tag) or 2xx response (§12.1.2).
    pub fn from_uac(
        invite: &Request,
        response: &Response,
        local_contact: Uri,
    ) -> Result<Dialog, DialogError> {
        let to = response.headers.to().map_err(header_error)?;
        let remote_tag = to.tag().ok_or(DialogError::MissingRemoteTag)?.to_string();
        let from = invite.headers.from().map_err(header_error)?;
        let local_tag = from.tag().unwrap_or_default().to_string();
        let remote_target = contact_uri(&response.headers).ok_or(DialogError::MissingContact)?;
        // §12.1.2: the route set is the Record-Route of the response, reversed.
        let mut route_set = response
            .headers
            .routes(&HeaderName::RecordRoute)
            .map_err(header_error)?;
        route_set.reverse();
        let seq = invite.headers.cseq().map_err(header_error)?.seq;
        Ok(Dialog {
            id: DialogId {
                call_id: invite.headers.call_id().unwrap_or_default().to_string(),
                local_tag,
                remote_tag,
            },
            local_seq: Some(seq),
            remote_seq: None,
            local_uri: strip_tag(from),
            remote_uri: strip_tag(to),
            remote_target,
            route_set,
            local_contact,
        })
    }

    /// The UAS side, from the INVITE received and the To tag we chose (§12.1.1).
    pub fn from_uas(
        invite: &Request,
        local_tag: &str,
        local_contact: Uri,
    ) -> Result<Dialog, DialogError> {
        let from = invite.headers.from().map_err(header_error)?;
        let to = invite.headers.to().map_err(header_error)?;
        let remote_target = contact_uri(&invite.headers).ok_or(DialogError::MissingContact)?;
        // §12.1.1: the route set is the Record-Route of the request, in order.
        let route_set = invite
            .headers
            .routes(&HeaderName::RecordRoute)
            .map_err(header_error)?;
        let seq = invite.headers.cseq().map_err(header_error)?.seq;
        Ok(Dialog {
            id: DialogId {
                call_id: invite.headers.call_id().unwrap_or_default().to_string(),
                local_tag: local_tag.to_string(),
                remote_tag: from.tag().unwrap_or_default().to_string(),
            },
            local_seq: None,
            remote_seq: Some(seq),
            local_uri: strip_tag(to),
            remote_uri: strip_tag(from),
            remote_target,
            route_set,
            local_contact,
        })
    }

    /// A new request in this dialog (§12.2.1.1), with the next CSeq (ACK and CANCEL reuse
    /// the INVITE's: build those with [`Dialog::build_ack`]). No Via: the UA core adds it.
    pub fn build_request(&mut self, method: Method) -> Request {
        let seq = self.local_seq.map_or(fastrand::u32(1..1 << 16), |s| s + 1);
        self.local_seq = Some(seq);
        self.request_with_seq(method, seq)
    }

    /// The ACK for a 2xx to the INVITE with CSeq `invite_seq` (§13.2.2.4).
    pub fn build_ack(&self, invite_seq: u32) -> Request {
        self.request_with_seq(Method::Ack, invite_seq)
    }

    fn request_with_seq(&self, method: Method, seq: u32) -> Request {
        let (uri, routes) = self.request_target();
        let mut request = Request::new(method.clone(), uri);
        let h = &mut request.headers;
        h.push(HeaderName::MaxForwards, "70");
        for route in routes {
            h.push(HeaderName::Route, route.to_string());
        }
        let mut from = self.local_uri.clone();
        from.set_tag(&self.id.local_tag);
        h.push(HeaderName::From, from.to_string());
        let mut to = self.remote_uri.clone();
        to.set_tag(&self.id.remote_tag);
        h.push(HeaderName::To, to.to_string());
        h.push(HeaderName::CallId, self.id.call_id.clone());
        h.push(HeaderName::CSeq, format!("{seq} {method}"));
        // §12.2.1.1: target-refresh requests carry our Contact.
        if matches!(method, Method::Invite | Method::Update) {
            h.push(HeaderName::Contact, format!("<{}>", self.local_contact));
        }
        request
    }

    /// Request-URI and Route values per §12.2.1.1: loose routing puts the remote target in
    /// the Request-URI; a strict first route takes the Request-URI and the target goes last.
    fn request_target(&self) -> (Uri, Vec<NameAddr>) {
        let Some(first) = self.route_set.first() else {
            return (self.remote_target.clone(), Vec::new());
        };
        let loose = first.uri.as_sip().is_some_and(|u| u.params.contains("lr"));
        if loose {
            (self.remote_target.clone(), self.route_set.clone())
        } else {
            let mut first_uri = first.uri.clone();
            if let Some(sip) = first_uri.as_sip_mut() {
                sip.headers = None;
            }
            let mut routes: Vec<NameAddr> = self.route_set[1..].to_vec();
            routes.push(NameAddr::new(self.remote_target.clone()));
            (first_uri, routes)
        }
    }

    /// The URI of the first hop for our requests (route set first, else the remote target):
    /// the caller resolves it to a socket address.
    pub fn next_hop(&self) -> &Uri {
        self.route_set
            .first()
            .map(|r| &r.uri)
            .unwrap_or(&self.remote_target)
    }

    /// Checks the CSeq of a request received in the dialog (§12.2.2) and records it.
    pub fn accept_remote_seq(&mut self, request: &Request) -> Result<(), DialogError> {
        let seq = request.headers.cseq().map_err(header_error)?.seq;
        // ACK and CANCEL carry the INVITE's number (§12.2.2 exempts them from ordering).
        if matches!(request.method, Method::Ack | Method::Cancel) {
            return Ok(());
        }
        if let Some(last) = self.remote_seq
            && seq <= last
        {
            return Err(DialogError::OutOfOrder);
        }
        self.remote_seq = Some(seq);
        Ok(())
    }

    /// Target refresh (§12.2): a re-INVITE or UPDATE, or their 2xx, may carry a new Contact.
    pub fn refresh_target(&mut self, headers: &super::message::Headers) {
        if let Some(uri) = contact_uri(headers) {
            self.remote_target = uri;
        }
    }
}

fn strip_tag(mut address: NameAddr) -> NameAddr {
    address.params.remove("tag");
    address
}

/// The first Contact's URI.
pub fn contact_uri(headers: &super::message::Headers) -> Option<Uri> {
    headers.contacts().ok()?.into_iter().next().map(|c| c.uri)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::message::Message;

    fn parse_request(text: &str) -> Request {
        match Message::parse(text.replace('\n', "\r\n").as_bytes()).unwrap() {
            Message::Request(r) => r,
            _ => panic!(),
        }
    }

    fn parse_response(text: &str) -> Response {
        match Message::parse(text.replace('\n', "\r\n").as_bytes()).unwrap() {
            Message::Response(r) => r,
            _ => panic!(),
        }
    }

    const INVITE: &str = "INVITE sip:bob@127.0.0.1:5070 SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK1
Max-Forwards: 70
From: \"Alice\" <sip:alice@127.0.0.1>;tag=a1
To: <sip:bob@127.0.0.1:5070>
Call-ID: call-1
CSeq: 10 INVITE
Contact: <sip:alice@127.0.0.1:5060>
Content-Length: 0

";

    const OK: &str = "SIP/2.0 200 OK
Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK1
Record-Route: <sip:p2.example;lr>, <sip:p1.example;lr>
From: \"Alice\" <sip:alice@127.0.0.1>;tag=a1
To: <sip:bob@127.0.0.1:5070>;tag=b2
Call-ID: call-1
CSeq: 10 INVITE
Contact: <sip:bob@127.0.0.1:5070>
Content-Length: 0

";

    #[test]
    fn uac_dialog_builds_in_dialog_requests_with_loose_routes() {
        let contact = Uri::parse("sip:alice@127.0.0.1:5060").unwrap();
        let mut d = Dialog::from_uac(&parse_request(INVITE), &parse_response(OK), contact).unwrap();
        assert_eq!(d.id.remote_tag, "b2");
        assert_eq!(d.route_set.len(), 2);
        assert_eq!(d.next_hop().to_string(), "sip:p1.example;lr");
        let bye = d.build_request(Method::Bye);
        assert_eq!(bye.uri.to_string(), "sip:bob@127.0.0.1:5070");
        let routes: Vec<&str> = bye.headers.get_all(&HeaderName::Route).collect();
        assert_eq!(routes, ["<sip:p1.example;lr>", "<sip:p2.example;lr>"]);
        assert_eq!(bye.headers.cseq().unwrap().seq, 11);
        assert_eq!(bye.headers.from().unwrap().tag(), Some("a1"));
        assert_eq!(bye.headers.to().unwrap().tag(), Some("b2"));
        let ack = d.build_ack(10);
        assert_eq!(ack.headers.cseq().unwrap().to_string(), "10 ACK");
    }

    #[test]
    fn uas_dialog_orders_and_checks_cseq() {
        let contact = Uri::parse("sip:bob@127.0.0.1:5070").unwrap();
        let invite = parse_request(
            &INVITE.replace("Contact:", "Record-Route: <sip:p1.example;lr>\nContact:"),
        );
        let mut d = Dialog::from_uas(&invite, "b2", contact).unwrap();
        assert_eq!(d.id.remote_tag, "a1");
        assert_eq!(d.remote_seq, Some(10));
        let mut bye = d.build_request(Method::Bye);
        assert_eq!(bye.uri.to_string(), "sip:alice@127.0.0.1:5060");
        assert_eq!(
            bye.headers.get(&HeaderName::Route),
            Some("<sip:p1.example;lr>")
        );
        assert_eq!(bye.headers.from().unwrap().tag(), Some("b2"));
        // Incoming requests: higher CSeq accepted, lower rejected.
        bye.headers.set(HeaderName::CSeq, "11 BYE");
        assert!(d.accept_remote_seq(&bye).is_ok());
        bye.headers.set(HeaderName::CSeq, "9 BYE");
        assert_eq!(d.accept_remote_seq(&bye), Err(DialogError::OutOfOrder));
    }

    #[test]
    fn strict_route_takes_the_request_uri() {
        let contact = Uri::parse("sip:alice@127.0.0.1:5060").unwrap();
        let ok = OK.replace(
            "Record-Route: <sip:p2.example;lr>, <sip:p1.example;lr>",
            "Record-Route: <sip:p1.example>",
        );
        let mut d =
            Dialog::from_uac(&parse_request(INVITE), &parse_response(&ok), contact).unwrap();
        let bye = d.build_request(Method::Bye);
        assert_eq!(bye.uri.to_string(), "sip:p1.example");
        assert_eq!(
            bye.headers.get(&HeaderName::Route),
            Some("<sip:bob@127.0.0.1:5070>")
        );
    }

    #[test]
    fn missing_tag_or_contact_is_an_error() {
        let contact = Uri::parse("sip:alice@127.0.0.1:5060").unwrap();
        let no_tag = OK.replace(";tag=b2", "");
        assert_eq!(
            Dialog::from_uac(
                &parse_request(INVITE),
                &parse_response(&no_tag),
                contact.clone()
            ),
            Err(DialogError::MissingRemoteTag)
        );
        let no_contact = OK.replace("Contact: <sip:bob@127.0.0.1:5070>\n", "");
        assert_eq!(
            Dialog::from_uac(
                &parse_request(INVITE),
                &parse_response(&no_contact),
                contact
            ),
            Err(DialogError::MissingContact)
        );
    }
}
