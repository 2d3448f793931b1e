//! The HTTP sender: signed POSTs with a 10 s timeout, no redirects, and a DNS resolver that
//! refuses any name resolving to a forbidden address, so the connection goes only where the
//! policy allows.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use plinth_domain::ports::{AttemptOutcome, Clock, OutboundWebhook, WebhookSender};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::{Host, Url};

use crate::guard::AddressPolicy;
use crate::signing::{EVENT_ID_HEADER, SIGNATURE_HEADER, signatures};

/// How long a receiver may take to answer.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Resolves names, then refuses the lot if any address is forbidden.
struct GuardedResolver {
    policy: AddressPolicy,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        Box::pin(async move {
            let addrs = policy
                .resolve(name.as_str(), 0)
                .await
                .map_err(|why| -> Box<dyn std::error::Error + Send + Sync> { why.into() })?;
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// The trace context headers (W3C `traceparent`, `tracestate`) of the current span, for the
/// delivery about to be sent: the composition root's, when it exports traces.
pub type TraceHeaders = fn() -> Vec<(String, String)>;

/// [`WebhookSender`] over HTTP(S).
#[derive(Clone)]
pub struct HttpSender {
    client: reqwest::Client,
    policy: AddressPolicy,
    /// The signature's timestamp.
    clock: Arc<dyn Clock>,
    /// Headers that carry the delivering job's trace to the receiver; none when not set.
    trace_headers: Option<TraceHeaders>,
}

impl std::fmt::Debug for HttpSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpSender").field("policy", &self.policy).finish_non_exhaustive()
    }
}

impl HttpSender {
    /// A sender that reaches only what `policy` allows, signing with `clock`'s time.
    pub fn new(policy: AddressPolicy, timeout: Option<Duration>, clock: Arc<dyn Clock>) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout.unwrap_or(TIMEOUT))
            .connect_timeout(Duration::from_secs(5))
            .no_proxy()
            .user_agent("plinth-webhooks/1")
            .dns_resolver(Arc::new(GuardedResolver { policy: policy.clone() }))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Self { client, policy, clock, trace_headers: None })
    }

    /// Sends the headers `headers` gives with each delivery (traces on: the job's context).
    #[must_use]
    pub fn with_trace_headers(mut self, headers: TraceHeaders) -> Self {
        self.trace_headers = Some(headers);
        self
    }

    /// IP-literal hosts skip DNS, so they are checked here.
    fn check_literal(&self, url: &Url) -> Result<(), String> {
        match url.host() {
            Some(Host::Ipv4(ip)) => self.policy.check(IpAddr::V4(ip)).map_err(|why| format!("the address is {why}")),
            Some(Host::Ipv6(ip)) => self.policy.check(IpAddr::V6(ip)).map_err(|why| format!("the address is {why}")),
            Some(Host::Domain(_)) => Ok(()),
            None => Err("the URL names no host".into()),
        }
    }
}

fn failure(error: impl Into<String>) -> AttemptOutcome {
    AttemptOutcome { delivered: false, status: None, error: Some(error.into()) }
}

/// A short, secret-free description of a transport error.
fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            if s.source().is_none() {
                return format!("could not connect: {s}");
            }
            source = s.source();
        }
        "could not connect".into()
    } else {
        "request failed".into()
    }
}

