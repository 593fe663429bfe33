//! Named bearer tokens with roles, created and revoked by the admin.
//!
//! Tokens are stored hashed (BLAKE3) in `DIR/tokens.json`, rewritten atomically (temporary file,
//! fsync, rename, fsync of the directory) on every change, so they survive restarts and a crash
//! leaves either the old set or the new one. A revoked token stops working at once. Token
//! management is not an event of the log: it is access control, not business state.

use crate::session::Role;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};

/// Most tokens (besides the admin token).
pub const TOKENS_MAX: usize = 10_000;
/// Most accounts one client token may be limited to.
pub const TOKEN_ACCOUNTS_MAX: usize = 1_000;

/// A stored token: its hash, never its secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredToken {
    /// The name.
    pub name: String,
    /// The role.
    pub role: Role,
    /// For a client token: the only accounts it may place and cancel orders for.
    pub accounts: Option<Vec<String>>,
    /// BLAKE3 of the secret, hex.
    pub hash: String,
}

/// Why a token change was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum TokenError {
    /// The name is taken.
    AlreadyExists,
    /// No token has that name.
    NotFound,
    /// Too many tokens.
    Full,
    /// The store could not be written.
    Storage(String),
}

#[derive(Default, Serialize, Deserialize)]
struct TokenFile {
    tokens: Vec<StoredToken>,
}

/// The token store.
#[derive(Debug, Default)]
pub struct TokenStore {
    path: Option<PathBuf>,
    by_name: RwLock<BTreeMap<String, StoredToken>>,
    /// Serialises writers of the file.
    write: Mutex<()>,
}

fn hash_hex(secret: &str) -> String {
    blake3::hash(secret.as_bytes()).to_hex().to_string()
}

impl TokenStore {
    /// A store kept only in memory (tests).
    #[must_use]
    pub fn in_memory() -> TokenStore {
        TokenStore::default()
    }

    /// Loads (or starts) the store in `path`.
    ///
    /// # Errors
    /// The file exists but cannot be read or parsed.
    pub fn open(path: &Path) -> Result<TokenStore, String> {
        let mut tokens = BTreeMap::new();
        if path.exists() {
            let bytes =
                std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            let file: TokenFile = serde_json::from_slice(&bytes)
                .map_err(|e| format!("{} is malformed: {e}", path.display()))?;
            for token in file.tokens {
                tokens.insert(token.name.clone(), token);
            }
        }
        Ok(TokenStore {
            path: Some(path.to_path_buf()),
            by_name: RwLock::new(tokens),
            write: Mutex::new(()),
        })
    }

    /// The token whose secret is `presented`, if any.
    #[must_use]
    pub fn lookup(&self, presented: &str) -> Option<StoredToken> {
        let hash = hash_hex(presented);
        let tokens = self
            .by_name
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Hashes are compared as fixed-length hex of a cryptographic hash: timing reveals nothing
        // about the secret.
        tokens.values().find(|token| token.hash == hash).cloned()
    }

    /// Every token, without secrets, by name.
    #[must_use]
    pub fn list(&self) -> Vec<StoredToken> {
        self.by_name
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }

    /// Creates a token and returns its secret (shown once).
    ///
    /// # Errors
    /// `AlreadyExists`, `Full`, or `Storage`.
    pub fn create(
        &self,
        name: &str,
        role: Role,
        accounts: Option<Vec<String>>,
    ) -> Result<String, TokenError> {
        let _writer = self
            .write
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let secret = format!(
            "cairn_{}",
            crate::auth::new_secret().map_err(TokenError::Storage)?
        );
        let mut next = self
            .by_name
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        if next.contains_key(name) {
            return Err(TokenError::AlreadyExists);
        }
        if next.len() >= TOKENS_MAX {
            return Err(TokenError::Full);
        }
        let token = StoredToken {
            name: name.to_string(),
            role,
            accounts,
            hash: hash_hex(&secret),
        };
        next.insert(name.to_string(), token);
        self.persist(&next)?;
        *self
            .by_name
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = next;
        Ok(secret)
    }

    /// Revokes a token at once.
    ///
    /// # Errors
    /// `NotFound` or `Storage`.
    pub fn revoke(&self, name: &str) -> Result<(), TokenError> {
        let _writer = self
            .write
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut next = self
            .by_name
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        if next.remove(name).is_none() {
            return Err(TokenError::NotFound);
        }
        self.persist(&next)?;
        *self
            .by_name
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = next;
        Ok(())
    }

    /// Writes the file atomically; the in-memory set changes only after this succeeds.
    fn persist(&self, tokens: &BTreeMap<String, StoredToken>) -> Result<(), TokenError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let file = TokenFile {
            tokens: tokens.values().cloned().collect(),
        };
        let bytes =
            serde_json::to_vec_pretty(&file).map_err(|e| TokenError::Storage(e.to_string()))?;
        write_atomic(path, &bytes)
            .map_err(|e| TokenError::Storage(format!("cannot write {}: {e}", path.display())))
    }
}

fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = path.with_extension("json.tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_survive_a_reopen_and_revocation_is_immediate_and_durable() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("tokens.json");
        let store = TokenStore::open(&path).expect("opens");
        let secret = store
            .create("shop", Role::Client, Some(vec!["acct-1".into()]))
            .expect("created");
        assert_eq!(
            store.create("shop", Role::Viewer, None),
            Err(TokenError::AlreadyExists)
        );
        assert_eq!(store.lookup(&secret).map(|t| t.role), Some(Role::Client));
        let text = std::fs::read_to_string(&path).expect("file");
        assert!(!text.contains(&secret), "the secret is never stored");
        let reopened = TokenStore::open(&path).expect("reopens");
        assert_eq!(
            reopened.lookup(&secret).map(|t| t.name),
            Some("shop".into())
        );
        reopened.revoke("shop").expect("revoked");
        assert_eq!(reopened.lookup(&secret), None);
        assert_eq!(
            TokenStore::open(&path).expect("reopens").lookup(&secret),
            None
        );
        assert_eq!(reopened.revoke("shop"), Err(TokenError::NotFound));
    }
}
