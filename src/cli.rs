//! The command line. Other programs script siphon, so these names are a contract.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "siphon",
    version,
    about = "A SIP user agent (softphone) for the terminal and for scripts",
    after_help = "Exit status: 0 success, 1 failure at run time (one-line reason on stderr), 2 usage error."
)]
pub struct Cli {
    /// Print events as JSON, one object per line, on stdout.
    #[arg(long, global = true)]
    pub json: bool,
    /// More logging on stderr (-v info, -vv debug).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Print every SIP message sent and received on stderr.
    #[arg(long, global = true)]
    pub sip_trace: bool,
    /// Config file (TOML with named accounts); default: $XDG_CONFIG_HOME/siphon/config.toml.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// RFC 3261 timer T1 in milliseconds (round-trip estimate; default 500).
    #[arg(long, global = true, value_name = "MS", hide_short_help = true)]
    pub t1_ms: Option<u64>,
    /// RFC 3261 timer T2 in milliseconds (retransmission cap; default 4000).
    #[arg(long, global = true, value_name = "MS", hide_short_help = true)]
    pub t2_ms: Option<u64>,
    /// RFC 3261 timer T4 in milliseconds (network lifetime; default 5000).
    #[arg(long, global = true, value_name = "MS", hide_short_help = true)]
    pub t4_ms: Option<u64>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Register with a registrar and stay registered until Ctrl-C, SIGTERM or --duration.
    Register(RegisterArgs),
    /// Call a SIP URI (directly, or through the account's proxy) and talk until hang-up.
    Call(CallArgs),
    /// Wait for calls (registered with --user, or peer to peer at --listen).
    Listen(ListenArgs),
    /// Call an echo answering side inside this process over loopback, with a tone: the
    /// whole SIP and RTP path, no server or sound card needed.
    Demo(DemoArgs),
    /// List the audio input and output devices.
    Devices,
}

/// Account options shared by the commands that talk to a server.
#[derive(Debug, Clone, Args)]
pub struct AccountArgs {
    /// Our address of record, e.g. sip:alice@pbx.example.com[:PORT].
    #[arg(long, value_name = "URI")]
    pub user: Option<String>,
    /// Password for digest authentication (prefer --password-file or SIPHON_PASSWORD).
    #[arg(
        long,
        value_name = "PW",
        env = "SIPHON_PASSWORD",
        hide_env_values = true
    )]
    pub password: Option<String>,
    /// Read the password from the first line of this file.
    #[arg(long, value_name = "FILE", conflicts_with = "password")]
    pub password_file: Option<PathBuf>,
    /// Authentication user name, when it differs from the user part of --user.
    #[arg(long, value_name = "NAME")]
    pub auth_user: Option<String>,
    /// Registrar URI; default: the domain of --user.
    #[arg(long, value_name = "URI")]
    pub registrar: Option<String>,
    /// Send every request through this proxy (loose routing).
    #[arg(long, value_name = "URI")]
    pub outbound_proxy: Option<String>,
    /// Local SIP address; default: an ephemeral port on the address that routes to the server.
    #[arg(long, value_name = "IP:PORT")]
    pub listen: Option<String>,
    /// Use this account from the config file.
    #[arg(long, value_name = "NAME")]
    pub account: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct RegisterArgs {
    #[command(flatten)]
    pub account: AccountArgs,
    /// Registration expiry to ask for, in seconds (default 3600).
    #[arg(long, value_name = "SECS")]
    pub expires: Option<u32>,
    /// Stay registered this long, then unregister and exit 0.
    #[arg(long, value_name = "SECS")]
    pub duration: Option<f64>,
}

/// Media options shared by `call` and `listen`.
#[derive(Debug, Clone, Args)]
pub struct MediaArgs {
    /// Codecs to offer or accept, in order of preference.
    #[arg(
        long,
        value_name = "LIST",
        default_value = "opus,pcmu,pcma",
        value_delimiter = ','
    )]
    pub codecs: Vec<String>,
    /// UDP port range for RTP, one port per call (RTCP on the next one).
    #[arg(long, value_name = "LO-HI", default_value = "16384-32767")]
    pub rtp_ports: String,
    /// What we send: device[:NAME], file:PATH.wav, tone:HZ or silence.
    #[arg(long, value_name = "SRC", default_value = "device")]
    pub audio_in: String,
    /// Where received audio goes: device[:NAME], file:PATH.wav or null.
    #[arg(long, value_name = "SINK", default_value = "device")]
    pub audio_out: String,
    /// Send the received audio back (an echo test line).
    #[arg(long)]
    pub echo: bool,
    /// DTMF digits (0-9 * # A-D) to send after the answer (RFC 4733).
    #[arg(long, value_name = "DIGITS")]
    pub dtmf: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct CallArgs {
    /// Whom to call: sip:user@host[:port], or a user name at the account's domain.
    #[arg(value_name = "URI")]
    pub target: String,
    #[command(flatten)]
    pub account: AccountArgs,
    #[command(flatten)]
    pub media: MediaArgs,
    /// Hang up this many seconds after the answer.
    #[arg(long, value_name = "SECS")]
    pub duration: Option<f64>,
}

#[derive(Debug, Clone, Args)]
pub struct ListenArgs {
    #[command(flatten)]
    pub account: AccountArgs,
    #[command(flatten)]
    pub media: MediaArgs,
    /// Answer every call, after SECS seconds of ringing (default 0).
    #[arg(long, value_name = "SECS", num_args = 0..=1, default_missing_value = "0", require_equals = true)]
    pub auto_answer: Option<f64>,
    /// Refuse calls (486) while this many are up.
    #[arg(long, value_name = "N")]
    pub max_calls: Option<usize>,
    /// Stop listening after this many seconds.
    #[arg(long, value_name = "SECS")]
    pub duration: Option<f64>,
    /// With --user: the registration expiry to ask for (default 3600).
    #[arg(long, value_name = "SECS")]
    pub expires: Option<u32>,
}

#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// The codec of the call: opus, pcmu or pcma.
    #[arg(long, default_value = "opus")]
    pub codec: String,
    /// What we send: tone:HZ, device[:NAME], file:PATH.wav or silence.
    #[arg(long, value_name = "SRC", default_value = "tone:440")]
    pub audio_in: String,
    /// Where the echo goes: null, device[:NAME] or file:PATH.wav.
    #[arg(long, value_name = "SINK", default_value = "null")]
    pub audio_out: String,
    /// Length of the call once answered, in seconds.
    #[arg(long, value_name = "SECS", default_value = "6")]
    pub duration: f64,
}
