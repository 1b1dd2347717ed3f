//! API tokens: scoped, stored as SHA-256 hashes, compared in constant time.
//!
//! Tokens are 256 random bits, so a fast hash is enough to make a stolen
//! `tokens.json` useless; no token is ever logged or stored in clear, except
//! the generated admin token, written once to `admin.token` (mode 0600) for
//! the operator to pick up.
//!
//! Every change (create, revoke) reads `tokens.json` as it is on disk, so an
//! operator's hand edit is kept, writes it back with [`write_private`], and
//! then replaces the tokens in memory with what it wrote. Changes do blocking
//! file I/O and fsyncs: call them from `spawn_blocking`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError, RwLock};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime, UtcOffset};

/// The shortest `TRIPLINE_ADMIN_TOKEN` accepted: it is a password that can be
/// guessed online, unlike the 256-bit generated tokens.
pub const MIN_ENV_ADMIN_CHARS: usize = 24;
/// The largest `expires_in_days`.
pub const MAX_EXPIRES_IN_DAYS: u32 = 36_500;
/// The most datasets one token may be bound to.
pub const MAX_DATASETS: usize = 256;
/// The principal name of `TRIPLINE_ADMIN_TOKEN`.
pub const ENV_ADMIN_NAME: &str = "env:TRIPLINE_ADMIN_TOKEN";
/// The token file of a data directory.
const TOKENS_FILE: &str = "tokens.json";

/// What a token may do. `admin` may do everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Send events.
    Ingest,
    /// Search.
    Search,
    /// Change alerts (status, comment).
    Alerts,
    /// Manage tokens, rules, read metrics; implies every other scope.
    Admin,
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Scope::Ingest => "ingest",
            Scope::Search => "search",
            Scope::Alerts => "alerts",
            Scope::Admin => "admin",
        })
    }
}

impl AuthError {
    /// The kind of error, for the API.
    pub fn error_code(&self) -> schemas::ErrorCode {
        match self {
            AuthError::Missing | AuthError::Invalid | AuthError::Expired => schemas::ErrorCode::Unauthenticated,
            AuthError::Forbidden { .. } | AuthError::Dataset { .. } => schemas::ErrorCode::Forbidden,
        }
    }
}

impl TokenError {
    /// The kind of error, for the API.
    pub fn error_code(&self) -> schemas::ErrorCode {
        match self {
            TokenError::Invalid(_) => schemas::ErrorCode::BadRequest,
            TokenError::Exists(_) => schemas::ErrorCode::Conflict,
            TokenError::NotFound(_) => schemas::ErrorCode::NotFound,
            TokenError::Io { .. } | TokenError::Corrupt { .. } | TokenError::Randomness(_) => {
                schemas::ErrorCode::Internal
            }
        }
    }
}

/// Why a request is not authorized.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum AuthError {
    /// No `Authorization: Bearer` header.
    #[error("missing bearer token")]
    Missing,
    /// The token is not known (or was revoked).
    #[error("invalid token")]
    Invalid,
    /// The token is past its expiry time.
    #[error("token expired")]
    Expired,
    /// The token lacks the scope.
    #[error("token {name:?} lacks scope {need}")]
    Forbidden { name: String, need: Scope },
    /// The token is bound to datasets and this is not one of them.
    #[error("token {name:?} may not ingest into dataset {dataset:?}")]
    Dataset { name: String, dataset: String },
}

/// Why a token could not be created, revoked or stored.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The request is not valid; the message says why.
    #[error("{0}")]
    Invalid(String),
    /// A token has this name already.
    #[error("a token named {0:?} exists")]
    Exists(String),
    /// No token has this name.
    #[error("no token named {0:?}")]
    NotFound(String),
    /// Reading or writing the token file failed.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The token file is not what Tripline writes (a bad hand edit?); it is
    /// left as it is.
    #[error("{path}: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    /// The system has no randomness to offer.
    #[error("no system randomness: {0}")]
    Randomness(String),
}

