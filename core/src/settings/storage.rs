//! `S3_*`, `STORAGE_DIR`, `PUBLIC_URL`: where uploads go.

use std::path::PathBuf;

use super::Secret;
use super::reader::Reader;

#[derive(Debug, Clone)]
pub struct StorageSettings {
    pub backend: StorageBackend,
    /// How clients reach keel-api (`PUBLIC_URL`), which local-disk links start with;
    /// empty: the links are relative (`/storage/…`).
    pub public_url: String,
}

#[derive(Debug, Clone)]
pub enum StorageBackend {
    /// Files under this directory (`STORAGE_DIR`): one machine, or a shared volume.
    Local {
        dir: PathBuf,
    },
    S3(S3Settings),
}

/// An S3 bucket on AWS or any S3-compatible store (MinIO, R2, Spaces, …).
#[derive(Debug, Clone)]
pub struct S3Settings {
    /// `None`: AWS itself, for `region`.
    pub endpoint: Option<String>,
    pub region: String,
    pub bucket: String,
    pub access_key_id: String,
    pub secret_access_key: Secret,
    /// `https://endpoint/bucket/key` rather than `https://bucket.endpoint/key`; what
    /// MinIO and most self-hosted stores need.
    pub force_path_style: bool,
}

/// S3 when `S3_BUCKET` is set (then the credentials are required), else local disk.
fn storage_backend(r: &mut Reader<'_>) -> StorageBackend {
    let local = || StorageBackend::Local {
        dir: PathBuf::from(".keel/storage"),
    };
    let Some(bucket) = r.optional_string("S3_BUCKET") else {
        for name in ["S3_ENDPOINT", "S3_ACCESS_KEY_ID", "S3_SECRET_ACCESS_KEY"] {
            if r.optional_string(name).is_some() {
                r.problem(
                    "S3_BUCKET",
                    &format!("is required when {name} is set"),
                    "my-app-uploads",
                );
            }
        }
        return r
            .optional_string("STORAGE_DIR")
            .map_or_else(local, |dir| StorageBackend::Local {
                dir: PathBuf::from(dir),
            });
    };
    let endpoint = r
        .url(
            "S3_ENDPOINT",
            &["https", "http"],
            "https://s3.eu-west-1.amazonaws.com",
        )
        .map(|url| url.expose().to_owned());
    let why = "when S3_BUCKET is set";
    let access_key_id = r.optional_string("S3_ACCESS_KEY_ID");
    let secret_access_key = r.optional_string("S3_SECRET_ACCESS_KEY");
    for (name, value) in [
        ("S3_ACCESS_KEY_ID", &access_key_id),
        ("S3_SECRET_ACCESS_KEY", &secret_access_key),
    ] {
        if value.is_none() {
            r.problem(
                name,
                &format!("is required {why}"),
                "the key of an account that may use the bucket",
            );
        }
    }
    StorageBackend::S3(S3Settings {
        force_path_style: r.parse("S3_FORCE_PATH_STYLE", endpoint.is_some(), "true"),
        endpoint,
        region: r.string("S3_REGION", "us-east-1"),
        bucket,
        access_key_id: access_key_id.unwrap_or_default(),
        secret_access_key: Secret::new(secret_access_key.unwrap_or_default()),
    })
}

impl StorageSettings {
    pub(super) fn read(r: &mut Reader<'_>) -> Self {
        Self {
            backend: storage_backend(r),
            public_url: r
                .url("PUBLIC_URL", &["http", "https"], "https://api.example.com")
                .map(|url| url.expose().trim_end_matches('/').to_owned())
                .unwrap_or_default(),
        }
    }
}
