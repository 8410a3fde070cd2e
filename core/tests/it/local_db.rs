//! The private development PostgreSQL started from the installed binaries.

use keel_core::db::{admin, local::PrivateServer};

#[tokio::test]
async fn a_private_server_starts_is_reused_and_stops() {
    let dir = std::env::temp_dir().join(format!("keel-private-pg-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);

    let server = PrivateServer::start(&dir).await.unwrap();
    let port = server.port();
    let url = server.url("postgres");
    let mut conn = admin::connect(&url, std::time::Duration::from_secs(5))
        .await
        .unwrap();
    admin::create_database(&mut conn, "keel", None)
        .await
        .unwrap();
    assert!(admin::database_exists(&mut conn, "keel").await.unwrap());
    drop(conn);

    // A second start finds it running and reuses it on the same port without owning it.
    let again = PrivateServer::start(&dir).await.unwrap();
    assert_eq!(again.port(), port);
    again.stop().await.unwrap();
    assert!(
        admin::connect(&url, std::time::Duration::from_secs(2))
            .await
            .is_ok(),
        "stopping a reused server leaves it running"
    );

    server.stop().await.unwrap();
    assert!(
        admin::connect(&url, std::time::Duration::from_secs(2))
            .await
            .is_err()
    );

    // The data survives: the next start reuses the directory and the port.
    let restarted = PrivateServer::start(&dir).await.unwrap();
    assert_eq!(restarted.port(), port);
    let mut conn = admin::connect(&url, std::time::Duration::from_secs(5))
        .await
        .unwrap();
    assert!(admin::database_exists(&mut conn, "keel").await.unwrap());
    drop(conn);
    restarted.stop().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
