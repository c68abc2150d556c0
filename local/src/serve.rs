//! The network side of the server: a listener on a random 127.0.0.1 port and the accept loop
//! that hands each connection to hyper. Kept apart from the S3 logic so that [`crate::LocalServer`]
//! can stop everything by aborting the one task [`spawn`] returns.

use std::io;
use std::net::Ipv4Addr;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use s3s::service::S3Service;
use tokio::runtime::Handle;
use tokio::task::JoinHandle;

use crate::error::context;

/// Binds 127.0.0.1 on a port the kernel picks and serves `service` there on `runtime`.
/// Returns the port and the accept loop's task.
pub(crate) fn spawn(runtime: &Handle, service: S3Service) -> io::Result<(u16, JoinHandle<()>)> {
    let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .map_err(|e| context(e, "cannot bind 127.0.0.1 for the local S3 server".into()))?;
    listener.set_nonblocking(true)?;
    let port = listener.local_addr()?.port();
    let listener = {
        let _guard = runtime.enter();
        tokio::net::TcpListener::from_std(listener)?
    };
    Ok((port, runtime.spawn(serve(listener, service))))
}

/// Accept loop: one task per connection, all owned by a JoinSet so that aborting this task
/// (see [`crate::LocalServer`]'s Drop) aborts them too.
async fn serve(listener: tokio::net::TcpListener, service: S3Service) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    let _ = stream.set_nodelay(true);
                    let service = service.clone();
                    connections.spawn(async move {
                        let builder = auto::Builder::new(TokioExecutor::new());
                        let result = builder.serve_connection(TokioIo::new(stream), service).await;
                        if let Err(e) = result {
                            log::debug!("local S3 server: connection closed with an error: {e}");
                        }
                    });
                }
                Err(e) => {
                    // E.g. EMFILE: back off instead of spinning.
                    log::warn!("local S3 server: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}