impl TokenError {
    fn io(path: &Path, source: std::io::Error) -> TokenError {
        TokenError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Who a request comes from, once its token is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The token's name.
    pub name: String,
    /// The datasets (`?source=`) the token may ingest into; `None`: any.
    pub datasets: Option<Vec<String>>,
}

impl Principal {
    /// Refuses ingest into `dataset` unless the token may write it.
    pub fn check_dataset(&self, dataset: &str) -> Result<(), AuthError> {
        match &self.datasets {
            Some(allowed) if !allowed.iter().any(|d| d == dataset) => Err(AuthError::Dataset {
                name: self.name.clone(),
                dataset: dataset.to_string(),
            }),
            _ => Ok(()),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredToken {
    name: String,
    sha256: String,
    scopes: Vec<Scope>,
    created: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expires: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    datasets: Option<Vec<String>>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenFile {
    tokens: Vec<StoredToken>,
}

/// What may be shown about a token: never its hash or secret.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TokenInfo {
    /// Unique name.
    pub name: String,
    /// What it may do.
    pub scopes: Vec<Scope>,
    /// The datasets it may ingest into; `None`: any.
    pub datasets: Option<Vec<String>>,
    /// When it was created (RFC 3339, UTC).
    pub created: String,
    /// When it stops working (RFC 3339, UTC); `None`: never.
    pub expires: Option<String>,
}

/// A new token: what it is, and its secret, shown once. No `Debug`, so the
/// secret cannot reach a log by accident.
#[derive(Serialize)]
pub struct Created {
    /// What the token is.
    #[serde(flatten)]
    pub info: TokenInfo,
    /// The secret.
    pub token: String,
}

/// A request to create a token, as `POST /api/v1/tokens` takes it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    /// 1 to 64 of `A-Z a-z 0-9 . _ -`, unique.
    pub name: String,
    /// At least one; repeats are dropped.
    pub scopes: Vec<Scope>,
    /// Expiry time, RFC 3339.
    #[serde(default)]
    pub expires: Option<String>,
    /// Expiry, in days from now (instead of `expires`).
    #[serde(default)]
    pub expires_in_days: Option<u32>,
    /// The only `?source=` values the token may ingest with.
    #[serde(default)]
    pub datasets: Option<Vec<String>>,
}

/// A checked [`TokenRequest`].
struct Spec {
    name: String,
    scopes: Vec<Scope>,
    expires: Option<String>,
    datasets: Option<Vec<String>>,
}

/// True for a usable token name: 1 to 64 of `A-Z a-z 0-9 . _ -` (nothing
/// that could forge a log line).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn format_utc(t: OffsetDateTime) -> Option<String> {
    t.checked_to_offset(UtcOffset::UTC)?.format(&Rfc3339).ok()
}

impl TokenRequest {
    fn check(self, now: OffsetDateTime) -> Result<Spec, TokenError> {
        let invalid = |m: &str| TokenError::Invalid(m.to_string());
        if !valid_name(&self.name) {
            return Err(invalid("name must be 1 to 64 of A-Z a-z 0-9 . _ -"));
        }
        let mut scopes = Vec::new();
        for s in self.scopes {
            if !scopes.contains(&s) {
                scopes.push(s);
            }
        }
        if scopes.is_empty() {
            return Err(invalid("at least one scope is required"));
        }
        let expires = match (self.expires, self.expires_in_days) {
            (Some(_), Some(_)) => return Err(invalid("give expires or expires_in_days, not both")),
            (Some(s), None) => Some(
                OffsetDateTime::parse(&s, &Rfc3339)
                    .map_err(|_| invalid("expires must be an RFC 3339 time, such as 2027-01-31T00:00:00Z"))?,
            ),
            (None, Some(days)) => {
                if days == 0 || days > MAX_EXPIRES_IN_DAYS {
                    return Err(TokenError::Invalid(format!(
                        "expires_in_days must be 1 to {MAX_EXPIRES_IN_DAYS}"
                    )));
                }
                Some(
                    now.checked_add(Duration::days(i64::from(days)))
                        .ok_or_else(|| invalid("expires_in_days is out of range"))?,
                )
            }
            (None, None) => None,
        };
        let expires = match expires {
            Some(t) if t <= now => return Err(invalid("expires is in the past")),
            Some(t) => Some(format_utc(t).ok_or_else(|| invalid("expires is out of range"))?),
            None => None,
        };
        let datasets = match self.datasets {
            None => None,
            Some(list) => {
                if list.is_empty() {
                    return Err(invalid(
                        "datasets must name at least one dataset; leave it out to allow any",
                    ));
                }
                if list.len() > MAX_DATASETS {
                    return Err(TokenError::Invalid(format!(
                        "at most {MAX_DATASETS} datasets per token"
                    )));
                }
                if !scopes.contains(&Scope::Ingest) {
                    return Err(invalid("datasets limits ingest: the token needs scope ingest"));
                }
                if scopes.contains(&Scope::Admin) {
                    return Err(invalid(
                        "an admin token may do everything: it cannot be bound to datasets",
                    ));
                }
                let mut out: Vec<String> = Vec::new();
                for d in list {
                    if !ingest::normalize::valid_source(&d) {
                        return Err(TokenError::Invalid(format!(
                            "dataset {d:?} is not a source name: use 1 to 64 of A-Z a-z 0-9 . _ -"
                        )));
                    }
                    if !out.contains(&d) {
                        out.push(d);
                    }
                }
                Some(out)
            }
        };
        Ok(Spec {
            name: self.name,
            scopes,
            expires,
            datasets,
        })
    }
}

struct Entry {
    hash: [u8; 32],
    expires: Option<OffsetDateTime>,
    info: TokenInfo,
}

/// The token store of one data directory.
pub struct TokenStore {
    path: PathBuf,
    entries: RwLock<Vec<Entry>>,
    /// Held across each read-modify-write of the file.
    writer: Mutex<()>,
    env_admin: Option<[u8; 32]>,
}

impl std::fmt::Debug for TokenStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn sha256(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// A new random token: `tl_` and 64 hex digits.
pub fn generate() -> Result<String, TokenError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| TokenError::Randomness(e.to_string()))?;
    Ok(format!("tl_{}", hex(&bytes)))
}

/// The admin token file of a data directory.
pub fn admin_token_path(data_dir: &Path) -> PathBuf {
    data_dir.join("admin.token")
}

/// The temp file [`write_private`] writes before renaming it over `path`.
fn temp_path(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp"))
}

/// Opens `dir` and fsyncs it, so that a rename in it survives a power loss.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    std::fs::File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Replaces `path` with `contents`, readable by the owner only, atomically
/// and durably: a new temp file beside it (mode 0600), fsync, rename over
/// `path`, fsync of the directory. A crash leaves the old file or the new
/// one, never a mix, and never a file others can read.
pub fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let tmp = temp_path(path);
    // A temp file left by a crash would keep its mode if opened again, and
    // `create_new` does not follow a symlink planted in its place.
    match std::fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let written = opts.open(&tmp).and_then(|mut f| {
        f.write_all(contents)?;
        f.sync_all()
    });
    if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, path)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    sync_dir(dir)
}

