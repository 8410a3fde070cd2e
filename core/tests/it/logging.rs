//! File logging: JSON lines in a daily-rotated file under LOG_DIR.

use keel_core::settings::Settings;
use keel_core::telemetry::logging;

#[test]
fn log_lines_reach_the_rotating_file_as_json() {
    let dir = std::env::temp_dir().join(format!("keel-logs-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let settings = Settings::from_vars([
        ("LOG_DIR", dir.to_str().unwrap()),
        ("LOG_LEVEL", "info"),
        ("LOG_FORMAT", "json"),
    ])
    .unwrap();

    let guard = logging::init(&settings.log, "keel-test").unwrap();
    tracing::info!(answer = 42, "hello from the test");
    drop(guard); // flushes the writer thread

    let files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let name = files[0].file_name().unwrap().to_str().unwrap().to_owned();
    assert!(
        name.starts_with("keel-test.") && name.ends_with(".log"),
        "{name}"
    );
    let text = std::fs::read_to_string(&files[0]).unwrap();
    let line = text
        .lines()
        .find(|l| l.contains("hello from the test"))
        .unwrap_or_else(|| panic!("the event is in the file: {text}"));
    let event: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(event["answer"], 42);
    assert_eq!(event["level"], "INFO");
    let _ = std::fs::remove_dir_all(&dir);
}
