//! The commands: turn options into the sans-IO cores, run them on the driver, and report
//! what happens.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

mod calls;
mod demo;
mod media;

use crate::cli::{AccountArgs, Cli, Command, RegisterArgs};
use crate::config::{AccountConfig, ConfigFile};
use crate::driver::{Driver, bind, resolve};
use crate::output::{Event, Reporter};
use crate::sip::auth::{Credentials, Secret};
use crate::sip::registration::{Registration, RegistrationConfig, RegistrationEvent};
use crate::sip::transaction::TimerConfig;
use crate::sip::ua::{UaConfig, UaEvent, UserAgent, new_call_id, new_tag};
use crate::sip::uas::UasPolicy;
use crate::sip::uri::{SipUri, Uri};

/// How a command ended, mapped to the exit status by `main`.
#[derive(Debug)]
pub enum Failure {
    /// Bad options or configuration: exit 2.
    Usage(String),
    /// Something failed at run time: exit 1.
    Runtime(String),
}

pub type Outcome = Result<(), Failure>;

pub(crate) fn usage(message: impl Into<String>) -> Failure {
    Failure::Usage(message.into())
}

pub(crate) fn runtime(message: impl Into<String>) -> Failure {
    Failure::Runtime(message.into())
}

pub const USER_AGENT: &str = concat!("siphon/", env!("CARGO_PKG_VERSION"));

/// How long to wait for the answer to our unregistration before exiting anyway.
const UNREGISTER_WAIT: Duration = Duration::from_secs(5);

pub async fn run(cli: Cli) -> Outcome {
    let config = ConfigFile::load(cli.config.as_deref()).map_err(|e| usage(e.to_string()))?;
    let timers = timer_config(&cli, &config)?;
    let reporter = Reporter { json: cli.json };
    match cli.command {
        Command::Register(ref args) => register(&cli, &config, timers, reporter, args).await,
        Command::Call(ref args) => calls::call(&cli, &config, timers, reporter, args).await,
        Command::Listen(ref args) => calls::listen(&cli, &config, timers, reporter, args).await,
        Command::Demo(ref args) => demo::demo(&cli, timers, reporter, args).await,
        Command::Devices => demo::devices(reporter),
    }
}

fn timer_config(cli: &Cli, config: &ConfigFile) -> Result<TimerConfig, Failure> {
    let defaults = TimerConfig::default();
    let pick = |flag: Option<u64>, file: Option<u64>, default: Duration| {
        flag.or(file).map_or(default, Duration::from_millis)
    };
    let timers = TimerConfig {
        t1: pick(cli.t1_ms, config.timers.t1_ms, defaults.t1),
        t2: pick(cli.t2_ms, config.timers.t2_ms, defaults.t2),
        t4: pick(cli.t4_ms, config.timers.t4_ms, defaults.t4),
    };
    if timers.t1.is_zero() || timers.t2 < timers.t1 {
        return Err(usage("timers: T1 must be positive and T2 at least T1"));
    }
    Ok(timers)
}

/// An account with flags laid over the config file's values.
#[derive(Debug)]
pub(crate) struct Account {
    pub(crate) aor: SipUri,
    pub(crate) credentials: Option<Credentials>,
    pub(crate) registrar: Uri,
    pub(crate) outbound_proxy: Option<Uri>,
    pub(crate) listen: Option<SocketAddr>,
    pub(crate) expires: Option<u32>,
}

fn parse_sip_uri(text: &str, what: &str) -> Result<SipUri, Failure> {
    match Uri::parse(text) {
        Ok(Uri::Sip(uri)) => Ok(uri),
        Ok(_) => Err(usage(format!(
            "{what} must be a sip: or sips: URI, got '{text}'"
        ))),
        Err(e) => Err(usage(format!("{what}: {e} in '{text}'"))),
    }
}

