//! API tokens: scoped, stored as SHA-256 hashes, compared in constant time.
//!
//! Tokens are 256 random bits, so a fast hash is enough to make a stolen
//! `tokens.json` useless; no token is ever logged or stored in clear, except
//! the generated admin token, written once to `admin.token` (mode 0600) for
//! the operator to pick up.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// What a token may do. `admin` may do everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Send events.
    Ingest,
    /// Search.
    Search,
    /// Manage tokens, read metrics.
    Admin,
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Scope::Ingest => "ingest",
            Scope::Search => "search",
            Scope::Admin => "admin",
        })
    }
}

impl AuthError {
    /// The kind of error, for the API.
    pub fn error_code(&self) -> schemas::ErrorCode {
        match self {
            AuthError::Missing | AuthError::Invalid => schemas::ErrorCode::Unauthenticated,
            AuthError::Forbidden { .. } => schemas::ErrorCode::Forbidden,
        }
    }
}

/// Why a request is not authorized.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum AuthError {
    /// No `Authorization: Bearer` header.
    #[error("missing bearer token")]
    Missing,
    /// The token is not known.
    #[error("invalid token")]
    Invalid,
    /// The token lacks the scope.
    #[error("token {name:?} lacks scope {need}")]
    Forbidden { name: String, need: Scope },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredToken {
    name: String,
    sha256: String,
    scopes: Vec<Scope>,
    created: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenFile {
    tokens: Vec<StoredToken>,
}

struct Entry {
    name: String,
    hash: [u8; 32],
    scopes: Vec<Scope>,
}

/// The token store of one data directory.
pub struct TokenStore {
    path: PathBuf,
    file: RwLock<(TokenFile, Vec<Entry>)>,
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
pub fn generate() -> anyhow::Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no system randomness: {e}"))?;
    Ok(format!("tl_{}", hex(&bytes)))
}

/// Writes `contents` to `path` with mode 0600, atomically.
fn write_private(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        f.write_all(contents)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(())
}

impl TokenStore {
    /// Opens the store in `data_dir`. Without `env_admin` and without any
    /// admin token yet, generates one and writes it to `admin.token`;
    /// returns that file's path when it did.
    pub fn open(data_dir: &Path, env_admin: Option<&str>) -> anyhow::Result<(TokenStore, Option<PathBuf>)> {
        let path = data_dir.join("tokens.json");
        let file: TokenFile = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).with_context(|| format!("parsing {}", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => TokenFile::default(),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let mut entries = Vec::new();
        for t in &file.tokens {
            let hash =
                unhex(&t.sha256).with_context(|| format!("{}: token {:?} has a bad hash", path.display(), t.name))?;
            entries.push(Entry {
                name: t.name.clone(),
                hash,
                scopes: t.scopes.clone(),
            });
        }
        let store = TokenStore {
            path,
            file: RwLock::new((file, entries)),
            env_admin: env_admin.filter(|t| !t.is_empty()).map(sha256),
        };
        let has_admin = store
            .file
            .read()
            .map(|f| f.1.iter().any(|e| e.scopes.contains(&Scope::Admin)))
            .unwrap_or(false);
        let mut written = None;
        if store.env_admin.is_none() && !has_admin {
            let token = store.create("admin", vec![Scope::Admin])?;
            let token_path = data_dir.join("admin.token");
            write_private(&token_path, format!("{token}\n").as_bytes())?;
            written = Some(token_path);
        }
        Ok((store, written))
    }

    /// Checks a bearer token for `need`; returns the token's name.
    pub fn authorize(&self, bearer: Option<&str>, need: Scope) -> Result<String, AuthError> {
        let token = bearer.ok_or(AuthError::Missing)?;
        let hash = sha256(token);
        if let Some(admin) = &self.env_admin {
            if bool::from(admin.ct_eq(&hash)) {
                return Ok("env:TRIPLINE_ADMIN_TOKEN".into());
            }
        }
        let guard = self.file.read().unwrap_or_else(|p| p.into_inner());
        // Compare against every token, without stopping early.
        let mut found: Option<&Entry> = None;
        for e in &guard.1 {
            if bool::from(e.hash.ct_eq(&hash)) {
                found = Some(e);
            }
        }
        let e = found.ok_or(AuthError::Invalid)?;
        if e.scopes.contains(&need) || e.scopes.contains(&Scope::Admin) {
            Ok(e.name.clone())
        } else {
            Err(AuthError::Forbidden {
                name: e.name.clone(),
                need,
            })
        }
    }

    /// Creates a token; returns its secret (shown once, stored hashed).
    pub fn create(&self, name: &str, scopes: Vec<Scope>) -> anyhow::Result<String> {
        let token = generate()?;
        let hash = sha256(&token);
        let mut guard = self.file.write().unwrap_or_else(|p| p.into_inner());
        guard.0.tokens.push(StoredToken {
            name: name.to_string(),
            sha256: hex(&hash),
            scopes: scopes.clone(),
            created: schemas::time::format(time::OffsetDateTime::now_utc()),
        });
        let bytes = serde_json::to_vec_pretty(&guard.0)?;
        if let Err(e) = write_private(&self.path, &bytes) {
            guard.0.tokens.pop();
            return Err(e);
        }
        guard.1.push(Entry {
            name: name.to_string(),
            hash,
            scopes,
        });
        Ok(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_start_writes_an_admin_token_once_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let (store, written) = TokenStore::open(dir.path(), None).unwrap();
        let path = written.unwrap();
        let token = std::fs::read_to_string(&path).unwrap().trim().to_string();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        assert_eq!(store.authorize(Some(&token), Scope::Search).unwrap(), "admin");
        let stored = std::fs::read_to_string(dir.path().join("tokens.json")).unwrap();
        assert!(!stored.contains(&token), "tokens.json must hold hashes only");
        let (_, again) = TokenStore::open(dir.path(), None).unwrap();
        assert!(again.is_none());
    }

    #[test]
    fn scopes_are_enforced() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = TokenStore::open(dir.path(), Some("env-secret")).unwrap();
        assert!(!dir.path().join("admin.token").exists());
        let ingest = store.create("shipper", vec![Scope::Ingest]).unwrap();
        assert!(store.authorize(Some(&ingest), Scope::Ingest).is_ok());
        assert!(matches!(
            store.authorize(Some(&ingest), Scope::Search),
            Err(AuthError::Forbidden { .. })
        ));
        assert_eq!(store.authorize(Some("nope"), Scope::Ingest), Err(AuthError::Invalid));
        assert_eq!(store.authorize(None, Scope::Ingest), Err(AuthError::Missing));
        assert!(store.authorize(Some("env-secret"), Scope::Admin).is_ok());
        let (reopened, _) = TokenStore::open(dir.path(), None).unwrap();
        assert!(reopened.authorize(Some(&ingest), Scope::Ingest).is_ok());
        assert!(reopened.authorize(Some("env-secret"), Scope::Admin).is_err());
    }
}
