//! Bearer tokens. The admin token comes from `CAIRN_ADMIN_TOKEN`, or is created once in
//! `DIR/admin.token` (mode 0600). Only its BLAKE3 hash is kept in memory; comparisons are
//! constant-time.

use crate::error::ApiError;
use axum::http::HeaderMap;
use cairn_types::ErrorCode;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

/// The admin token (as a hash) and the store of the other tokens.
#[derive(Clone, Debug)]
pub struct AdminToken {
    hash: [u8; 32],
    /// Named tokens created by the admin.
    pub tokens: std::sync::Arc<crate::tokens::TokenStore>,
}

impl AdminToken {
    /// From the token's text, with an in-memory token store.
    #[must_use]
    pub fn from_secret(secret: &str) -> AdminToken {
        AdminToken {
            hash: *blake3::hash(secret.as_bytes()).as_bytes(),
            tokens: std::sync::Arc::new(crate::tokens::TokenStore::in_memory()),
        }
    }

    /// With a token store (normally `DIR/tokens.json`).
    #[must_use]
    pub fn with_store(mut self, store: crate::tokens::TokenStore) -> AdminToken {
        self.tokens = std::sync::Arc::new(store);
        self
    }

    /// Whether `presented` is this token.
    #[must_use]
    pub fn matches(&self, presented: &str) -> bool {
        let presented = blake3::hash(presented.as_bytes());
        // blake3::Hash equality is constant-time.
        presented == blake3::Hash::from(self.hash)
    }
}

/// Where the admin token came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenSource {
    /// The environment variable.
    Environment,
    /// A file, created now or earlier.
    File {
        /// The file.
        path: PathBuf,
        /// Whether it was created at this start.
        created: bool,
    },
}

/// Finds or creates the admin token for `data_dir`.
///
/// # Errors
/// The token file cannot be read or created, or the environment variable is empty.
pub fn admin_token(
    data_dir: &Path,
    from_env: Option<String>,
) -> Result<(AdminToken, TokenSource), String> {
    if let Some(secret) = from_env {
        if secret.trim().is_empty() {
            return Err("CAIRN_ADMIN_TOKEN is set but empty".into());
        }
        return Ok((
            AdminToken::from_secret(secret.trim()),
            TokenSource::Environment,
        ));
    }
    let path = data_dir.join("admin.token");
    if path.exists() {
        let secret = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        if secret.trim().is_empty() {
            return Err(format!(
                "{} is empty: delete it to have a new token created, or write one in it",
                path.display()
            ));
        }
        return Ok((
            AdminToken::from_secret(secret.trim()),
            TokenSource::File {
                path,
                created: false,
            },
        ));
    }
    let secret = new_secret()?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    file.write_all(secret.as_bytes())
        .and_then(|()| file.sync_all())
        .and_then(|()| std::fs::File::open(data_dir)?.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok((
        AdminToken::from_secret(&secret),
        TokenSource::File {
            path,
            created: true,
        },
    ))
}

/// A new random token: 32 bytes from the OS, hex-encoded.
///
/// # Errors
/// The OS random source failed.
pub fn new_secret() -> Result<String, String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| format!("no randomness from the OS: {e}"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The bearer token of a request.
///
/// # Errors
/// 401 `unauthenticated` when there is none.
pub fn bearer(headers: &HeaderMap) -> Result<&str, ApiError> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::Unauthenticated,
                "missing Authorization: Bearer <token>",
            )
        })?;
    value
        .strip_prefix("Bearer ")
        .map(str::trim)
        .filter(|token| !token.is_empty())
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::Unauthenticated,
                "Authorization must be 'Bearer <token>'",
            )
        })
}
