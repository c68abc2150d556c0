//! The daemon's side: a thread answering each connection to the status socket with a
//! JSON [`Report`], and (with `--metrics-addr`) the Prometheus endpoint.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use log::{debug, warn};

use super::{Report, socket_dir};

/// Makes a report on demand (the namespace's status at that moment).
pub(crate) type Reporter = Arc<dyn Fn() -> Report + Send + Sync>;

/// The status socket; removed when dropped (the daemon's end).
pub(crate) struct StatusSocket {
    path: PathBuf,
}

impl StatusSocket {
    pub(crate) fn start(reporter: Reporter) -> std::io::Result<Self> {
        let dir = socket_dir();
        std::fs::create_dir_all(&dir)?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
        let path = dir.join(format!("{}.sock", std::process::id()));
        // A socket of an earlier process with our pid (the pid was reused).
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        std::thread::Builder::new()
            .name("status".to_owned())
            .spawn(move || {
                for stream in listener.incoming() {
                    let Ok(mut stream) = stream else { continue };
                    let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
                    let answer = serde_json::to_vec(&reporter()).map(|mut json| {
                        json.push(b'\n');
                        json
                    });
                    match answer {
                        Ok(json) => {
                            if let Err(e) = stream.write_all(&json) {
                                debug!("status client went away: {e}");
                            }
                        }
                        Err(e) => warn!("could not encode the status: {e}"),
                    }
                }
            })?;
        Ok(Self { path })
    }
}

impl Drop for StatusSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Serves the Prometheus text format on `addr` (`GET /metrics`) from its own thread.
pub(crate) fn serve_metrics(addr: std::net::SocketAddr, reporter: Reporter) -> Result<(), String> {
    let server = tiny_http::Server::http(addr)
        .map_err(|e| format!("--metrics-addr {addr}: cannot listen: {e}"))?;
    std::thread::Builder::new()
        .name("metrics".to_owned())
        .spawn(move || {
            for request in server.incoming_requests() {
                let response = if request.url() == "/metrics" {
                    let body = super::metrics::encode(&reporter());
                    let content_type = tiny_http::Header::from_bytes(
                        &b"Content-Type"[..],
                        // prometheus-client writes the OpenMetrics text format.
                        &b"application/openmetrics-text; version=1.0.0; charset=utf-8"[..],
                    )
                    .ok();
                    let mut response = tiny_http::Response::from_string(body);
                    if let Some(header) = content_type {
                        response.add_header(header);
                    }
                    response
                } else {
                    tiny_http::Response::from_string("see /metrics\n").with_status_code(404)
                };
                if let Err(e) = request.respond(response) {
                    debug!("metrics client went away: {e}");
                }
            }
        })
        .map_err(|e| format!("cannot start the metrics thread: {e}"))?;
    Ok(())
}
