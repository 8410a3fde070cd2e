//! The threads that compute argon2: a fixed few, each keeping its working memory between
//! hashes and running at a low CPU priority, so a burst of logins neither grows the
//! process nor delays the requests around it.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex, mpsc};

use argon2::Block;

/// Niceness of the hashing threads on Linux. Request handling runs at the default 0 and
/// preempts them as soon as it has work; hashing gets the CPU it leaves over, which is
/// most of a core on a machine that isn't saturated.
#[cfg(target_os = "linux")]
const NICENESS: i32 = 19;

type Job = Box<dyn FnOnce(&mut Memory) + Send>;

/// argon2's working memory (19 MiB at the OWASP parameters), allocated once per thread.
/// Allocating it per hash costs thousands of page faults each time, and glibc keeps the
/// freed blocks in per-thread arenas, which is how RSS grows by 19 MiB per thread that
/// ever hashed. It holds the last hash's intermediate state until the next one
/// overwrites it; that state reveals no more than the stored hash does.
#[derive(Debug, Default)]
pub(super) struct Memory(Vec<Block>);

impl Memory {
    /// `count` blocks: this thread's own when they fit, else (a stored hash made with a
    /// larger memory cost) a one-off allocation the caller drops after use.
    pub(super) fn blocks(&mut self, count: usize, kept: usize) -> Blocks<'_> {
        if count > kept {
            return Blocks::OneOff(vec![Block::default(); count]);
        }
        if self.0.len() < kept {
            self.0.resize(kept, Block::default());
        }
        Blocks::Kept(&mut self.0[..count])
    }
}

/// Memory lent to one hash.
pub(super) enum Blocks<'a> {
    Kept(&'a mut [Block]),
    OneOff(Vec<Block>),
}

impl AsMut<[Block]> for Blocks<'_> {
    fn as_mut(&mut self) -> &mut [Block] {
        match self {
            Self::Kept(blocks) => blocks,
            Self::OneOff(blocks) => blocks,
        }
    }
}

/// Hands jobs to the hashing threads; the threads exit when the pool is dropped.
#[derive(Debug)]
pub(super) struct HashPool {
    jobs: mpsc::Sender<Job>,
}

impl HashPool {
    /// Starts `threads` threads named `keel-argon2-N`.
    pub(super) fn start(threads: usize) -> std::io::Result<Self> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for n in 0..threads.max(1) {
            let queue = Arc::clone(&queue);
            std::thread::Builder::new()
                .name(format!("keel-argon2-{n}"))
                .spawn(move || serve(&queue))?;
        }
        Ok(Self { jobs })
    }

    /// Runs `work` on a hashing thread; `None` if it panicked.
    pub(super) async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Memory) -> T + Send + 'static,
    ) -> Option<T> {
        let (done, result) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |memory| {
            // The caller may have gone (request cancelled); the work is done either way.
            let _ = done.send(work(memory));
        });
        self.jobs.send(job).ok()?;
        result.await.ok()
    }
}

fn serve(queue: &Mutex<mpsc::Receiver<Job>>) {
    lower_priority();
    let mut memory = Memory::default();
    loop {
        let next = queue.lock().unwrap_or_else(|e| e.into_inner()).recv();
        let Ok(job) = next else {
            return; // the pool was dropped
        };
        if catch_unwind(AssertUnwindSafe(|| job(&mut memory))).is_err() {
            tracing::error!("a password hashing job panicked");
        }
    }
}

#[cfg(target_os = "linux")]
fn lower_priority() {
    // On Linux a thread id addresses one thread, not the whole process.
    let thread = rustix::thread::gettid();
    if let Err(err) = rustix::process::setpriority_process(Some(thread), NICENESS) {
        tracing::warn!(%err, "could not lower the priority of a password hashing thread");
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_priority() {}
