//! The thin tokio driver: the only code that touches the SIP socket and the clock. It moves
//! datagrams between the socket and the sans-IO [`UserAgent`], and sleeps until its next
//! deadline.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Instant;

use tokio::net::UdpSocket;

use crate::sip::transaction::Transmit;
use crate::sip::ua::{UaEvent, UserAgent};

/// Largest datagram we accept; bigger ones are truncated by the kernel and then rejected.
const RECV_BUFFER: usize = crate::sip::message::MAX_MESSAGE_SIZE + 1;

pub struct Driver {
    socket: UdpSocket,
    pub ua: UserAgent,
    sip_trace: bool,
    buffer: Vec<u8>,
    /// A datagram taken from the core but not yet sent (kept if a send is cancelled).
    pending: Option<Transmit>,
    /// Report each SIP message's first line (the call flow, for `siphon demo`).
    flow: Option<crate::output::Reporter>,
}

impl Driver {
    pub fn new(socket: UdpSocket, ua: UserAgent, sip_trace: bool) -> Driver {
        Driver {
            socket,
            ua,
            sip_trace,
            buffer: vec![0; RECV_BUFFER],
            pending: None,
            flow: None,
        }
    }

    /// Reports one line per SIP message sent or received.
    pub fn show_flow(&mut self, reporter: crate::output::Reporter) {
        self.flow = Some(reporter);
    }

    /// Runs the user agent until it has an event for us. Cancel-safe: dropping the future
    /// loses no datagram and no event.
    pub async fn next_event(&mut self) -> io::Result<UaEvent> {
        loop {
            self.flush().await?;
            if let Some(event) = self.ua.poll_event() {
                return Ok(event);
            }
            let deadline = self.ua.poll_timeout();
            let sleep = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                received = self.socket.recv_from(&mut self.buffer) => {
                    match received {
                        Ok((len, source)) => {
                            let data = &self.buffer[..len];
                            if self.sip_trace {
                                trace("received from", source, data);
                            }
                            if let Some(reporter) = self.flow {
                                show_flow(reporter, "in", source, data);
                            }
                            self.ua.handle_datagram(Instant::now(), data, source);
                        }
                        // ICMP port unreachable and the like surface here on some systems.
                        Err(e) => tracing::debug!("recv error: {e}"),
                    }
                }
                _ = sleep => self.ua.handle_timeout(Instant::now()),
            }
        }
    }

    /// Sends everything the core has queued.
    async fn flush(&mut self) -> io::Result<()> {
        loop {
            if self.pending.is_none() {
                self.pending = self.ua.poll_transmit();
            }
            let Some(transmit) = &self.pending else {
                return Ok(());
            };
            if self.sip_trace {
                trace("sent to", transmit.destination, &transmit.data);
            }
            if let Some(reporter) = self.flow {
                show_flow(reporter, "out", transmit.destination, &transmit.data);
            }
            if let Err(e) = self
                .socket
                .send_to(&transmit.data, transmit.destination)
                .await
            {
                // A datagram that cannot be sent is lost, as on the wire; the transaction
                // layer retransmits or times out.
                tracing::warn!("send to {} failed: {e}", transmit.destination);
            }
            self.pending = None;
        }
    }
}

fn show_flow(
    reporter: crate::output::Reporter,
    direction: &'static str,
    peer: SocketAddr,
    data: &[u8],
) {
    if crate::sip::message::is_keepalive(data) {
        return;
    }
    let text = String::from_utf8_lossy(data);
    let first_line = text.lines().next().unwrap_or_default().to_string();
    reporter.emit(&crate::output::Event::SipMessage {
        direction,
        peer: peer.to_string(),
        first_line,
    });
}

fn trace(what: &str, peer: SocketAddr, data: &[u8]) {
    eprintln!(
        "----- {what} {peer} ({} bytes)\n{}",
        data.len(),
        String::from_utf8_lossy(data).trim_end()
    );
}

