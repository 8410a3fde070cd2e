//! Password hashing: argon2id with OWASP parameters and a server-side pepper, computed on
//! a small pool of low-priority threads with bounded admission so hashing can't starve
//! the reactor or queue work nobody will wait for.

mod pool;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use argon2::password_hash::phc::{Output, ParamsString, PasswordHash, Salt};
use argon2::{ARGON2ID_IDENT, Algorithm, Argon2, Params, Version};
use keel_core::ApiError;
use keel_core::error::FieldError;
use tokio::sync::Semaphore;

use crate::tokens::random;
use pool::{HashPool, Memory};

/// OWASP's argon2id recommendation: 19 MiB, 2 passes, 1 lane.
const M_COST_KIB: u32 = 19 * 1024;
const T_COST: u32 = 2;
const P_COST: u32 = 1;
const SALT_LEN: usize = 16;
const OUTPUT_LEN: usize = 32;

/// Requests that may wait for a hashing slot, per slot; beyond that we answer 503 at
/// once instead of queueing work nobody will wait for.
const QUEUE_PER_SLOT: usize = 16;
/// Longest wait for a slot before giving up with 503.
const MAX_WAIT: Duration = Duration::from_secs(5);

pub const MIN_PASSWORD_CHARS: usize = 10;
pub const MAX_PASSWORD_CHARS: usize = 128;

/// The outcome of checking a password against a stored hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Mismatch,
    Match,
    /// Correct, but hashed with other parameters: store a fresh hash.
    MatchNeedsRehash,
}

/// Hashes and verifies passwords; cheap to clone.
#[derive(Clone)]
pub struct Passwords {
    pepper: Arc<[u8]>,
    params: Params,
    pool: Arc<HashPool>,
    /// One permit per hashing thread: a job is admitted only when a thread is free.
    slots: Arc<Semaphore>,
    waiting: Arc<AtomicUsize>,
    max_waiting: usize,
    /// A hash of a random password, verified against when the account doesn't exist so
    /// an unknown email costs the same time as a wrong password.
    dummy: Arc<str>,
}

impl std::fmt::Debug for Passwords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Passwords")
            .field("params", &self.params)
            .field("slots", &self.slots.available_permits())
            .finish_non_exhaustive()
    }
}

impl Passwords {
    /// Starts `concurrency` hashing threads and computes the dummy hash on them.
    pub async fn new(pepper: &str, concurrency: usize) -> Result<Self, ApiError> {
        let params = Params::new(M_COST_KIB, T_COST, P_COST, Some(OUTPUT_LEN))
            .map_err(ApiError::internal)?;
        let concurrency = concurrency.max(1);
        let pool = HashPool::start(concurrency).map_err(|e| {
            ApiError::internal(format!("cannot start password hashing threads: {e}"))
        })?;
        let mut passwords = Self {
            pepper: pepper.as_bytes().into(),
            params,
            pool: Arc::new(pool),
            slots: Arc::new(Semaphore::new(concurrency)),
            waiting: Arc::new(AtomicUsize::new(0)),
            max_waiting: concurrency * QUEUE_PER_SLOT,
            dummy: "".into(),
        };
        let dummy_password = crate::tokens::encode(&random::<32>()?);
        passwords.dummy = passwords.hash(dummy_password).await?.into();
        Ok(passwords)
    }

    /// The PHC string (`$argon2id$v=19$m=19456,t=2,p=1$...`) of `password`.
    pub async fn hash(&self, password: String) -> Result<String, ApiError> {
        let salt = random::<SALT_LEN>()?;
        let (pepper, params) = (Arc::clone(&self.pepper), self.params.clone());
        self.run(move |memory| {
            let kept = params.block_count();
            let argon = argon2(&pepper, Algorithm::Argon2id, Version::V0x13, &params)?;
            let output = compute(&argon, password.as_bytes(), &salt, memory, kept)?;
            let phc = PasswordHash {
                algorithm: ARGON2ID_IDENT,
                version: Some(Version::V0x13.into()),
                params: ParamsString::try_from(&params).map_err(hash_error)?,
                salt: Some(Salt::new(&salt).map_err(hash_error)?),
                hash: Some(output),
            };
            Ok(phc.to_string())
        })
        .await
    }

