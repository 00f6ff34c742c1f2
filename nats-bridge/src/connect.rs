//! Connecting to NATS the way NATS is secured: a credentials file (JWT and NKey seed), an NKey
//! seed, a user and password, or a token, and TLS with a CA and a client certificate. Both
//! the origin (`mtf-streamer --nats`) and `mtf-mirror` take the same flags ([`NatsAuth`]),
//! and the streamer's config file the same keys.
//!
//! - **Secrets never go on a command line** (any account can read another's
//!   `/proc/PID/cmdline`): a password or token comes from an environment variable or a file.
//!   `nats://USER:PASS@HOST` and `nats://TOKEN@HOST` are understood too (async-nats ignores
//!   them), and never printed: [`NatsSettings::shown`] is the address without them.
//! - **A refused login is said at once**, named, and tried again with async-nats's backoff:
//!   the client reports every failed attempt as an event, and the first of each kind is
//!   printed (`authorization violation`, `TLS error`, ...), then counted.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_nats::{ConnectOptions, Event, ServerAddr};

/// The environment variable holding the password of `--nats-user`.
pub const PASSWORD_ENV: &str = "MTF_NATS_PASSWORD";
/// The environment variable holding a token.
pub const TOKEN_ENV: &str = "MTF_NATS_TOKEN";

/// How to authenticate to NATS, and the TLS to use: flags of `mtf-streamer` and `mtf-mirror`,
/// keys of the streamer's config file (`nats_creds`, `nats_user`, ...).
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
pub struct NatsAuth {
    /// A NATS credentials file (the user's JWT and NKey seed, as `nsc` writes it).
    #[arg(long, value_name = "FILE")]
    pub nats_creds: Option<PathBuf>,
    /// A file holding an NKey seed (`SU…`).
    #[arg(long, value_name = "FILE")]
    pub nats_nkey: Option<PathBuf>,
    /// A NATS user; the password comes from MTF_NATS_PASSWORD or --nats-password-file.
    #[arg(long, value_name = "USER")]
    pub nats_user: Option<String>,
    /// A file holding the password of --nats-user.
    #[arg(long, value_name = "FILE", requires = "nats_user")]
    pub nats_password_file: Option<PathBuf>,
    /// A file holding a token (or set MTF_NATS_TOKEN).
    #[arg(long, value_name = "FILE")]
    pub nats_token_file: Option<PathBuf>,
    /// The CA certificate (PEM) that signed the server's; TLS is then required.
    #[arg(long, value_name = "FILE")]
    pub nats_ca: Option<PathBuf>,
    /// A client certificate (PEM) for TLS, with --nats-key.
    #[arg(long, value_name = "FILE", requires = "nats_key")]
    pub nats_cert: Option<PathBuf>,
    /// The key (PEM) of --nats-cert.
    #[arg(long, value_name = "FILE", requires = "nats_cert")]
    pub nats_key: Option<PathBuf>,
}

/// Why the NATS settings cannot be used. Said at start, before anything connects.
#[derive(Debug)]
pub enum NatsConfigError {
    /// The address is not one NATS takes.
    Address {
        /// The address, without any credentials in it.
        shown: String,
    },
    /// More than one way to log in was given.
    ConflictingAuth {
        /// The ways given.
        found: Vec<&'static str>,
    },
    /// `--nats-user` without a password from the environment, a file or the URL.
    MissingPassword {
        /// The user.
        user: String,
    },
    /// A secret or certificate file could not be read.
    Read {
        /// What the file holds.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A secret that is empty.
    Empty {
        /// Which.
        what: &'static str,
    },
}

impl fmt::Display for NatsConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NatsConfigError::Address { shown } => write!(
                f,
                "{shown:?} is not a NATS address (nats://HOST:PORT or tls://HOST:PORT)"
            ),
            NatsConfigError::ConflictingAuth { found } => write!(
                f,
                "one way to log in to NATS, not {}: choose one",
                found.join(" and ")
            ),
            NatsConfigError::MissingPassword { user } => write!(
                f,
                "NATS user {user:?} has no password: set {PASSWORD_ENV} or --nats-password-file"
            ),
            NatsConfigError::Read { what, path, .. } => {
                write!(f, "cannot read the NATS {what} {}", path.display())
            }
            NatsConfigError::Empty { what } => write!(f, "the NATS {what} is empty"),
        }
    }
}