#[async_trait]
impl WebhookSender for HttpSender {
    async fn send(&self, request: &OutboundWebhook) -> AttemptOutcome {
        let url = match Url::parse(&request.url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => u,
            _ => return failure("not an http(s) URL"),
        };
        if let Err(why) = self.check_literal(&url) {
            return failure(format!("refused: {why}"));
        }
        let timestamp = self.clock.now().unix_timestamp();
        let mut post = self
            .client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, signatures(&request.secrets, timestamp, &request.body))
            .header(EVENT_ID_HEADER, request.event_id.to_string());
        for (name, value) in self.trace_headers.map(|headers| headers()).unwrap_or_default() {
            post = post.header(name, value);
        }
        let sent = post.body(request.body.clone()).send().await;
        match sent {
            Ok(res) => {
                let status = res.status().as_u16();
                let delivered = res.status().is_success();
                AttemptOutcome {
                    delivered,
                    status: Some(status),
                    error: (!delivered).then(|| format!("the receiver answered {status}")),
                }
            }
            Err(e) => failure(describe(&e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use bytes::Bytes;
    use plinth_domain::ids::EventId;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::TcpListener;

    use super::*;

    fn loopback_policy() -> AddressPolicy {
        AddressPolicy { allow_private: true, allowed: vec!["127.0.0.0/8".parse().unwrap_or_else(|_| unreachable!())] }
    }

    /// A one-shot receiver on 127.0.0.1 that answers `status` and returns what it read.
    async fn receiver(status: u16) -> (SocketAddr, tokio::task::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap_or_else(|e| panic!("{e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let task = tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap_or_else(|e| panic!("{e}"));
            let mut buf = vec![0u8; 8192];
            let n = sock.read(&mut buf).await.unwrap_or(0);
            let reply = format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\nlocation: http://127.0.0.1:1/\r\n\r\n");
            let _ = sock.write_all(reply.as_bytes()).await;
            String::from_utf8_lossy(&buf[..n]).into_owned()
        });
        (addr, task)
    }

    fn system() -> Arc<dyn Clock> {
        Arc::new(plinth_domain::clock::SystemClock::new())
    }

    fn webhook(url: String) -> OutboundWebhook {
        OutboundWebhook {
            url,
            body: Bytes::from_static(b"{\"id\":1}"),
            event_id: EventId::new(),
            secrets: vec![b"s3cret".to_vec()],
        }
    }

    #[tokio::test]
    async fn a_delivery_is_signed_and_names_its_event() {
        let (addr, seen) = receiver(204).await;
        // 2026-01-01T00:00:00Z.
        let clock = Arc::new(plinth_domain::clock::ManualClock::at(
            time::OffsetDateTime::from_unix_timestamp(1_767_225_600).unwrap_or_else(|e| panic!("{e}")),
        ));
        let sender = HttpSender::new(loopback_policy(), None, clock).unwrap_or_else(|e| panic!("{e}"));
        let hook = webhook(format!("http://{addr}/hook"));
        let outcome = sender.send(&hook).await;
        assert_eq!(outcome, AttemptOutcome { delivered: true, status: Some(204), error: None });
        let request = seen.await.unwrap_or_default().to_lowercase();
        assert!(request.starts_with("post /hook"), "{request}");
        assert!(request.contains(&format!("plinth-event-id: {}", hook.event_id)));
        assert!(request.contains("plinth-signature: t=1767225600,v1="), "signed at the clock's time: {request}");
        assert!(request.contains("content-type: application/json"));
    }

    #[tokio::test]
    async fn redirects_are_not_followed_and_count_as_failures() {
        let (addr, _) = receiver(302).await;
        let sender = HttpSender::new(loopback_policy(), None, system()).unwrap_or_else(|e| panic!("{e}"));
        let outcome = sender.send(&webhook(format!("http://{addr}/"))).await;
        assert_eq!(outcome.status, Some(302));
        assert!(!outcome.delivered);
    }

    #[tokio::test]
    async fn forbidden_targets_are_never_contacted() {
        let (addr, seen) = receiver(200).await;
        let strict = HttpSender::new(AddressPolicy::default(), None, system()).unwrap_or_else(|e| panic!("{e}"));
        let outcome = strict.send(&webhook(format!("http://{addr}/"))).await;
        assert!(!outcome.delivered && outcome.status.is_none(), "{outcome:?}");
        let by_name = strict.send(&webhook(format!("http://localhost:{}/", addr.port()))).await;
        assert!(!by_name.delivered && by_name.status.is_none(), "{by_name:?}");
        seen.abort();
    }

    #[tokio::test]
    async fn a_receiver_that_hangs_times_out() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap_or_else(|e| panic!("{e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let _hold = tokio::spawn(async move {
            let (_sock, _) = listener.accept().await.unwrap_or_else(|e| panic!("{e}"));
            tokio::time::sleep(Duration::from_secs(30)).await;
        });
        let sender = HttpSender::new(loopback_policy(), Some(Duration::from_millis(300)), system())
            .unwrap_or_else(|e| panic!("{e}"));
        let outcome = sender.send(&webhook(format!("http://{addr}/"))).await;
        assert_eq!(outcome.error.as_deref(), Some("timed out"));
    }
}