    /// Checks `password` against `stored`, or against the dummy hash when there is no
    /// account, which always ends in [`Verdict::Mismatch`] after the same work.
    pub async fn verify(
        &self,
        password: String,
        stored: Option<String>,
    ) -> Result<Verdict, ApiError> {
        let known = stored.is_some();
        let stored = stored.unwrap_or_else(|| self.dummy.to_string());
        let (pepper, current) = (Arc::clone(&self.pepper), self.params.clone());
        self.run(move |memory| {
            let unreadable = |e: &dyn std::fmt::Display| {
                ApiError::internal(format!("stored password hash is unreadable: {e}"))
            };
            let parsed = PasswordHash::new(&stored).map_err(|e| unreadable(&e))?;
            let (Some(salt), Some(expected)) = (&parsed.salt, &parsed.hash) else {
                return Err(unreadable(&"no salt or hash"));
            };
            let algorithm =
                Algorithm::try_from(parsed.algorithm.as_str()).map_err(|e| unreadable(&e))?;
            let version = Version::try_from(parsed.version.unwrap_or(Version::V0x13.into()))
                .map_err(|e| unreadable(&e))?;
            let params = Params::try_from(&parsed).map_err(|e| unreadable(&e))?;
            let argon = argon2(&pepper, algorithm, version, &params)?;
            let output = compute(
                &argon,
                password.as_bytes(),
                salt.as_ref(),
                memory,
                current.block_count(),
            )?;
            // `Output` compares in constant time.
            let matches = known && output == *expected;
            Ok(match (matches, outdated(&parsed, &current)) {
                (false, _) => Verdict::Mismatch,
                (true, false) => Verdict::Match,
                (true, true) => Verdict::MatchNeedsRehash,
            })
        })
        .await
    }

    /// Runs `work` on a hashing thread once one is free.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Memory) -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let permit = {
            let _waiting =
                Waiting::enter(&self.waiting, self.max_waiting).ok_or_else(overloaded)?;
            tokio::time::timeout(MAX_WAIT, Arc::clone(&self.slots).acquire_owned())
                .await
                .map_err(|_| overloaded())?
                .map_err(ApiError::internal)?
        };
        // The permit travels with the job: if the request is cancelled, the slot stays
        // taken until the thread has actually finished.
        self.pool
            .run(move |memory| {
                let _permit = permit;
                work(memory)
            })
            .await
            .ok_or_else(|| ApiError::internal("password hashing failed"))?
    }
}

fn argon2<'k>(
    pepper: &'k [u8],
    algorithm: Algorithm,
    version: Version,
    params: &Params,
) -> Result<Argon2<'k>, ApiError> {
    Argon2::new_with_secret(pepper, algorithm, version, params.clone()).map_err(hash_error)
}

/// The hash of `password` in this thread's memory (`kept_blocks` is what the thread
/// keeps between hashes).
fn compute(
    argon: &Argon2<'_>,
    password: &[u8],
    salt: &[u8],
    memory: &mut Memory,
    kept_blocks: usize,
) -> Result<Output, ApiError> {
    let params = argon.params();
    let len = params.output_len().unwrap_or(OUTPUT_LEN);
    let mut out = [0u8; Output::MAX_LENGTH];
    let out = out
        .get_mut(..len)
        .ok_or_else(|| hash_error("output too long"))?;
    let blocks = memory.blocks(params.block_count(), kept_blocks);
    argon
        .hash_password_into_with_memory(password, salt, out, blocks)
        .map_err(hash_error)?;
    Output::new(out).map_err(hash_error)
}

fn hash_error(err: impl std::fmt::Display) -> ApiError {
    ApiError::internal(format!("password hashing failed: {err}"))
}

/// Whether a stored hash was made with other parameters than the current ones.
fn outdated(hash: &PasswordHash, current: &Params) -> bool {
    hash.algorithm != ARGON2ID_IDENT
        || hash.version != Some(Version::V0x13.into())
        || Params::try_from(hash).map_or(true, |p| {
            (p.m_cost(), p.t_cost(), p.p_cost())
                != (current.m_cost(), current.t_cost(), current.p_cost())
        })
}

fn overloaded() -> ApiError {
    ApiError::Unavailable {
        detail: "Too many password checks are in progress; retry shortly.".to_owned(),
        retry_after: Some(Duration::from_secs(1)),
    }
}

