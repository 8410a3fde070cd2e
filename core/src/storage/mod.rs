//! Object storage: S3 (or any S3-compatible store) when `S3_BUCKET` is set, otherwise a
//! directory on local disk (`STORAGE_DIR`), so the zero-config run can store uploads too.
//!
//! Both hand out time-limited URLs a client can use without credentials: S3's presigned
//! URLs, or, for local disk, links to keel-api's own `/storage/{key}` signed with a key
//! derived from `PASSWORD_PEPPER` (see [`Storage::check_link`]).

mod key;
pub mod links;
mod local;
mod s3;

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::Stream;
use futures_util::future::BoxFuture;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

pub use key::{InvalidKey, ObjectKey};

use self::local::LocalStore;
use self::s3::S3Store;
use crate::error::ApiError;
use crate::health::{Check, CheckError};
use crate::hex;
use crate::settings::{StorageBackend, StorageSettings};

const DEFAULT_CONTENT_TYPE: &str = "application/octet-stream";

/// An object's bytes as they arrive.
pub type ByteStream = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error(transparent)]
    InvalidKey(#[from] InvalidKey),
    #[error("storage: {0}")]
    Io(#[from] io::Error),
    #[error("storage: {0}")]
    Backend(String),
}

impl From<StorageError> for ApiError {
    fn from(err: StorageError) -> Self {
        match err {
            StorageError::InvalidKey(invalid) => Self::BadRequest(invalid.to_string()),
            other => {
                tracing::error!(error = %other, "object storage failed");
                Self::unavailable("Object storage is unavailable; try again later.")
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    pub key: ObjectKey,
    pub size: u64,
    /// Empty in [`Storage::list`] results on S3 (listing doesn't return it).
    pub content_type: String,
}

pub struct Object {
    pub meta: ObjectMeta,
    pub body: ByteStream,
}

impl std::fmt::Debug for Object {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Object")
            .field("meta", &self.meta)
            .finish_non_exhaustive()
    }
}

/// What a signed local link allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkMethod {
    Get,
    Put,
}

impl LinkMethod {
    fn as_str(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Put => "PUT",
        }
    }
}

#[derive(Debug)]
enum Store {
    Local(LocalStore),
    S3(S3Store),
}

/// `$call` on whichever store a [`Storage`] has, named `$store`: the two backends share
/// the methods it passes through.
macro_rules! on_store {
    ($storage:expr, |$store:ident| $call:expr) => {
        match &$storage.inner.store {
            Store::Local($store) => $call,
            Store::S3($store) => $call,
        }
    };
}

/// A cheap handle (clone it freely) to the configured store.
#[derive(Debug, Clone)]
pub struct Storage {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Store,
    /// Where keel-api is reached, for local signed links.
    public_url: String,
    link_key: [u8; 32],
}

impl Storage {
    /// `link_secret` keys the signed links of the local backend (keel passes the
    /// password pepper; a subkey is derived from it).
    pub fn from_settings(settings: &StorageSettings, link_secret: &[u8]) -> Self {
        let store = match &settings.backend {
            StorageBackend::Local { dir } => Store::Local(LocalStore::new(dir.clone())),
            StorageBackend::S3(s3) => Store::S3(S3Store::new(s3)),
        };
        let mut mac = hmac_with(link_secret);
        mac.update(b"keel-storage-links-v1");
        Self {
            inner: Arc::new(Inner {
                store,
                public_url: settings.public_url.trim_end_matches('/').to_owned(),
                link_key: mac.finalize().into_bytes().into(),
            }),
        }
    }

    /// `s3` or `local`.
    pub fn backend(&self) -> &'static str {
        match self.inner.store {
            Store::Local(_) => "local",
            Store::S3(_) => "s3",
        }
    }

    /// Stores `body` under `key`, replacing what was there; returns the size written.
    /// The body is streamed (S3: 8 MiB parts), never held whole.
    pub async fn put(
        &self,
        key: &ObjectKey,
        body: impl Stream<Item = io::Result<Bytes>> + Send + Unpin,
        content_type: &str,
    ) -> Result<u64, StorageError> {
        on_store!(self, |store| store.put(key, body, content_type).await)
    }

    /// [`Storage::put`] for bytes already in memory.
    pub async fn put_bytes(
        &self,
        key: &ObjectKey,
        bytes: Bytes,
        content_type: &str,
    ) -> Result<u64, StorageError> {
        let body = futures_util::stream::iter([Ok(bytes)]);
        self.put(key, body, content_type).await
    }

    /// The object and its bytes as a stream; `None` when there is none.
    pub async fn get(&self, key: &ObjectKey) -> Result<Option<Object>, StorageError> {
        on_store!(self, |store| store.get(key).await)
    }

    pub async fn head(&self, key: &ObjectKey) -> Result<Option<ObjectMeta>, StorageError> {
        on_store!(self, |store| store.head(key).await)
    }

    /// Idempotent: deleting a missing object succeeds.
    pub async fn delete(&self, key: &ObjectKey) -> Result<(), StorageError> {
        on_store!(self, |store| store.delete(key).await)
    }

    /// Every object whose key starts with `prefix` (a raw prefix: `avatars/01` matches
    /// `avatars/0192/x.png`).
    pub async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StorageError> {
        on_store!(self, |store| store.list(prefix).await)
    }

    /// A URL that reads the object without credentials until `expires_in` has passed.
    pub async fn presign_get(
        &self,
        key: &ObjectKey,
        expires_in: Duration,
    ) -> Result<String, StorageError> {
        match &self.inner.store {
            Store::Local(_) => Ok(self.local_link(LinkMethod::Get, key, "", expires_in)),
            Store::S3(s3) => s3.presign_get(key, expires_in).await,
        }
    }

    /// A URL that uploads the object (a PUT with exactly this `Content-Type`) until
    /// `expires_in` has passed.
    pub async fn presign_put(
        &self,
        key: &ObjectKey,
        content_type: &str,
        expires_in: Duration,
    ) -> Result<String, StorageError> {
        match &self.inner.store {
            Store::Local(_) => Ok(self.local_link(LinkMethod::Put, key, content_type, expires_in)),
            Store::S3(s3) => s3.presign_put(key, content_type, expires_in).await,
        }
    }

    fn local_link(
        &self,
        method: LinkMethod,
        key: &ObjectKey,
        content_type: &str,
        expires_in: Duration,
    ) -> String {
        let expires = unix_now().saturating_add(expires_in.as_secs().max(1));
        let signature = hex::encode(
            &self
                .link_mac(method, key, content_type, expires)
                .finalize()
                .into_bytes(),
        );
        format!(
            "{}/storage/{key}?expires={expires}&signature={signature}",
            self.inner.public_url
        )
    }

    fn link_mac(
        &self,
        method: LinkMethod,
        key: &ObjectKey,
        content_type: &str,
        expires: u64,
    ) -> Hmac<Sha256> {
        let mut mac = hmac_with(&self.inner.link_key);
        for part in [
            method.as_str(),
            key.as_str(),
            content_type,
            &expires.to_string(),
        ] {
            mac.update(part.as_bytes());
            mac.update(b"\n");
        }
        mac
    }

    /// Whether a `/storage/{key}` request carries a valid, unexpired signed link for
    /// `method` (and, for PUT, this `content_type`). Always false on S3, whose links
    /// point at S3 itself.
    pub fn check_link(
        &self,
        method: LinkMethod,
        key: &ObjectKey,
        content_type: &str,
        expires: u64,
        signature: &str,
    ) -> bool {
        if matches!(self.inner.store, Store::S3(_)) || expires < unix_now() {
            return false;
        }
        let Some(signature) = hex::decode(signature) else {
            return false;
        };
        // `verify_slice` compares in constant time.
        self.link_mac(method, key, content_type, expires)
            .verify_slice(&signature)
            .is_ok()
    }

    pub async fn ping(&self) -> Result<(), StorageError> {
        on_store!(self, |store| store.ping().await)
    }
}

fn hmac_with(key: &[u8]) -> Hmac<Sha256> {
    // HMAC takes keys of any length.
    <Hmac<Sha256> as KeyInit>::new_from_slice(key).unwrap_or_else(|_| unreachable!())
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Local disk is checked too (a writable root), since a full or read-only disk breaks
/// uploads as an unreachable bucket does.
impl Check for Storage {
    fn check(&self) -> BoxFuture<'_, Result<(), CheckError>> {
        Box::pin(async move { Ok(self.ping().await?) })
    }
}