fn read_file(path: &Path) -> Result<TokenFile, TokenError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| TokenError::Corrupt {
            path: path.to_path_buf(),
            reason: e.to_string(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(TokenFile::default()),
        Err(e) => Err(TokenError::io(path, e)),
    }
}

/// The tokens of `file` as `authorize` checks them.
fn load(file: &TokenFile, path: &Path) -> Result<Vec<Entry>, TokenError> {
    file.tokens
        .iter()
        .map(|t| {
            let corrupt = |reason: &str| TokenError::Corrupt {
                path: path.to_path_buf(),
                reason: format!("token {:?}: {reason}", t.name),
            };
            let hash = unhex(&t.sha256).ok_or_else(|| corrupt("bad hash"))?;
            let expires = match &t.expires {
                Some(s) => Some(OffsetDateTime::parse(s, &Rfc3339).map_err(|_| corrupt("expires is not RFC 3339"))?),
                None => None,
            };
            Ok(Entry {
                hash,
                expires,
                info: TokenInfo {
                    name: t.name.clone(),
                    scopes: t.scopes.clone(),
                    datasets: t.datasets.clone(),
                    created: t.created.clone(),
                    expires: t.expires.clone(),
                },
            })
        })
        .collect()
}

impl TokenStore {
    /// Opens the store in `data_dir`. Without `env_admin` and without any
    /// live admin token yet, generates one and writes it to `admin.token`;
    /// returns that file's path when it did. Refuses an `env_admin` shorter
    /// than [`MIN_ENV_ADMIN_CHARS`].
    pub fn open(data_dir: &Path, env_admin: Option<&str>) -> anyhow::Result<(TokenStore, Option<PathBuf>)> {
        let env_admin = match env_admin.filter(|t| !t.is_empty()) {
            Some(t) if t.chars().count() < MIN_ENV_ADMIN_CHARS => anyhow::bail!(
                "TRIPLINE_ADMIN_TOKEN is {} characters long; it must be at least {MIN_ENV_ADMIN_CHARS} \
                 (generate one with: openssl rand -hex 32)",
                t.chars().count()
            ),
            t => t.map(sha256),
        };
        let path = data_dir.join(TOKENS_FILE);
        let entries = load(&read_file(&path)?, &path)?;
        let now = OffsetDateTime::now_utc();
        let has_admin = entries
            .iter()
            .any(|e| e.info.scopes.contains(&Scope::Admin) && e.expires.is_none_or(|t| now < t));
        let name = (1..)
            .map(|i| {
                if i == 1 {
                    "admin".to_string()
                } else {
                    format!("admin-{i}")
                }
            })
            .find(|n| !entries.iter().any(|e| e.info.name == *n))
            .unwrap_or_default();
        let store = TokenStore {
            path,
            entries: RwLock::new(entries),
            writer: Mutex::new(()),
            env_admin,
        };
        let mut written = None;
        if store.env_admin.is_none() && !has_admin {
            let token = generate()?;
            let token_path = admin_token_path(data_dir);
            // The secret first, then the entry that refers to it: a crash in
            // between leaves no admin entry, so the next start makes another.
            write_private(&token_path, format!("{token}\n").as_bytes())
                .with_context(|| format!("writing {}", token_path.display()))?;
            let spec = Spec {
                name,
                scopes: vec![Scope::Admin],
                expires: None,
                datasets: None,
            };
            store.insert(spec, &sha256(&token), now)?;
            written = Some(token_path);
        }
        Ok((store, written))
    }