/// Counts a request waiting for a slot; refuses entry when the queue is full.
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn enter(counter: &'a AtomicUsize, max: usize) -> Option<Self> {
        let before = counter.fetch_add(1, Ordering::AcqRel);
        let guard = Self(counter);
        (before < max).then_some(guard)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The password policy: 10–128 characters, not the email address. Returns the rule
/// broken, as a 422 field error on `field`.
pub fn check_policy(field: &str, password: &str, email: &str) -> Result<(), FieldError> {
    let chars = password.chars().count();
    let problem = if chars < MIN_PASSWORD_CHARS {
        Some(format!("must be at least {MIN_PASSWORD_CHARS} characters"))
    } else if chars > MAX_PASSWORD_CHARS {
        Some(format!("must be at most {MAX_PASSWORD_CHARS} characters"))
    } else if password.trim().eq_ignore_ascii_case(email.trim()) {
        Some("must not be the email address".to_owned())
    } else if password.chars().all(char::is_whitespace) {
        Some("must not be only whitespace".to_owned())
    } else {
        None
    };
    match problem {
        Some(message) => Err(FieldError::new(field, message)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::PasswordHasher;

    #[test]
    fn policy_names_the_broken_rule() {
        let email = "ada@example.com";
        assert!(check_policy("password", "correct horse battery", email).is_ok());
        let short = check_policy("password", "short", email).unwrap_err();
        assert_eq!(short.field, "password");
        assert!(short.message.contains("at least 10"), "{}", short.message);
        assert!(check_policy("password", &"x".repeat(129), email).is_err());
        assert!(check_policy("password", "ADA@example.com", email).is_err());
        assert!(check_policy("password", &" ".repeat(12), email).is_err());
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn hashes_verify_and_flag_outdated_parameters() {
        let passwords = Passwords::new("pepper-pepper-pepper", 1).await.unwrap();
        let hash = passwords
            .hash("correct horse battery".into())
            .await
            .unwrap();
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        let verdict = |pw: &str, stored: Option<&str>| {
            let p = passwords.clone();
            let (pw, stored) = (pw.to_owned(), stored.map(str::to_owned));
            async move { p.verify(pw, stored).await.unwrap() }
        };
        // Another pepper can't verify our hashes.
        let other = Passwords::new("another-pepper-value", 1).await.unwrap();
        let stolen = other.verify("correct horse battery".into(), Some(hash.clone()));
        assert_eq!(stolen.await.unwrap(), Verdict::Mismatch);

        // Hashes made by the argon2 crate's own PHC encoding (how earlier hashes were
        // stored): with our parameters they agree; another variant, a larger memory cost
        // than the threads keep, or weaker parameters still verify, and ask to be redone.
        let standard = |algorithm, params| {
            Argon2::new_with_secret(b"pepper-pepper-pepper", algorithm, Version::V0x13, params)
                .unwrap()
                .hash_password(b"correct horse battery")
                .unwrap()
                .to_string()
        };
        let current = standard(Algorithm::Argon2id, passwords.params.clone());
        let argon2i = standard(Algorithm::Argon2i, passwords.params.clone());
        let larger = standard(
            Algorithm::Argon2id,
            Params::new(32 * 1024, 1, 1, None).unwrap(),
        );
        let weak = standard(
            Algorithm::Argon2id,
            Params::new(8 * 1024, 1, 1, None).unwrap(),
        );

        for (password, stored, expected) in [
            ("correct horse battery", Some(&hash), Verdict::Match),
            ("wrong horse battery", Some(&hash), Verdict::Mismatch),
            ("anything", None, Verdict::Mismatch),
            ("correct horse battery", Some(&current), Verdict::Match),
            (
                "correct horse battery",
                Some(&argon2i),
                Verdict::MatchNeedsRehash,
            ),
            (
                "correct horse battery",
                Some(&larger),
                Verdict::MatchNeedsRehash,
            ),
            ("wrong horse battery", Some(&larger), Verdict::Mismatch),
            (
                "correct horse battery",
                Some(&weak),
                Verdict::MatchNeedsRehash,
            ),
        ] {
            let stored = stored.map(String::as_str);
            let got = verdict(password, stored).await;
            assert_eq!(got, expected, "{password} against {stored:?}");
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_full_queue_answers_503_instead_of_waiting() {
        let passwords = Passwords::new("pepper-pepper-pepper", 1).await.unwrap();
        // Hold the only slot and fill the queue.
        let _slot = Arc::clone(&passwords.slots).acquire_owned().await.unwrap();
        passwords
            .waiting
            .store(passwords.max_waiting, Ordering::SeqCst);
        let err = passwords
            .hash("correct horse battery".into())
            .await
            .unwrap_err();
        assert_eq!(err.status(), 503);
        assert!(matches!(
            err,
            ApiError::Unavailable {
                retry_after: Some(_),
                ..
            }
        ));
    }

    /// Hashing runs on its own low-priority threads, so request handling preempts it.
    #[cfg(target_os = "linux")]
    #[tokio::test(flavor = "multi_thread")]
    async fn hashing_threads_run_at_low_priority() {
        let passwords = Passwords::new("pepper-pepper-pepper", 2).await.unwrap();
        passwords
            .hash("correct horse battery".into())
            .await
            .unwrap();
        let mut niceness = Vec::new();
        for task in std::fs::read_dir("/proc/self/task").unwrap() {
            let stat = std::fs::read_to_string(task.unwrap().path().join("stat")).unwrap();
            // pid (comm) state ... : field 19 is the nice value, counting from pid as 1.
            let (comm, rest) = stat.split_once(") ").unwrap();
            if comm.ends_with("keel-argon2-0") || comm.ends_with("keel-argon2-1") {
                niceness.push(rest.split(' ').nth(16).unwrap().to_owned());
            }
        }
        assert_eq!(niceness, ["19", "19"]);
    }
}
