//! Access tokens signed with an asymmetric key pair from settings (`JWT_ALGORITHM`).

use std::path::PathBuf;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use keel_core::auth::{AccessClaims, TokenKeys};
use keel_core::settings::{Settings, SettingsError};
use uuid::Uuid;

fn fixture(name: &str) -> String {
    let path: PathBuf = [env!("CARGO_MANIFEST_DIR"), "tests/fixtures/jwt", name]
        .iter()
        .collect();
    path.to_string_lossy().into_owned()
}

fn settings(algorithm: &str, private: &str, public: &str) -> Result<Settings, SettingsError> {
    Settings::from_vars([
        ("JWT_ALGORITHM", algorithm.to_owned()),
        ("JWT_PRIVATE_KEY_FILE", fixture(private)),
        ("JWT_PUBLIC_KEY_FILE", fixture(public)),
    ])
}

fn keys(algorithm: &str, pair: &str) -> TokenKeys {
    let settings = settings(
        algorithm,
        &format!("{pair}-private.pem"),
        &format!("{pair}-public.pem"),
    )
    .unwrap();
    TokenKeys::from_settings(&settings.security).unwrap()
}

#[test]
fn each_asymmetric_algorithm_signs_and_verifies_with_its_header() {
    for (algorithm, pair, alg) in [
        ("EdDSA", "ed25519", "EdDSA"),
        ("ES256", "es256", "ES256"),
        ("RS256", "rs256", "RS256"),
    ] {
        let keys = keys(algorithm, pair);
        let (user, session) = (Uuid::now_v7(), Uuid::now_v7());
        let issued = keys.issue(user, session).unwrap();
        let header = issued.token.split('.').next().unwrap();
        let header: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap();
        assert_eq!(header["alg"], alg);
        let claims = keys.verify(&issued.token).unwrap();
        assert_eq!((claims.sub, claims.sid), (user, session));
    }
}

#[test]
fn the_algorithm_is_pinned_so_the_public_key_cannot_be_used_as_an_hmac_secret() {
    let keys = keys("RS256", "rs256");
    let claims = keys.verify(&keys.issue(Uuid::now_v7(), Uuid::now_v7()).unwrap().token);
    let claims: AccessClaims = claims.unwrap();
    // The classic confusion attack: HS256 keyed with the (public) verification key.
    let public = std::fs::read(fixture("rs256-public.pem")).unwrap();
    let forged = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(&public),
    )
    .unwrap();
    assert!(keys.verify(&forged).is_err());
    // Nor does a token signed by another key pair of the same algorithm verify.
    let ed = keys_with_public("ed25519-private.pem", "ed25519-public.pem");
    let token = ed.issue(Uuid::now_v7(), Uuid::now_v7()).unwrap().token;
    assert!(keys.verify(&token).is_err());
}

fn keys_with_public(private: &str, public: &str) -> TokenKeys {
    TokenKeys::from_settings(&settings("EdDSA", private, public).unwrap().security).unwrap()
}