impl std::error::Error for NatsConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            NatsConfigError::Read { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// A secret, never printed.
#[derive(Clone, PartialEq, Eq)]
struct Secret(String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Login {
    Anonymous,
    Credentials(PathBuf),
    Nkey(Secret),
    User { user: String, password: Secret },
    Token(Secret),
}

/// Where and how to connect: checked, secrets read, ready for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatsSettings {
    /// The address without credentials.
    url: String,
    login: Login,
    ca: Option<PathBuf>,
    client_cert: Option<(PathBuf, PathBuf)>,
    tls: bool,
}

/// Reads a secret file, trimmed of its line end.
fn read_secret(what: &'static str, path: &Path) -> Result<Secret, NatsConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| NatsConfigError::Read {
        what,
        path: path.to_owned(),
        source,
    })?;
    let text = text.trim_end_matches(['\n', '\r']).to_owned();
    if text.is_empty() {
        return Err(NatsConfigError::Empty { what });
    }
    Ok(Secret(text))
}

fn env_secret(name: &str) -> Option<Secret> {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .map(Secret)
}

impl NatsSettings {
    /// Checks `url` and `auth`, and reads the secrets they name (files, `MTF_NATS_PASSWORD`,
    /// `MTF_NATS_TOKEN`, or the URL's user information).
    pub fn new(url: &str, auth: &NatsAuth) -> Result<NatsSettings, NatsConfigError> {
        let addr: ServerAddr = url
            .parse()
            .map_err(|_| NatsConfigError::Address { shown: redact(url) })?;
        let (url_user, url_password) = (
            addr.username().map(str::to_owned),
            addr.password().map(str::to_owned),
        );
        let shown = redact(url);
        let tls = shown.starts_with("tls://") || auth.nats_ca.is_some();
        let mut ways: Vec<&'static str> = Vec::new();
        let mut login = Login::Anonymous;
        if let Some(p) = &auth.nats_creds {
            ways.push("--nats-creds");
            login = Login::Credentials(p.clone());
        }
        if let Some(p) = &auth.nats_nkey {
            ways.push("--nats-nkey");
            login = Login::Nkey(read_secret("NKey seed", p)?);
        }
        let user = auth
            .nats_user
            .clone()
            .or_else(|| url_password.is_some().then(|| url_user.clone()).flatten());
        if let Some(user) = user {
            ways.push("a user");
            let password = match &auth.nats_password_file {
                Some(p) => read_secret("password", p)?,
                None => match env_secret(PASSWORD_ENV).or_else(|| url_password.clone().map(Secret))
                {
                    Some(s) => s,
                    None => return Err(NatsConfigError::MissingPassword { user }),
                },
            };
            login = Login::User { user, password };
        }
        let token = match &auth.nats_token_file {
            Some(p) => Some(read_secret("token", p)?),
            None => env_secret(TOKEN_ENV).or_else(|| {
                // `nats://TOKEN@HOST`: a user name without a password is a token.
                url_user.filter(|_| url_password.is_none()).map(Secret)
            }),
        };
        if let Some(t) = token {
            ways.push("a token");
            login = Login::Token(t);
        }
        if ways.len() > 1 {
            return Err(NatsConfigError::ConflictingAuth { found: ways });
        }
        Ok(NatsSettings {
            url: shown,
            login,
            ca: auth.nats_ca.clone(),
            client_cert: auth.nats_cert.clone().zip(auth.nats_key.clone()),
            tls,
        })
    }

    /// The address and how this logs in, with no secret: for banners and messages.
    pub fn shown(&self) -> String {
        let how = match &self.login {
            Login::Anonymous => String::new(),
            Login::Credentials(p) => format!(" (credentials {})", p.display()),
            Login::Nkey(_) => " (NKey)".into(),
            Login::User { user, .. } => format!(" (user {user})"),
            Login::Token(_) => " (token)".into(),
        };
        format!("{}{how}", self.url)
    }