fn read_password_file(path: &Path) -> Result<String, Failure> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| runtime(format!("cannot read password file {}: {e}", path.display())))?;
    Ok(text.lines().next().unwrap_or_default().to_string())
}

/// `--listen`, else the account's `listen` from the config file.
pub(crate) fn listen_address(
    args: &AccountArgs,
    config: &ConfigFile,
) -> Result<Option<SocketAddr>, Failure> {
    let file = config
        .account(args.account.as_deref())
        .map_err(|e| usage(e.to_string()))?;
    match args.listen.clone().or(file.listen) {
        Some(l) => l
            .parse::<SocketAddr>()
            .map(Some)
            .map_err(|_| usage(format!("--listen wants IP:PORT, got '{l}'"))),
        None => Ok(None),
    }
}

/// The account from flags and config; `None` when no user is given and none is required.
pub(crate) fn resolve_account(
    args: &AccountArgs,
    config: &ConfigFile,
    required: bool,
) -> Result<Option<Account>, Failure> {
    let file: AccountConfig = config
        .account(args.account.as_deref())
        .map_err(|e| usage(e.to_string()))?;
    let Some(user) = args.user.clone().or(file.user) else {
        if required {
            return Err(usage(
                "--user is required (or an account in the config file)",
            ));
        }
        return Ok(None);
    };
    let aor = parse_sip_uri(&user, "--user")?;
    // Flags first, then the environment (clap folds SIPHON_PASSWORD into --password),
    // then the config file.
    let password = match (&args.password, &args.password_file) {
        (Some(p), _) => Some(p.clone()),
        (None, Some(path)) => Some(read_password_file(path)?),
        (None, None) => match (file.password, file.password_file) {
            (Some(p), _) => Some(p),
            (None, Some(path)) => Some(read_password_file(&path)?),
            (None, None) => None,
        },
    };
    let auth_user = args
        .auth_user
        .clone()
        .or(file.auth_user)
        .or_else(|| aor.user_unescaped())
        .unwrap_or_default();
    let credentials = password.map(|p| Credentials::new(auth_user, Secret::new(p)));
    let registrar = match args.registrar.clone().or(file.registrar) {
        Some(r) => Uri::Sip(parse_sip_uri(&r, "--registrar")?),
        // RFC 3261 §10.2: the Request-URI is the domain of the address of record.
        None => Uri::Sip(SipUri::new(None, aor.host.clone(), aor.port)),
    };
    let outbound_proxy = match args.outbound_proxy.clone().or(file.outbound_proxy) {
        Some(p) => Some(Uri::Sip(parse_sip_uri(&p, "--outbound-proxy")?)),
        None => None,
    };
    let listen = listen_address(args, config)?;
    Ok(Some(Account {
        aor,
        credentials,
        registrar,
        outbound_proxy,
        listen,
        expires: file.expires,
    }))
}

/// Where requests go: the outbound proxy if any, else the registrar (RFC 3261 §8.1.2).
pub(crate) async fn next_hop(account: &Account) -> Result<SocketAddr, Failure> {
    let target = account
        .outbound_proxy
        .as_ref()
        .unwrap_or(&account.registrar);
    let sip = target
        .as_sip()
        .ok_or_else(|| usage("the next hop must be a SIP URI"))?;
    let host = sip.host.to_string();
    resolve(&host, sip.port_or_default())
        .await
        .map_err(|e| runtime(format!("cannot resolve {host}: {e}")))
}