/// The local address that routes to `remote` (no packet is sent: a connected UDP socket
/// only asks the kernel for a route).
pub fn local_ip_towards(remote: SocketAddr) -> io::Result<IpAddr> {
    let any: IpAddr = if remote.is_ipv4() {
        Ipv4Addr::UNSPECIFIED.into()
    } else {
        Ipv6Addr::UNSPECIFIED.into()
    };
    let probe = std::net::UdpSocket::bind(SocketAddr::new(any, 0))?;
    probe.connect(remote)?;
    Ok(probe.local_addr()?.ip())
}

/// Binds the SIP socket: `listen` if given (an unspecified IP is replaced by the address
/// that routes to `remote`, for Via and Contact), else an ephemeral port on that address.
/// Returns the socket and the address to advertise.
pub async fn bind(
    listen: Option<SocketAddr>,
    remote: Option<SocketAddr>,
) -> io::Result<(UdpSocket, SocketAddr)> {
    let wanted = match (listen, remote) {
        (Some(l), _) => l,
        (None, Some(r)) => SocketAddr::new(local_ip_towards(r)?, 0),
        (None, None) => SocketAddr::new(Ipv4Addr::LOCALHOST.into(), 0),
    };
    let socket = UdpSocket::bind(wanted).await?;
    let bound = socket.local_addr()?;
    let advertised = if bound.ip().is_unspecified() {
        let ip = match remote {
            Some(r) => local_ip_towards(r)?,
            None if bound.is_ipv4() => Ipv4Addr::LOCALHOST.into(),
            None => Ipv6Addr::LOCALHOST.into(),
        };
        SocketAddr::new(ip, bound.port())
    } else {
        bound
    };
    Ok((socket, advertised))
}

/// Resolves `host:port` to one address (A/AAAA only; RFC 3263 SRV/NAPTR is not done).
pub async fn resolve(host: &str, port: u16) -> io::Result<SocketAddr> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    tokio::net::lookup_host((host, port))
        .await?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("{host}: no address")))
}

/// The RTP socket of a call and its RTCP neighbour (RFC 3550 §11: RTCP on port + 1).
#[derive(Debug)]
pub struct RtpSockets {
    pub rtp: std::net::UdpSocket,
    pub rtcp: std::net::UdpSocket,
}

impl RtpSockets {
    pub fn port(&self) -> u16 {
        self.rtp.local_addr().map(|a| a.port()).unwrap_or(0)
    }
}

/// Binds an even RTP port and the odd port above it, at random in `ports`
/// (RFC 3550 §11), trying a bounded number of times.
pub fn bind_rtp_pair(ip: IpAddr, ports: std::ops::RangeInclusive<u16>) -> io::Result<RtpSockets> {
    let lo = (*ports.start()).max(1024);
    let hi = *ports.end();
    if hi <= lo {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "empty RTP port range",
        ));
    }
    let pairs = u32::from((hi - lo) / 2).max(1);
    let mut last_error = io::Error::new(io::ErrorKind::AddrInUse, "no free RTP port pair");
    for _ in 0..64 {
        let port = lo + 2 * fastrand::u32(0..pairs) as u16;
        let port = port + (port % 2);
        if port >= hi {
            continue;
        }
        let rtp = match std::net::UdpSocket::bind(SocketAddr::new(ip, port)) {
            Ok(s) => s,
            Err(e) => {
                last_error = e;
                continue;
            }
        };
        match std::net::UdpSocket::bind(SocketAddr::new(ip, port + 1)) {
            Ok(rtcp) => return Ok(RtpSockets { rtp, rtcp }),
            Err(e) => last_error = e,
        }
    }
    Err(last_error)
}

/// Parses `LO-HI`.
pub fn parse_port_range(text: &str) -> Option<std::ops::RangeInclusive<u16>> {
    let (lo, hi) = text.split_once('-')?;
    let (lo, hi) = (
        lo.trim().parse::<u16>().ok()?,
        hi.trim().parse::<u16>().ok()?,
    );
    (lo < hi).then_some(lo..=hi)
}