    /// Checks a bearer token for `need`; returns who it is.
    pub fn authorize(&self, bearer: Option<&str>, need: Scope) -> Result<Principal, AuthError> {
        self.authorize_at(bearer, need, OffsetDateTime::now_utc())
    }

    /// [`TokenStore::authorize`] at the time `now`.
    pub fn authorize_at(&self, bearer: Option<&str>, need: Scope, now: OffsetDateTime) -> Result<Principal, AuthError> {
        let token = bearer.ok_or(AuthError::Missing)?;
        let hash = sha256(token);
        if let Some(admin) = &self.env_admin {
            if bool::from(admin.ct_eq(&hash)) {
                return Ok(Principal {
                    name: ENV_ADMIN_NAME.to_string(),
                    datasets: None,
                });
            }
        }
        let guard = self.entries.read().unwrap_or_else(PoisonError::into_inner);
        // Compare against every token, without stopping early.
        let mut found: Option<&Entry> = None;
        for e in guard.iter() {
            if bool::from(e.hash.ct_eq(&hash)) {
                found = Some(e);
            }
        }
        let e = found.ok_or(AuthError::Invalid)?;
        if e.expires.is_some_and(|t| now >= t) {
            return Err(AuthError::Expired);
        }
        if e.info.scopes.contains(&need) || e.info.scopes.contains(&Scope::Admin) {
            Ok(Principal {
                name: e.info.name.clone(),
                datasets: e.info.datasets.clone(),
            })
        } else {
            Err(AuthError::Forbidden {
                name: e.info.name.clone(),
                need,
            })
        }
    }

    /// Every token, as it may be shown.
    pub fn list(&self) -> Vec<TokenInfo> {
        let guard = self.entries.read().unwrap_or_else(PoisonError::into_inner);
        guard.iter().map(|e| e.info.clone()).collect()
    }

    /// Creates a token; returns it with its secret (shown once, stored
    /// hashed). Blocking: fsyncs.
    pub fn create(&self, request: TokenRequest, now: OffsetDateTime) -> Result<Created, TokenError> {
        let spec = request.check(now)?;
        let token = generate()?;
        let info = self.insert(spec, &sha256(&token), now)?;
        Ok(Created { info, token })
    }

