//! A TCP proxy in front of a real service that a test can cut or stall, to see what
//! keel does when Redis (or anything else) goes away mid-run and comes back.

use std::net::SocketAddr;

use tokio::io::copy_bidirectional;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What the proxy does with connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// Forwards bytes both ways.
    Up,
    /// Closes every connection and refuses new ones (accepts, then drops them).
    Cut,
    /// Keeps connections open but forwards nothing: a service that hangs.
    Stalled,
}

#[derive(Debug)]
pub struct Proxy {
    addr: SocketAddr,
    link: watch::Sender<Link>,
}

impl Proxy {
    /// Listens on a free local port and forwards to `target`.
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("the proxy binds a local port");
        let addr = listener.local_addr().expect("a bound address");
        let (link, _) = watch::channel(Link::Up);
        let links = link.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let mut state = links.subscribe();
                if *state.borrow() == Link::Cut {
                    continue; // dropped: the client sees the connection close
                }
                tokio::spawn(async move {
                    let Ok(mut upstream) = TcpStream::connect(target).await else {
                        return;
                    };
                    let mut client = client;
                    loop {
                        let now = *state.borrow_and_update();
                        match now {
                            Link::Cut => return,
                            Link::Stalled => {
                                if state.changed().await.is_err() {
                                    return;
                                }
                            }
                            Link::Up => {
                                tokio::select! {
                                    _ = copy_bidirectional(&mut client, &mut upstream) => return,
                                    changed = state.changed() => if changed.is_err() { return },
                                }
                            }
                        }
                    }
                });
            }
        });
        Self { addr, link }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn set(&self, link: Link) {
        self.link.send_replace(link);
    }
}