    /// The address to connect to, without credentials.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The client's options: the login, TLS, and an event callback that says each kind of
    /// failure once (`program: NATS …`), then counts it.
    pub async fn options(&self, program: &'static str) -> Result<ConnectOptions, NatsConfigError> {
        let mut o = match &self.login {
            Login::Anonymous => ConnectOptions::new(),
            Login::Credentials(p) => {
                ConnectOptions::with_credentials_file(p)
                    .await
                    .map_err(|source| NatsConfigError::Read {
                        what: "credentials file",
                        path: p.clone(),
                        source,
                    })?
            }
            Login::Nkey(s) => ConnectOptions::with_nkey(s.0.clone()),
            Login::User { user, password } => {
                ConnectOptions::with_user_and_password(user.clone(), password.0.clone())
            }
            Login::Token(t) => ConnectOptions::with_token(t.0.clone()),
        };
        if let Some(ca) = &self.ca {
            o = o.add_root_certificates(ca.clone());
        }
        if let Some((cert, key)) = &self.client_cert {
            o = o.add_client_certificate(cert.clone(), key.clone());
        }
        let said: Arc<Mutex<Vec<String>>> = Arc::default();
        let shown = self.shown();
        Ok(o.require_tls(self.tls)
            .name(program)
            .retry_on_initial_connect()
            .event_callback(move |event| {
                let (said, shown) = (Arc::clone(&said), shown.clone());
                async move { report(program, &shown, &event, &said) }
            }))
    }
}

/// Says a failure event the first time its kind is seen; connections and disconnections
/// each time, since they are rare and an operator wants them.
fn report(program: &str, shown: &str, event: &Event, said: &Mutex<Vec<String>>) {
    let kind = match event {
        Event::Connected => {
            eprintln!("{program}: NATS {shown}: connected");
            return;
        }
        Event::Disconnected => {
            eprintln!("{program}: NATS {shown}: disconnected; reconnecting with backoff");
            return;
        }
        other => other.to_string(),
    };
    let mut said = said.lock().unwrap_or_else(|p| p.into_inner());
    if said.len() < 64 && !said.contains(&kind) {
        eprintln!("{program}: NATS {shown}: {kind}; retrying with backoff (said once)");
        said.push(kind);
    }
}

/// `url` without any user information, for printing and connecting.
pub fn redact(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("nats", url));
    let host = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    format!("{scheme}://{host}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_in_urls_are_used_and_never_shown() {
        let s =
            NatsSettings::new("nats://origin:s3cret@127.0.0.1:4222", &NatsAuth::default()).unwrap();
        assert_eq!(s.shown(), "nats://127.0.0.1:4222 (user origin)");
        assert!(!format!("{s:?}").contains("s3cret"));
        let t = NatsSettings::new("nats://tok3n@127.0.0.1:4222", &NatsAuth::default()).unwrap();
        assert_eq!(t.shown(), "nats://127.0.0.1:4222 (token)");
        assert_eq!(redact("tls://a:b@h:1"), "tls://h:1");
        assert_eq!(redact("h:1"), "nats://h:1");
    }

    #[test]
    fn logins_are_checked_before_anything_connects() {
        let user = NatsAuth {
            nats_user: Some("u".into()),
            ..NatsAuth::default()
        };
        if std::env::var_os(PASSWORD_ENV).is_none() {
            assert!(matches!(
                NatsSettings::new("nats://h:1", &user),
                Err(NatsConfigError::MissingPassword { .. })
            ));
        }
        let both = NatsAuth {
            nats_creds: Some("/x.creds".into()),
            nats_token_file: Some("/dev/null".into()),
            ..NatsAuth::default()
        };
        assert!(matches!(
            NatsSettings::new("nats://h:1", &both),
            Err(NatsConfigError::Empty { what: "token" })
        ));
        let missing = NatsAuth {
            nats_nkey: Some("/no/such/seed".into()),
            ..NatsAuth::default()
        };
        let e = NatsSettings::new("nats://h:1", &missing).unwrap_err();
        assert!(e.to_string().contains("/no/such/seed"), "{e}");
        let ca = NatsAuth {
            nats_ca: Some("/ca.pem".into()),
            ..NatsAuth::default()
        };
        assert!(NatsSettings::new("nats://h:1", &ca).unwrap().tls);
    }
}