async fn register(
    cli: &Cli,
    config: &ConfigFile,
    timers: TimerConfig,
    reporter: Reporter,
    args: &RegisterArgs,
) -> Outcome {
    let account =
        resolve_account(&args.account, config, true)?.ok_or_else(|| usage("--user is required"))?;
    if let Some(d) = args.duration
        && !(d.is_finite() && d >= 0.0)
    {
        return Err(usage("--duration must be a number of seconds"));
    }
    let expires = args.expires.or(account.expires).unwrap_or(3600);
    let destination = next_hop(&account).await?;
    let (socket, local) = bind(account.listen, Some(destination))
        .await
        .map_err(|e| runtime(format!("cannot open the SIP socket: {e}")))?;
    reporter.emit(&Event::Listening {
        address: local.to_string(),
    });
    let mut contact = SipUri::new(
        account.aor.user.as_deref(),
        local.ip().into(),
        Some(local.port()),
    );
    contact.secure = false;
    let user = account.aor.user_unescaped();
    let registration = Registration::new(
        RegistrationConfig {
            aor: account.aor.clone(),
            registrar: account.registrar.clone(),
            credentials: account.credentials.clone(),
            expires,
            contact,
            outbound_proxy: account.outbound_proxy.clone(),
            user_agent: USER_AGENT.to_string(),
        },
        new_call_id(local),
        new_tag(),
    );
    let mut ua = UserAgent::new(UaConfig {
        local_addr: local,
        user_agent: USER_AGENT.to_string(),
        timers,
        policy: UasPolicy {
            local_users: user.into_iter().collect(),
        },
        incoming: None,
    });
    ua.set_registration(registration, destination);
    ua.register(Instant::now());
    let mut driver = Driver::new(socket, ua, cli.sip_trace);

    let stop = stop_signal(args.duration);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            event = driver.next_event() => {
                let event = event.map_err(|e| runtime(format!("socket error: {e}")))?;
                if let Some(failure) = report_registration(reporter, event) {
                    return Err(failure);
                }
            }
            why = &mut stop => {
                tracing::info!("stopping: {why}");
                break;
            }
        }
    }
    unregister_and_wait(&mut driver, reporter).await
}

/// RFC 3261 §10.2.2: removes our binding before leaving, waiting a bounded time.
pub(crate) async fn unregister_and_wait(driver: &mut Driver, reporter: Reporter) -> Outcome {
    if !driver.ua.unregister(Instant::now()) {
        return Ok(());
    }
    let wait = tokio::time::sleep(UNREGISTER_WAIT);
    tokio::pin!(wait);
    loop {
        tokio::select! {
            event = driver.next_event() => {
                let event = event.map_err(|e| runtime(format!("socket error: {e}")))?;
                let done = matches!(event, UaEvent::Registration(RegistrationEvent::Unregistered));
                let _ = report_registration(reporter, event);
                if done {
                    return Ok(());
                }
            }
            _ = &mut wait => {
                return Err(runtime("the registrar did not answer the unregistration"));
            }
        }
    }
}

/// Prints a registration event; a fatal registration failure ends the command.
pub(crate) fn report_registration(reporter: Reporter, event: UaEvent) -> Option<Failure> {
    match event {
        UaEvent::Registration(RegistrationEvent::Registered { expires, contact }) => {
            reporter.emit(&Event::Registered { expires, contact });
        }
        UaEvent::Registration(RegistrationEvent::Failed {
            status,
            reason,
            fatal,
            retry_in,
        }) => {
            reporter.emit(&Event::RegistrationFailed {
                status,
                reason: reason.clone(),
                retry_in_s: retry_in.map(|d| d.as_secs()),
            });
            if fatal {
                return Some(runtime(format!("registration failed: {status} {reason}")));
            }
        }
        UaEvent::Registration(RegistrationEvent::Unregistered) => {
            reporter.emit(&Event::Unregistered);
        }
        UaEvent::Discarded { .. } | UaEvent::Call { .. } => {}
    }
    None
}

/// Completes on Ctrl-C, SIGTERM or when `duration` seconds have passed.
pub(crate) async fn stop_signal(duration: Option<f64>) -> &'static str {
    let timer = async {
        match duration {
            Some(d) => tokio::time::sleep(Duration::from_secs_f64(d)).await,
            None => std::future::pending().await,
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "interrupted",
        _ = terminate => "terminated",
        _ = timer => "duration reached",
    }
}