#[test]
fn bad_key_settings_are_reported_at_start_naming_the_variable() {
    let problem = |result: Result<Settings, SettingsError>| {
        let err = result.unwrap_err();
        assert_eq!(err.problems.len(), 1, "{err}");
        let p = &err.problems[0];
        (p.variable.clone(), p.to_string())
    };

    let err = Settings::from_vars([("JWT_ALGORITHM", "EdDSA")]).unwrap_err();
    let vars: Vec<&str> = err.problems.iter().map(|p| p.variable.as_str()).collect();
    assert_eq!(vars, ["JWT_PRIVATE_KEY_FILE", "JWT_PUBLIC_KEY_FILE"]);
    assert!(
        err.to_string()
            .contains("is required when JWT_ALGORITHM is not HS256")
    );

    let (var, text) = problem(settings("EdDSA", "missing.pem", "ed25519-public.pem"));
    assert_eq!(var, "JWT_PRIVATE_KEY_FILE");
    assert!(text.contains("cannot read"), "{text}");

    // Settings read the files; whether the keys are usable is auth's to say, and it
    // says so the same way, naming the variable (keel-app asks before anything runs).
    let keys_problem = |algorithm: &str, private: &str, public: &str| {
        let settings = settings(algorithm, private, public).unwrap();
        problem(TokenKeys::from_settings(&settings.security).map(|_| settings))
    };
    // A public key from another pair: caught by signing and verifying a probe.
    let (var, text) = keys_problem("EdDSA", "ed25519-private.pem", "other-ed25519-public.pem");
    assert_eq!(var, "JWT_PUBLIC_KEY_FILE");
    assert!(text.contains("does not belong"), "{text}");

    // An RSA key where an Ed25519 one is expected.
    let (var, _) = keys_problem("EdDSA", "rs256-private.pem", "rs256-public.pem");
    assert_eq!(var, "JWT_PRIVATE_KEY_FILE");

    let (var, text) = problem(Settings::from_vars([("JWT_ALGORITHM", "none")]));
    assert_eq!(var, "JWT_ALGORITHM");
    assert!(
        text.contains("expected HS256, RS256, ES256 or EdDSA"),
        "{text}"
    );
}

#[test]
fn production_with_a_key_pair_needs_no_jwt_secret() {
    let settings = Settings::from_vars([
        ("APP_ENV", "production".to_owned()),
        ("DATABASE_URL", "postgres://keel:pw@db:5432/keel".to_owned()),
        (
            "PASSWORD_PEPPER",
            "0123456789abcdef0123456789abcdef-pep".to_owned(),
        ),
        ("JWT_ALGORITHM", "EdDSA".to_owned()),
        ("JWT_PRIVATE_KEY_FILE", fixture("ed25519-private.pem")),
        ("JWT_PUBLIC_KEY_FILE", fixture("ed25519-public.pem")),
    ]);
    assert!(settings.is_ok(), "{:?}", settings.err());
}

/// Verified tokens are remembered (keel_core::auth::verified): a remembered token must
/// still expire on time, and nothing but its exact bytes may share its verdict.
#[test]
fn a_remembered_token_still_expires_and_its_neighbours_are_verified_afresh() {
    let keys = keys("EdDSA", "ed25519");
    let mut claims = keys
        .verify(&keys.issue(Uuid::now_v7(), Uuid::now_v7()).unwrap().token)
        .unwrap();
    // Near the edge of the 5 s leeway: accepted for about two more seconds.
    let now = chrono::Utc::now().timestamp();
    claims.exp = now - 3;
    let token = keys.sign(&claims).unwrap();
    for _ in 0..2 {
        assert_eq!(keys.verify(&token).unwrap(), claims);
    }
    // One character of the signature changed (its last one also carries padding bits,
    // so change the first), or the token cut short: refused, however often it comes.
    let signature_at = token.rfind('.').unwrap() + 1;
    let mut forged = token.clone();
    let first = &token[signature_at..=signature_at];
    forged.replace_range(
        signature_at..=signature_at,
        if first == "A" { "B" } else { "A" },
    );
    for bad in [
        forged.as_str(),
        &token[..token.len() - 1],
        &format!("{token}A"),
    ] {
        for _ in 0..2 {
            assert!(keys.verify(bad).is_err(), "{bad}");
        }
    }
    // A verified refresh-type token is never remembered as an access token.
    let refresh = keys
        .sign(&AccessClaims {
            typ: "refresh".to_owned(),
            exp: now + 600,
            ..claims.clone()
        })
        .unwrap();
    for _ in 0..2 {
        assert!(keys.verify(&refresh).is_err());
    }
    // Past exp + leeway the remembered token is refused, by every clone of the keys.
    while chrono::Utc::now().timestamp() <= now + 2 {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let clone = keys.clone();
    for keys in [&keys, &clone] {
        let err = keys.verify(&token).unwrap_err();
        assert!(err.to_string().contains("Expired"), "{err}");
    }
}
