//! The local-disk backend: objects under `STORAGE_DIR`, written atomically (a temp file
//! renamed into place), each with a small JSON sidecar holding its content type.
//!
//! ```text
//! STORAGE_DIR/objects/<key>        the bytes
//! STORAGE_DIR/meta/<key>.json      {"content_type": …}
//! STORAGE_DIR/tmp/                 uploads in progress
//! ```
//! Keys are [`ObjectKey`]s, so a path built from one never leaves the root.

use std::io;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::fs;
use tokio::io::AsyncWriteExt;
use tokio_util::io::ReaderStream;

use super::{ByteStream, Object, ObjectKey, ObjectMeta, StorageError};

#[derive(Debug, Serialize, Deserialize)]
struct Sidecar {
    content_type: String,
}

#[derive(Debug, Clone)]
pub(super) struct LocalStore {
    root: PathBuf,
}

impl LocalStore {
    pub(super) fn new(root: PathBuf) -> Self {
        Self { root }
    }

    fn object_path(&self, key: &ObjectKey) -> PathBuf {
        let mut path = self.root.join("objects");
        path.extend(key.segments());
        path
    }

    fn meta_path(&self, key: &ObjectKey) -> PathBuf {
        let mut path = self.root.join("meta");
        path.extend(key.segments());
        path.set_extension(match path.extension() {
            Some(ext) => format!("{}.json", ext.to_string_lossy()),
            None => "json".to_owned(),
        });
        path
    }

    /// Writes to a temp file and renames it into place, so a reader never sees half an
    /// object and a failed upload leaves nothing behind.
    pub(super) async fn put(
        &self,
        key: &ObjectKey,
        mut body: impl Stream<Item = io::Result<Bytes>> + Send + Unpin,
        content_type: &str,
    ) -> Result<u64, StorageError> {
        let tmp_dir = self.root.join("tmp");
        fs::create_dir_all(&tmp_dir).await?;
        let tmp = tmp_dir.join(uuid::Uuid::now_v7().simple().to_string());
        let written = async {
            let mut file = fs::File::create(&tmp).await?;
            let mut size = 0_u64;
            while let Some(chunk) = body.next().await {
                let chunk = chunk?;
                size += chunk.len() as u64;
                file.write_all(&chunk).await?;
            }
            file.sync_all().await?;
            let sidecar = serde_json::to_vec(&Sidecar {
                content_type: content_type.to_owned(),
            })
            .map_err(io::Error::other)?;
            let meta = self.meta_path(key);
            write_atomically(&meta, &sidecar, &tmp_dir).await?;
            let path = self.object_path(key);
            create_parent(&path).await?;
            fs::rename(&tmp, &path).await?;
            Ok::<_, io::Error>(size)
        }
        .await;
        if written.is_err() {
            let _ = fs::remove_file(&tmp).await;
        }
        Ok(written?)
    }

    pub(super) async fn head(&self, key: &ObjectKey) -> Result<Option<ObjectMeta>, StorageError> {
        let size = match fs::metadata(self.object_path(key)).await {
            Ok(meta) if meta.is_file() => meta.len(),
            Ok(_) => return Ok(None),
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(err.into()),
        };
        let content_type = match fs::read(self.meta_path(key)).await {
            Ok(bytes) => serde_json::from_slice::<Sidecar>(&bytes)
                .map(|s| s.content_type)
                .unwrap_or_else(|_| super::DEFAULT_CONTENT_TYPE.to_owned()),
            Err(_) => super::DEFAULT_CONTENT_TYPE.to_owned(),
        };
        Ok(Some(ObjectMeta {
            key: key.clone(),
            size,
            content_type,
        }))
    }

    pub(super) async fn get(&self, key: &ObjectKey) -> Result<Option<Object>, StorageError> {
        let Some(meta) = self.head(key).await? else {
            return Ok(None);
        };
        let file = match fs::File::open(self.object_path(key)).await {
            Ok(file) => file,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(err.into()),
        };
        let body: ByteStream = Box::pin(ReaderStream::new(file));
        Ok(Some(Object { meta, body }))
    }

    /// Idempotent: deleting what isn't there succeeds.
    pub(super) async fn delete(&self, key: &ObjectKey) -> Result<(), StorageError> {
        for path in [self.object_path(key), self.meta_path(key)] {
            match fs::remove_file(&path).await {
                Ok(()) => {}
                Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                Err(err) => return Err(err.into()),
            }
        }
        Ok(())
    }

    /// Every object whose key starts with `prefix`, in key order.
    pub(super) async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StorageError> {
        // Walk only the deepest directory the prefix names completely.
        let mut start = self.root.join("objects");
        if let Some((dirs, _)) = prefix.rsplit_once('/') {
            start.extend(ObjectKey::new(dirs)?.segments());
        }
        let mut found = Vec::new();
        let mut pending = vec![start];
        while let Some(dir) = pending.pop() {
            let mut entries = match fs::read_dir(&dir).await {
                Ok(entries) => entries,
                Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
                Err(err) => return Err(err.into()),
            };
            while let Some(entry) = entries.next_entry().await? {
                let path = entry.path();
                if entry.file_type().await?.is_dir() {
                    pending.push(path);
                    continue;
                }
                let Some(key) = self.key_of(&path) else {
                    continue;
                };
                if key.as_str().starts_with(prefix)
                    && let Some(meta) = self.head(&key).await?
                {
                    found.push(meta);
                }
            }
        }
        found.sort_by(|a, b| a.key.as_str().cmp(b.key.as_str()));
        Ok(found)
    }

    fn key_of(&self, path: &Path) -> Option<ObjectKey> {
        let relative = path.strip_prefix(self.root.join("objects")).ok()?;
        let parts: Vec<&str> = relative
            .components()
            .map(|c| c.as_os_str().to_str())
            .collect::<Option<_>>()?;
        ObjectKey::new(&parts.join("/")).ok()
    }

    /// The root is writable: what readiness reports for local storage.
    pub(super) async fn ping(&self) -> Result<(), StorageError> {
        let tmp_dir = self.root.join("tmp");
        fs::create_dir_all(&tmp_dir).await?;
        let probe = tmp_dir.join(format!("probe-{}", uuid::Uuid::now_v7().simple()));
        fs::write(&probe, b"").await?;
        fs::remove_file(&probe).await?;
        Ok(())
    }
}

async fn create_parent(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(parent) => fs::create_dir_all(parent).await,
        None => Ok(()),
    }
}

async fn write_atomically(path: &Path, bytes: &[u8], tmp_dir: &Path) -> io::Result<()> {
    let tmp = tmp_dir.join(uuid::Uuid::now_v7().simple().to_string());
    fs::write(&tmp, bytes).await?;
    create_parent(path).await?;
    fs::rename(&tmp, path).await
}