    fn insert(&self, spec: Spec, hash: &[u8; 32], now: OffsetDateTime) -> Result<TokenInfo, TokenError> {
        let created = format_utc(now).ok_or_else(|| TokenError::Invalid("the clock is out of range".into()))?;
        let _writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let mut file = read_file(&self.path)?;
        if file.tokens.iter().any(|t| t.name == spec.name) {
            return Err(TokenError::Exists(spec.name));
        }
        let stored = StoredToken {
            name: spec.name,
            sha256: hex(hash),
            scopes: spec.scopes,
            created,
            expires: spec.expires,
            datasets: spec.datasets,
        };
        let info = TokenInfo {
            name: stored.name.clone(),
            scopes: stored.scopes.clone(),
            datasets: stored.datasets.clone(),
            created: stored.created.clone(),
            expires: stored.expires.clone(),
        };
        file.tokens.push(stored);
        self.store(&file)?;
        Ok(info)
    }

    /// Revokes the token (every token, after a hand edit) named `name`, at
    /// once. If it is the one in `admin.token`, that file is removed.
    /// Blocking: fsyncs.
    pub fn revoke(&self, name: &str) -> Result<(), TokenError> {
        let _writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let mut file = read_file(&self.path)?;
        let mut removed = Vec::new();
        file.tokens.retain(|t| {
            if t.name == name {
                removed.push(t.sha256.to_ascii_lowercase());
                false
            } else {
                true
            }
        });
        let in_memory = self
            .entries
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .any(|e| e.info.name == name);
        if removed.is_empty() {
            if !in_memory {
                return Err(TokenError::NotFound(name.to_string()));
            }
            // Deleted by hand already: stop honouring it too.
            self.reload(&file)?;
            return Ok(());
        }
        self.store(&file)?;
        if let Some(dir) = self.path.parent() {
            forget_admin_file(dir, &removed);
        }
        Ok(())
    }

    /// Writes `file` and makes it the tokens in memory.
    fn store(&self, file: &TokenFile) -> Result<(), TokenError> {
        let entries = load(file, &self.path)?;
        let bytes = serde_json::to_vec_pretty(file).map_err(|e| TokenError::io(&self.path, e.into()))?;
        write_private(&self.path, &bytes).map_err(|e| TokenError::io(&self.path, e))?;
        *self.entries.write().unwrap_or_else(PoisonError::into_inner) = entries;
        Ok(())
    }

    /// Makes `file` the tokens in memory, without writing it.
    fn reload(&self, file: &TokenFile) -> Result<(), TokenError> {
        let entries = load(file, &self.path)?;
        *self.entries.write().unwrap_or_else(PoisonError::into_inner) = entries;
        Ok(())
    }
}

