//! A server state served over loopback HTTP, for the benchmarks that time requests: where it
//! listens, and how to stop it.

use std::net::SocketAddr;
use std::sync::Arc;

use custodian_server::AppState;

pub struct Listener {
    /// `http://` and the address the server bound.
    pub base: String,
    shutdown: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Listener {
    /// Serves `state` on `listen` (a loopback address; port 0 picks a free one) until
    /// [`Listener::stop`].
    pub async fn start(state: Arc<AppState>, listen: SocketAddr) -> Listener {
        let (bound_tx, bound_rx) = tokio::sync::oneshot::channel::<SocketAddr>();
        let (shutdown, shutdown_rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(custodian_server::serve(
            state,
            listen,
            None,
            async move {
                let _ = shutdown_rx.await;
            },
            move |addr| {
                let _ = bound_tx.send(addr);
            },
        ));
        let addr = bound_rx.await.expect("server bound");
        assert!(addr.ip().is_loopback(), "benchmarks stay on loopback");
        let task = tokio::spawn(async move {
            task.await.expect("server task").expect("server failed");
        });
        Listener {
            base: format!("http://{addr}"),
            shutdown,
            task,
        }
    }

    pub async fn stop(self) {
        let _ = self.shutdown.send(());
        self.task.await.expect("server stopped");
    }
}
