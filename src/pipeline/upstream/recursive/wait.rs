//! `Bounded`: the recursor's connections to authoritative servers, each exchange cut after
//! a wait of our own. hickory-resolver 0.26's recursor waits up to 5 s for one server (a
//! fixed `ResolverOpts` default it does not expose), and its name-server pool gives up
//! after 5 s in all: a zone whose first-tried server is dead was never resolved, its live
//! servers never asked (part of hickory-dns #3373). With each exchange ending after
//! `upstream.timeout_ms` as a timeout, the pool moves on to the next server (and ranks the
//! dead one last for the queries that follow).

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::time::Duration;

use futures_util::stream::{self, BoxStream, StreamExt};
use hickory_resolver::config::ConnectionConfig;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::xfer::DnsExchange;
use hickory_resolver::net::{DnsHandle, NetError};
use hickory_resolver::proto::op::{DnsRequest, DnsResponse};
use hickory_resolver::{ConnectionProvider, PoolContext};

/// Tokio connections whose exchanges (and setup) end after `wait`.
#[derive(Clone)]
pub(super) struct Bounded {
    inner: TokioRuntimeProvider,
    wait: Duration,
}

impl Bounded {
    /// Connections waiting at most `wait` for one server.
    pub(super) fn new(wait: Duration) -> Self {
        Self {
            inner: TokioRuntimeProvider::default(),
            wait,
        }
    }
}

/// One connection of [`Bounded`].
#[derive(Clone)]
pub(super) struct Conn {
    inner: DnsExchange<TokioRuntimeProvider>,
    wait: Duration,
}

impl ConnectionProvider for Bounded {
    type Conn = Conn;
    type FutureConn = Pin<Box<dyn Future<Output = Result<Conn, NetError>> + Send + 'static>>;
    type RuntimeProvider = TokioRuntimeProvider;

    fn new_connection(
        &self,
        ip: IpAddr,
        config: &ConnectionConfig,
        cx: &PoolContext,
    ) -> Result<Self::FutureConn, NetError> {
        let opening = self.inner.new_connection(ip, config, cx)?;
        let wait = self.wait;
        Ok(Box::pin(async move {
            match tokio::time::timeout(wait, opening).await {
                Ok(conn) => Ok(Conn { inner: conn?, wait }),
                Err(_) => Err(NetError::Timeout),
            }
        }))
    }

    fn runtime_provider(&self) -> &TokioRuntimeProvider {
        &self.inner
    }
}

impl DnsHandle for Conn {
    type Response = BoxStream<'static, Result<DnsResponse, NetError>>;
    type Runtime = TokioRuntimeProvider;

    fn is_verifying_dnssec(&self) -> bool {
        self.inner.is_verifying_dnssec()
    }

    fn is_using_edns(&self) -> bool {
        self.inner.is_using_edns()
    }

    fn send(&self, request: DnsRequest) -> Self::Response {
        let mut answers = self.inner.send(request);
        let wait = self.wait;
        // The recursor reads the first answer only.
        stream::once(async move {
            match tokio::time::timeout(wait, answers.next()).await {
                Ok(Some(got)) => got,
                Ok(None) => Err(NetError::from("no answer")),
                Err(_) => Err(NetError::Timeout),
            }
        })
        .boxed()
    }
}