/// Removes `admin.token` if it holds a token whose hash is in `revoked`: a
/// revoked secret should not stay on disk, nor be picked up by the CLI.
fn forget_admin_file(data_dir: &Path, revoked: &[String]) {
    let path = admin_token_path(data_dir);
    let Ok(text) = std::fs::read_to_string(&path) else {
        return;
    };
    if !revoked.contains(&hex(&sha256(text.trim()))) {
        return;
    }
    match std::fs::remove_file(&path).and_then(|()| sync_dir(data_dir)) {
        Ok(()) => tracing::info!(path = %path.display(), "removed the admin token file: its token was revoked"),
        Err(e) => tracing::warn!(path = %path.display(), error = %e, "cannot remove the revoked admin token file"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ENV_ADMIN: &str = "env-secret-0123456789abcdef";

    fn request(name: &str, scopes: &[Scope]) -> TokenRequest {
        TokenRequest {
            name: name.to_string(),
            scopes: scopes.to_vec(),
            ..TokenRequest::default()
        }
    }

    fn now() -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }

    fn env_store(dir: &Path) -> TokenStore {
        TokenStore::open(dir, Some(ENV_ADMIN)).unwrap().0
    }

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn first_start_writes_an_admin_token_once_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let (store, written) = TokenStore::open(dir.path(), None).unwrap();
        let path = written.unwrap();
        let token = std::fs::read_to_string(&path).unwrap().trim().to_string();
        #[cfg(unix)]
        {
            assert_eq!(mode(&path), 0o600);
            assert_eq!(mode(&dir.path().join("tokens.json")), 0o600);
        }
        assert_eq!(store.authorize(Some(&token), Scope::Search).unwrap().name, "admin");
        let stored = std::fs::read_to_string(dir.path().join("tokens.json")).unwrap();
        assert!(!stored.contains(&token), "tokens.json must hold hashes only");
        let (_, again) = TokenStore::open(dir.path(), None).unwrap();
        assert!(again.is_none());
        assert!(
            std::fs::read_dir(dir.path())
                .unwrap()
                .all(|e| !e.unwrap().file_name().to_string_lossy().ends_with(".tmp")),
            "no temp file is left behind"
        );
    }

    #[test]
    fn scopes_are_enforced() {
        let dir = tempfile::tempdir().unwrap();
        let store = env_store(dir.path());
        assert!(!dir.path().join("admin.token").exists());
        let ingest = store.create(request("shipper", &[Scope::Ingest]), now()).unwrap().token;
        assert!(store.authorize(Some(&ingest), Scope::Ingest).is_ok());
        assert!(matches!(
            store.authorize(Some(&ingest), Scope::Search),
            Err(AuthError::Forbidden { .. })
        ));
        assert_eq!(store.authorize(Some("nope"), Scope::Ingest), Err(AuthError::Invalid));
        assert_eq!(store.authorize(None, Scope::Ingest), Err(AuthError::Missing));
        assert_eq!(
            store.authorize(Some(ENV_ADMIN), Scope::Admin).unwrap().name,
            ENV_ADMIN_NAME
        );
        let (reopened, _) = TokenStore::open(dir.path(), None).unwrap();
        assert!(reopened.authorize(Some(&ingest), Scope::Ingest).is_ok());
        assert!(reopened.authorize(Some(ENV_ADMIN), Scope::Admin).is_err());
    }

    #[test]
    fn an_admin_token_from_the_environment_shorter_than_24_characters_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let err = TokenStore::open(dir.path(), Some("test-admin-token")).unwrap_err();
        let msg = format!("{err:#}");
        assert!(
            msg.contains("TRIPLINE_ADMIN_TOKEN") && msg.contains("at least 24"),
            "{msg}"
        );
        assert!(TokenStore::open(dir.path(), Some(&"x".repeat(24))).is_ok());
    }

    /// Regression: tokens.json (with the admin entry) used to be written
    /// before admin.token; a crash between the two left an admin entry whose
    /// secret nobody had, and no new one was ever generated.
    #[test]
    fn a_crash_before_admin_token_is_written_does_not_lock_the_operator_out() {
        let dir = tempfile::tempdir().unwrap();
        // A directory in its place makes the admin.token write fail, as a
        // crash at that point would.
        std::fs::create_dir(dir.path().join("admin.token")).unwrap();
        assert!(TokenStore::open(dir.path(), None).is_err());
        std::fs::remove_dir(dir.path().join("admin.token")).unwrap();
        let (store, written) = TokenStore::open(dir.path(), None).unwrap();
        let path = written.expect("the next start writes an admin token");
        let token = std::fs::read_to_string(path).unwrap();
        assert!(store.authorize(Some(token.trim()), Scope::Admin).is_ok());
    }

    /// Regression: create wrote its in-memory copy back, so a token the
    /// operator had deleted from tokens.json by hand came back.
    #[test]
    fn a_token_deleted_by_hand_is_not_written_back_by_the_next_create() {
        let dir = tempfile::tempdir().unwrap();
        let store = env_store(dir.path());
        let leaked = store.create(request("leaked", &[Scope::Ingest]), now()).unwrap().token;
        let path = dir.path().join("tokens.json");
        let mut file: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        file["tokens"].as_array_mut().unwrap().retain(|t| t["name"] != "leaked");
        std::fs::write(&path, serde_json::to_vec(&file).unwrap()).unwrap();

        store.create(request("next", &[Scope::Search]), now()).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("leaked"), "{text}");
        assert!(text.contains("next"));
        assert_eq!(store.authorize(Some(&leaked), Scope::Ingest), Err(AuthError::Invalid));
    }

    #[test]
    fn a_revoked_token_is_refused_at_once_and_an_unknown_name_is_not_found() {
        let dir = tempfile::tempdir().unwrap();
        let store = env_store(dir.path());
        let token = store.create(request("shipper", &[Scope::Ingest]), now()).unwrap().token;
        store.create(request("other", &[Scope::Ingest]), now()).unwrap();
        store.revoke("shipper").unwrap();
        assert_eq!(store.authorize(Some(&token), Scope::Ingest), Err(AuthError::Invalid));
        assert!(matches!(store.revoke("shipper"), Err(TokenError::NotFound(_))));
        let names: Vec<String> = store.list().into_iter().map(|t| t.name).collect();
        assert_eq!(names, ["other"]);
        let (reopened, _) = TokenStore::open(dir.path(), None).unwrap();
        assert_eq!(reopened.authorize(Some(&token), Scope::Ingest), Err(AuthError::Invalid));
    }

    #[test]
    fn revoking_a_token_deleted_by_hand_stops_it_before_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let store = env_store(dir.path());
        let token = store.create(request("leaked", &[Scope::Ingest]), now()).unwrap().token;
        std::fs::write(dir.path().join("tokens.json"), "{\"tokens\":[]}").unwrap();
        store.revoke("leaked").unwrap();
        assert_eq!(store.authorize(Some(&token), Scope::Ingest), Err(AuthError::Invalid));
    }

    #[test]
    fn revoking_the_generated_admin_token_removes_admin_token() {
        let dir = tempfile::tempdir().unwrap();
        let (store, written) = TokenStore::open(dir.path(), None).unwrap();
        let path = written.unwrap();
        store.create(request("ops", &[Scope::Admin]), now()).unwrap();
        store.revoke("admin").unwrap();
        assert!(!path.exists());
    }

    #[test]
    fn a_token_stops_working_when_it_expires() {
        let dir = tempfile::tempdir().unwrap();
        let store = env_store(dir.path());
        let t0 = now();
        let created = store
            .create(
                TokenRequest {
                    expires_in_days: Some(1),
                    ..request("day", &[Scope::Search])
                },
                t0,
            )
            .unwrap();
        let expires = OffsetDateTime::parse(created.info.expires.as_deref().unwrap(), &Rfc3339).unwrap();
        assert!((expires - (t0 + Duration::days(1))).abs() < Duration::seconds(1));
        let token = Some(created.token.as_str());
        assert!(store
            .authorize_at(token, Scope::Search, t0 + Duration::hours(23))
            .is_ok());
        assert_eq!(
            store.authorize_at(token, Scope::Search, t0 + Duration::hours(25)),
            Err(AuthError::Expired)
        );
        let (reopened, _) = TokenStore::open(dir.path(), None).unwrap();
        assert_eq!(
            reopened.authorize_at(token, Scope::Search, t0 + Duration::hours(25)),
            Err(AuthError::Expired),
            "the expiry is stored"
        );
    }

    #[test]
    fn expiry_in_the_past_or_given_twice_or_malformed_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = env_store(dir.path());
        let with = |expires: Option<&str>, days: Option<u32>| {
            store.create(
                TokenRequest {
                    expires: expires.map(str::to_string),
                    expires_in_days: days,
                    ..request("t", &[Scope::Search])
                },
                now(),
            )
        };
        for (expires, days) in [
            (Some("2001-01-01T00:00:00Z"), None),
            (Some("tomorrow"), None),
            (Some("2999-01-01T00:00:00Z"), Some(3)),
            (None, Some(0)),
            (None, Some(MAX_EXPIRES_IN_DAYS + 1)),
            (Some("9999-12-31T23:59:59-01:00"), None),
        ] {
            assert!(
                matches!(with(expires, days), Err(TokenError::Invalid(_))),
                "{expires:?} {days:?}"
            );
        }
        let ok = with(Some("2999-01-01T02:00:00+02:00"), None).unwrap();
        assert_eq!(ok.info.expires.as_deref(), Some("2999-01-01T00:00:00Z"));
    }

    #[test]
    fn token_names_outside_the_safe_characters_or_over_64_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = env_store(dir.path());
        let long = "n".repeat(65);
        for name in ["", "a\nb", "a\r", "spa ce", "\u{1b}[2J", "é", long.as_str()] {
            assert!(
                matches!(
                    store.create(request(name, &[Scope::Ingest]), now()),
                    Err(TokenError::Invalid(_))
                ),
                "{name:?}"
            );
        }
        assert!(store.create(request(&"n".repeat(64), &[Scope::Ingest]), now()).is_ok());
        assert!(store.create(request("web-01.prod_x", &[Scope::Ingest]), now()).is_ok());
        assert!(store.list().iter().all(|t| valid_name(&t.name)));
    }

    #[test]
    fn repeated_scopes_are_stored_once_and_a_second_token_of_a_name_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = env_store(dir.path());
        let created = store
            .create(
                request("shipper", &[Scope::Ingest, Scope::Search, Scope::Ingest, Scope::Ingest]),
                now(),
            )
            .unwrap();
        assert_eq!(created.info.scopes, [Scope::Ingest, Scope::Search]);
        assert!(matches!(
            store.create(request("shipper", &[Scope::Search]), now()),
            Err(TokenError::Exists(_))
        ));
        assert!(matches!(
            store.create(request("none", &[]), now()),
            Err(TokenError::Invalid(_))
        ));
        assert_eq!(store.list().len(), 1);
    }

    #[test]
    fn a_token_bound_to_datasets_may_ingest_into_those_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = env_store(dir.path());
        let bound = |datasets: &[&str], scopes: &[Scope]| {
            store.create(
                TokenRequest {
                    datasets: Some(datasets.iter().map(|d| d.to_string()).collect()),
                    ..request(&format!("t{}", datasets.len() + scopes.len()), scopes)
                },
                now(),
            )
        };
        let created = bound(&["payments", "auth", "payments"], &[Scope::Ingest]).unwrap();
        assert_eq!(
            created.info.datasets.as_deref(),
            Some(&["payments".into(), "auth".into()][..])
        );
        let who = store.authorize(Some(&created.token), Scope::Ingest).unwrap();
        assert!(who.check_dataset("payments").is_ok());
        assert!(who.check_dataset("auth").is_ok());
        assert!(matches!(who.check_dataset("web"), Err(AuthError::Dataset { .. })));
        assert!(matches!(who.check_dataset("Payments"), Err(AuthError::Dataset { .. })));
        let free = store.authorize(Some(ENV_ADMIN), Scope::Ingest).unwrap();
        assert!(free.check_dataset("web").is_ok());
        for (datasets, scopes) in [
            (&[][..], &[Scope::Ingest][..]),
            (&["bad name"][..], &[Scope::Ingest][..]),
            (&["a"][..], &[Scope::Search][..]),
            (&["a"][..], &[Scope::Ingest, Scope::Admin][..]),
        ] {
            assert!(
                matches!(bound(datasets, scopes), Err(TokenError::Invalid(_))),
                "{datasets:?} {scopes:?}"
            );
        }
    }

    #[test]
    fn the_list_holds_no_hash_or_secret() {
        let dir = tempfile::tempdir().unwrap();
        let store = env_store(dir.path());
        let created = store.create(request("shipper", &[Scope::Ingest]), now()).unwrap();
        let listed = serde_json::to_string(&store.list()).unwrap();
        assert!(!listed.contains(&created.token));
        assert!(!listed.contains(&hex(&sha256(&created.token))));
        assert!(!listed.contains("sha256"));
        assert!(listed.contains("\"shipper\""), "{listed}");
    }

    /// Regression: the temp file was opened with `truncate`, which keeps the
    /// mode of a file left by a crash, and the rename made it tokens.json.
    #[cfg(unix)]
    #[test]
    fn a_stale_temp_file_does_not_leave_tokens_json_readable_by_others() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let store = env_store(dir.path());
        let path = dir.path().join("tokens.json");
        let tmp = temp_path(&path);
        std::fs::write(&tmp, "stale").unwrap();
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644)).unwrap();
        store.create(request("shipper", &[Scope::Ingest]), now()).unwrap();
        assert_eq!(mode(&path), 0o600);
        assert!(!tmp.exists());
    }

    #[test]
    fn a_corrupt_hand_edit_is_left_alone_and_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = env_store(dir.path());
        let path = dir.path().join("tokens.json");
        std::fs::write(&path, "{\"tokens\": [").unwrap();
        assert!(matches!(
            store.create(request("shipper", &[Scope::Ingest]), now()),
            Err(TokenError::Corrupt { .. })
        ));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"tokens\": [");
    }
}
