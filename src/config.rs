//! The TOML configuration file: named accounts and timer settings. Command-line flags
//! override what the file says.
//!
//! ```toml
//! default_account = "office"
//!
//! [accounts.office]
//! user = "sip:alice@pbx.example.com"
//! password_file = "/home/alice/.config/siphon/office.pw"
//! registrar = "sip:pbx.example.com"
//! expires = 600
//!
//! [timers]
//! t1_ms = 500
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    pub default_account: Option<String>,
    #[serde(default)]
    pub accounts: BTreeMap<String, AccountConfig>,
    #[serde(default)]
    pub timers: TimerSettings,
}

/// One account; every field can also be given on the command line.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountConfig {
    pub user: Option<String>,
    pub password: Option<String>,
    pub password_file: Option<PathBuf>,
    pub auth_user: Option<String>,
    pub registrar: Option<String>,
    pub outbound_proxy: Option<String>,
    pub listen: Option<String>,
    pub expires: Option<u32>,
}

/// RFC 3261 §17.1.1.1 timer base values, in milliseconds.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimerSettings {
    pub t1_ms: Option<u64>,
    pub t2_ms: Option<u64>,
    pub t4_ms: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("no account named '{0}' in the config file")]
    NoSuchAccount(String),
}

/// `$XDG_CONFIG_HOME/siphon/config.toml`, else `~/.config/siphon/config.toml`.
pub fn default_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("siphon").join("config.toml"))
}

impl ConfigFile {
    /// Reads `explicit` (which must exist), or the default file if there is one.
    pub fn load(explicit: Option<&Path>) -> Result<ConfigFile, ConfigError> {
        let path = match explicit {
            Some(p) => p.to_path_buf(),
            None => match default_path() {
                Some(p) if p.exists() => p,
                _ => return Ok(ConfigFile::default()),
            },
        };
        let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
            path: path.clone(),
            source,
        })?;
        ConfigFile::parse(&text).map_err(|message| ConfigError::Syntax { path, message })
    }

    pub fn parse(text: &str) -> Result<ConfigFile, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    /// The account chosen by `name`, else `default_account`, else the only one there is.
    pub fn account(&self, name: Option<&str>) -> Result<AccountConfig, ConfigError> {
        let name = name.or(self.default_account.as_deref());
        match name {
            Some(n) => self
                .accounts
                .get(n)
                .cloned()
                .ok_or_else(|| ConfigError::NoSuchAccount(n.to_string())),
            None if self.accounts.len() == 1 => {
                Ok(self.accounts.values().next().cloned().unwrap_or_default())
            }
            None => Ok(AccountConfig::default()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_accounts_and_timers() {
        let c = ConfigFile::parse(
            r#"
default_account = "b"
[accounts.a]
user = "sip:a@x"
[accounts.b]
user = "sip:b@y"
password = "pw"
expires = 120
[timers]
t1_ms = 100
"#,
        )
        .unwrap();
        let b = c.account(None).unwrap();
        assert_eq!(b.user.as_deref(), Some("sip:b@y"));
        assert_eq!(b.expires, Some(120));
        assert_eq!(
            c.account(Some("a")).unwrap().user.as_deref(),
            Some("sip:a@x")
        );
        assert!(c.account(Some("zz")).is_err());
        assert_eq!(c.timers.t1_ms, Some(100));
    }

    #[test]
    fn single_account_is_the_default_and_typos_are_errors() {
        let c = ConfigFile::parse("[accounts.only]\nuser = \"sip:o@x\"\n").unwrap();
        assert_eq!(c.account(None).unwrap().user.as_deref(), Some("sip:o@x"));
        assert!(ConfigFile::parse("[accounts.a]\nusr = \"x\"\n").is_err());
    }
}
