//! The fetcher against real HTTP servers on loopback: conditional requests,
//! decoding, size and time limits, redirects and the SSRF guard.
//!
//! The servers are raw tokio listeners writing HTTP/1.1 by hand, so a test
//! controls every byte: lying lengths, stalls, bombs. Loopback is not public,
//! so the test configurations allowlist it (by network, or by name through an
//! injected lookup) except where the refusal is the point.

use std::future::Future;
use std::io::{self, Write};
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use pricewatch::domain::Validators;
use pricewatch::price::fetch::guard::{Lookup, Refusal};
use pricewatch::price::fetch::{FetchConfig, FetchError, Fetched, Fetcher, Page};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use url::Url;

/// One request as the server saw it.
#[derive(Clone, Debug)]
struct Seen {
    target: String,
    headers: Vec<(String, String)>,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What the server does with one connection after reading the request.
enum Reply {
    /// These bytes, then close.
    Bytes(Vec<u8>),
    /// These bytes, then nothing for `wait`, then close.
    Stall { bytes: Vec<u8>, wait: Duration },
}

type Handler = dyn Fn(&Seen, u16) -> Reply + Send + Sync;

/// A scripted HTTP/1.1 server on 127.0.0.1, one request per connection.
struct Server {
    port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    async fn start(handler: impl Fn(&Seen, u16) -> Reply + Send + Sync + 'static) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let handler: Arc<Handler> = Arc::new(handler);
        let record = seen.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else {
                    return;
                };
                let (record, handler) = (record.clone(), handler.clone());
                tokio::spawn(async move {
                    let Some(request) = read_head(&mut socket).await else {
                        return;
                    };
                    record.lock().unwrap().push(request.clone());
                    // Errors are expected: the client hangs up on bodies it refuses.
                    match handler(&request, port) {
                        Reply::Bytes(bytes) => {
                            let _ = socket.write_all(&bytes).await;
                        }
                        Reply::Stall { bytes, wait } => {
                            let _ = socket.write_all(&bytes).await;
                            let _ = socket.flush().await;
                            tokio::time::sleep(wait).await;
                        }
                    }
                    let _ = socket.shutdown().await;
                });
            }
        });
        Server { port, seen, task }
    }

    fn url(&self, path: &str) -> Url {
        Url::parse(&format!("http://127.0.0.1:{}{path}", self.port)).unwrap()
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

async fn read_head(socket: &mut tokio::net::TcpStream) -> Option<Seen> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = socket.read(&mut byte).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&byte[..n]);
    }
    let text = String::from_utf8_lossy(&buf).into_owned();
    let mut lines = text.split("\r\n");
    let target = lines.next()?.split(' ').nth(1)?.to_owned();
    let headers = lines
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Some(Seen { target, headers })
}

/// A complete response with a Content-Length.
fn response(status: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = head(status, headers);
    out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
    out.extend_from_slice(body);
    out
}

/// A chunked response of `count` chunks of `chunk`.
fn chunked(chunk: &[u8], count: usize) -> Vec<u8> {
    let mut out = head("200 OK", &[("Transfer-Encoding", "chunked")]);
    out.extend_from_slice(b"\r\n");
    for _ in 0..count {
        out.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        out.extend_from_slice(chunk);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

fn head(status: &str, headers: &[(&str, &str)]) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status}\r\nConnection: close\r\n");
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.into_bytes()
}

fn ok(body: &str) -> Reply {
    Reply::Bytes(response(
        "200 OK",
        &[("Content-Type", "text/html")],
        body.as_bytes(),
    ))
}

/// Loopback allowed by network, generous limits; tests change what they test.
fn config(edit: impl FnOnce(&mut FetchConfig)) -> FetchConfig {
    let mut cfg = FetchConfig {
        allow_networks: vec!["127.0.0.0/8".to_owned()],
        connect_timeout: Duration::from_secs(2),
        timeout: Duration::from_secs(5),
        ..FetchConfig::default()
    };
    edit(&mut cfg);
    cfg
}

/// Names resolved from a fixed table instead of DNS.
struct Names(Vec<(&'static str, IpAddr)>);

impl Lookup for Names {
    fn lookup(
        &self,
        host: String,
    ) -> Pin<Box<dyn Future<Output = io::Result<Vec<IpAddr>>> + Send>> {
        let found: Vec<IpAddr> = self
            .0
            .iter()
            .filter(|(name, _)| *name == host)
            .map(|(_, ip)| *ip)
            .collect();
        Box::pin(async move { Ok(found) })
    }
}

fn fetcher_with_names(cfg: &FetchConfig, names: &[(&'static str, &str)]) -> Fetcher {
    let names = names
        .iter()
        .map(|(name, ip)| (*name, ip.parse().unwrap()))
        .collect();
    Fetcher::with_lookup(cfg, Arc::new(Names(names))).unwrap()
}

async fn page(fetcher: &Fetcher, url: &Url) -> Page {
    match fetcher.fetch(url, &Validators::default()).await {
        Ok(Fetched::Page(page)) => page,
        other => panic!("{url}: {other:?}"),
    }
}

async fn fetch_err(fetcher: &Fetcher, url: &Url) -> FetchError {
    match fetcher.fetch(url, &Validators::default()).await {
        Err(err) => err,
        Ok(other) => panic!("{url}: expected an error, got {other:?}"),
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

#[tokio::test]
async fn conditional_fetch_gets_not_modified() {
    const ETAG: &str = "\"v1\"";
    const MODIFIED: &str = "Wed, 21 Oct 2015 07:28:00 GMT";
    let server = Server::start(|req, _| {
        if req.header("If-None-Match") == Some(ETAG) {
            return Reply::Bytes(response("304 Not Modified", &[("ETag", "\"v2\"")], b""));
        }
        Reply::Bytes(response(
            "200 OK",
            &[
                ("Content-Type", "text/html; charset=Shift_JIS"),
                ("ETag", ETAG),
                ("Last-Modified", MODIFIED),
            ],
            b"<p>1,980</p>",
        ))
    })
    .await;
    let fetcher = Fetcher::new(&config(|_| {})).unwrap();
    let url = server.url("/p/1?x=1");
    let first = page(&fetcher, &url).await;
    assert_eq!(first.status, 200);
    assert_eq!(first.final_url, url);
    assert_eq!(&first.body[..], b"<p>1,980</p>");
    assert_eq!(
        first.content_type.as_deref(),
        Some("text/html; charset=Shift_JIS")
    );
    let expected = Validators {
        etag: Some(ETAG.to_owned()),
        last_modified: Some(MODIFIED.to_owned()),
    };
    assert_eq!(first.validators, expected);
    assert_eq!(server.seen()[0].header("If-None-Match"), None);

    let second = fetcher.fetch(&url, &first.validators).await.unwrap();
    // The 304 brought a new ETag and kept the Last-Modified it did not repeat.
    assert_eq!(
        second,
        Fetched::NotModified {
            validators: Validators {
                etag: Some("\"v2\"".to_owned()),
                last_modified: Some(MODIFIED.to_owned()),
            }
        }
    );
    let seen = server.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1].target, "/p/1?x=1");
    assert_eq!(seen[1].header("If-None-Match"), Some(ETAG));
    assert_eq!(seen[1].header("If-Modified-Since"), Some(MODIFIED));
}

#[tokio::test]
async fn identifying_headers_are_sent() {
    let server = Server::start(|_, _| ok("hi")).await;
    let cfg = config(|c| {
        c.user_agent = "pricewatch-test/9 (+https://example.test/bot)".to_owned();
        c.accept_language = "fr-CH,fr;q=0.9".to_owned();
    });
    let fetcher = Fetcher::new(&cfg).unwrap();
    page(&fetcher, &server.url("/")).await;
    let seen = &server.seen()[0];
    assert_eq!(
        seen.header("User-Agent"),
        Some("pricewatch-test/9 (+https://example.test/bot)")
    );
    assert_eq!(seen.header("Accept-Language"), Some("fr-CH,fr;q=0.9"));
    assert_eq!(
        seen.header("Accept"),
        Some("text/html,application/xhtml+xml,application/json;q=0.9,*/*;q=0.8")
    );
    let encodings = seen.header("Accept-Encoding").unwrap_or_default();
    for coding in ["gzip", "br", "deflate"] {
        assert!(encodings.contains(coding), "{encodings}");
    }

    let without = Fetcher::new(&config(|c| c.accept_language.clear())).unwrap();
    page(&without, &server.url("/")).await;
    assert_eq!(server.seen()[1].header("Accept-Language"), None);
}

#[tokio::test]
async fn compressed_bodies_are_decoded() {
    let html = "<html><span itemprop=price>12,50 €</span></html>".repeat(50);
    let gz = gzip(html.as_bytes());
    let mut br = Vec::new();
    brotli::BrotliCompress(&mut html.as_bytes(), &mut br, &Default::default()).unwrap();
    let mut deflate = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    deflate.write_all(html.as_bytes()).unwrap();
    let deflate = deflate.finish().unwrap();
    assert!(gz.len() < html.len() && br.len() < html.len());

    let server = Server::start(move |req, _| {
        let (coding, body) = match req.target.as_str() {
            "/gzip" => ("gzip", &gz),
            "/br" => ("br", &br),
            _ => ("deflate", &deflate),
        };
        Reply::Bytes(response(
            "200 OK",
            &[
                ("Content-Type", "text/html; charset=utf-8"),
                ("Content-Encoding", coding),
            ],
            body,
        ))
    })
    .await;
    let fetcher = Fetcher::new(&config(|_| {})).unwrap();
    for path in ["/gzip", "/br", "/deflate"] {
        let page = page(&fetcher, &server.url(path)).await;
        assert_eq!(
            std::str::from_utf8(&page.body).unwrap(),
            html,
            "{path} not decoded"
        );
    }
}

#[tokio::test]
async fn bodies_over_the_limit_are_too_large() {
    let limit = 64 * 1024;
    let server = Server::start(move |req, _| match req.target.as_str() {
        // Announced too large: refused before the body, which never comes.
        "/announced" => Reply::Stall {
            bytes: {
                let mut out = head("200 OK", &[("Content-Length", "10000000")]);
                out.extend_from_slice(b"\r\n<html>");
                out
            },
            wait: Duration::from_secs(10),
        },
        "/chunked" => Reply::Bytes(chunked(&[b'x'; 4096], 17)),
        "/exact" => Reply::Bytes(chunked(&[b'y'; 4096], 16)),
        _ => Reply::Bytes(response("200 OK", &[], &vec![b'z'; limit as usize + 1])),
    })
    .await;
    let fetcher = Fetcher::new(&config(|c| c.max_body = limit)).unwrap();

    let started = Instant::now();
    let err = fetch_err(&fetcher, &server.url("/announced")).await;
    assert!(
        matches!(err, FetchError::TooLarge { limit: 65536 }),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(err.to_string(), "the page is larger than 64 KiB");
    assert!(!err.is_transient());

    for path in ["/chunked", "/one-byte-over"] {
        let err = fetch_err(&fetcher, &server.url(path)).await;
        assert!(
            matches!(err, FetchError::TooLarge { .. }),
            "{path}: {err:?}"
        );
    }
    // Exactly the limit is accepted.
    let page = page(&fetcher, &server.url("/exact")).await;
    assert_eq!(page.body.len() as u64, limit);
}

#[tokio::test]
async fn a_gzip_bomb_is_too_large() {
    let bomb = gzip(&vec![0u8; 8 * 1024 * 1024]);
    assert!(bomb.len() < 64 * 1024, "{}", bomb.len());
    let server = Server::start(move |_, _| {
        Reply::Bytes(response(
            "200 OK",
            &[("Content-Type", "text/html"), ("Content-Encoding", "gzip")],
            &bomb,
        ))
    })
    .await;
    let fetcher = Fetcher::new(&config(|c| c.max_body = 1024 * 1024)).unwrap();
    let err = fetch_err(&fetcher, &server.url("/")).await;
    assert!(
        matches!(err, FetchError::TooLarge { limit: 1_048_576 }),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_slow_server_times_out() {
    let server = Server::start(|req, _| {
        let bytes = match req.target.as_str() {
            // Headers at once, then the body never finishes.
            "/slow-body" => {
                let mut out = head("200 OK", &[("Content-Length", "100")]);
                out.extend_from_slice(b"\r\n<html>");
                out
            }
            // Nothing at all.
            _ => Vec::new(),
        };
        Reply::Stall {
            bytes,
            wait: Duration::from_secs(10),
        }
    })
    .await;
    let fetcher = Fetcher::new(&config(|c| c.timeout = Duration::from_millis(300))).unwrap();
    for path in ["/slow-body", "/silent"] {
        let started = Instant::now();
        let err = fetch_err(&fetcher, &server.url(path)).await;
        assert!(matches!(err, FetchError::Timeout), "{path}: {err:?}");
        assert!(err.is_transient());
        let elapsed = started.elapsed();
        assert!(
            elapsed >= Duration::from_millis(250) && elapsed < Duration::from_secs(3),
            "{path}: {elapsed:?}"
        );
    }
}

/// `/r/N` redirects to `/r/N-1`; `/r/0` is the page.
fn countdown(req: &Seen, port: u16) -> Reply {
    let n: u32 = req
        .target
        .strip_prefix("/r/")
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    if n == 0 {
        return ok("landed");
    }
    // Absolute and relative locations alternate; both are followed.
    let location = if n % 2 == 0 {
        format!("http://127.0.0.1:{port}/r/{}", n - 1)
    } else {
        format!("/r/{}", n - 1)
    };
    Reply::Bytes(response("302 Found", &[("Location", &location)], b""))
}

#[tokio::test]
async fn redirects_are_followed_up_to_the_limit() {
    let server = Server::start(countdown).await;
    let fetcher = Fetcher::new(&config(|_| {})).unwrap();

    let landed = page(&fetcher, &server.url("/r/5")).await;
    assert_eq!(landed.final_url, server.url("/r/0"));
    assert_eq!(&landed.body[..], b"landed");
    assert_eq!(server.seen().len(), 6);

    let err = fetch_err(&fetcher, &server.url("/r/6")).await;
    assert!(
        matches!(err, FetchError::TooManyRedirects { limit: 5 }),
        "{err:?}"
    );
    assert_eq!(err.to_string(), "the page redirected more than 5 times");
    // The sixth redirect was not followed: /r/6 to /r/1 only.
    let targets: Vec<String> = server.seen()[6..]
        .iter()
        .map(|s| s.target.clone())
        .collect();
    assert_eq!(targets, ["/r/6", "/r/5", "/r/4", "/r/3", "/r/2", "/r/1"]);

    let none = Fetcher::new(&config(|c| c.max_redirects = 0)).unwrap();
    let err = fetch_err(&none, &server.url("/r/1")).await;
    assert!(
        matches!(err, FetchError::TooManyRedirects { limit: 0 }),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_redirect_to_a_loopback_literal_is_refused_when_only_the_name_is_allowed() {
    let server = Server::start(|req, port| match req.target.as_str() {
        "/ok" => ok("fine"),
        _ => {
            let location = format!("http://127.0.0.1:{port}/ok");
            Reply::Bytes(response("302 Found", &[("Location", &location)], b""))
        }
    })
    .await;
    let cfg = config(|c| {
        c.allow_networks.clear();
        c.allow_hosts = vec!["shop.test".to_owned()];
    });
    let fetcher = fetcher_with_names(&cfg, &[("shop.test", "127.0.0.1")]);
    let by_name =
        |path: &str| Url::parse(&format!("http://shop.test:{}{path}", server.port)).unwrap();

    // The allowlisted name reaches loopback, on any port.
    let fine = page(&fetcher, &by_name("/ok")).await;
    assert_eq!(&fine.body[..], b"fine");

    let err = fetch_err(&fetcher, &by_name("/moved")).await;
    let expected_url = format!("http://127.0.0.1:{}/ok", server.port);
    match &err {
        FetchError::Refused(Refusal::Redirect { url, reason }) => {
            assert_eq!(url, &expected_url);
            assert!(
                matches!(
                    **reason,
                    Refusal::Address {
                        what: "a loopback address",
                        ..
                    }
                ),
                "{reason:?}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        err.to_string(),
        format!(
            "redirected to {expected_url}: 127.0.0.1 is a loopback address; \
             pricewatch only fetches public addresses"
        )
    );
    assert!(!err.is_transient());
    // The literal was never requested: /ok once by name, /moved once.
    let targets: Vec<String> = server.seen().iter().map(|s| s.target.clone()).collect();
    assert_eq!(targets, ["/ok", "/moved"]);
    // And the literal itself is refused up front.
    let err = fetch_err(&fetcher, &server.url("/ok")).await;
    assert!(
        matches!(err, FetchError::Refused(Refusal::Address { .. })),
        "{err:?}"
    );
    assert_eq!(server.seen().len(), 2);
}

#[tokio::test]
async fn a_redirect_to_the_metadata_address_is_refused() {
    let server = Server::start(|_, _| {
        Reply::Bytes(response(
            "301 Moved Permanently",
            &[("Location", "http://169.254.169.254/latest/meta-data/")],
            b"",
        ))
    })
    .await;
    let fetcher = Fetcher::new(&config(|_| {})).unwrap();
    let err = fetch_err(&fetcher, &server.url("/p/1")).await;
    assert!(
        matches!(&err, FetchError::Refused(Refusal::Redirect { .. })),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "redirected to http://169.254.169.254/latest/meta-data/: 169.254.169.254 is a \
         link-local address (cloud metadata); pricewatch only fetches public addresses"
    );
}

#[tokio::test]
async fn a_name_resolving_to_a_private_address_is_refused() {
    let server = Server::start(|req, _| match req.target.as_str() {
        "/to-evil" => Reply::Bytes(response(
            "302 Found",
            &[("Location", "http://evil.test/admin")],
            b"",
        )),
        _ => ok("should not be reached"),
    })
    .await;
    let port = server.port;
    // Loopback is not allowlisted here; the server's port is, so only the
    // address can be what refuses.
    let cfg = config(|c| {
        c.allow_networks.clear();
        c.ports = vec![80, 443, port];
    });
    let fetcher = fetcher_with_names(
        &cfg,
        &[
            ("shop.test", "10.0.0.5"),
            ("loop.test", "127.0.0.1"),
            ("both.test", "10.0.0.5"),
            ("both.test", "::ffff:127.0.0.1"),
        ],
    );

    let err = fetch_err(&fetcher, &Url::parse("http://shop.test/p/1").unwrap()).await;
    match &err {
        FetchError::Refused(Refusal::Resolved { host, ip, what }) => {
            assert_eq!(host, "shop.test");
            assert_eq!(ip.to_string(), "10.0.0.5");
            assert_eq!(what, "a private address");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        err.to_string(),
        "shop.test points to 10.0.0.5, a private address; pricewatch only fetches public addresses"
    );

    // A live server behind the name: refused without a connection.
    for name in ["loop.test", "both.test"] {
        let url = Url::parse(&format!("http://{name}:{port}/")).unwrap();
        let err = fetch_err(&fetcher, &url).await;
        assert!(
            matches!(&err, FetchError::Refused(Refusal::Resolved { .. })),
            "{name}: {err:?}"
        );
        assert!(err.to_string().contains("loopback") || err.to_string().contains("private"));
    }
    assert!(server.seen().is_empty(), "{:?}", server.seen());

    // On a redirect hop the resolver refuses too.
    let allowed = fetcher_with_names(&config(|_| {}), &[("evil.test", "10.0.0.5")]);
    let err = fetch_err(&allowed, &server.url("/to-evil")).await;
    assert!(
        matches!(&err, FetchError::Refused(Refusal::Resolved { host, .. }) if host == "evil.test"),
        "{err:?}"
    );
}

#[tokio::test]
async fn refused_urls_are_never_sent() {
    let server = Server::start(|_, _| ok("no")).await;
    let fetcher = Fetcher::new(&config(|c| c.allow_networks.clear())).unwrap();
    let port = server.port;
    for (url, expected) in [
        (
            format!("http://127.0.0.1:{port}/"),
            "127.0.0.1 is a loopback address",
        ),
        (
            format!("http://2130706433:{port}/"),
            "127.0.0.1 is a loopback address",
        ),
        (
            format!("http://[::ffff:127.0.0.1]:{port}/"),
            "::ffff:127.0.0.1 is an IPv4-mapped form of 127.0.0.1",
        ),
        (
            format!("http://localhost:{port}/"),
            "localhost is a local network name",
        ),
        (
            "http://user:pw@shop.example/".to_owned(),
            "URLs with a user name or password are not fetched",
        ),
        (
            "ftp://shop.example/".to_owned(),
            "the URL scheme must be http or https, not ftp",
        ),
        (
            format!("http://shop.example:{port}/"),
            "is not allowed (only 80, 443)",
        ),
    ] {
        let err = fetch_err(&fetcher, &Url::parse(&url).unwrap()).await;
        assert!(matches!(err, FetchError::Refused(_)), "{url}: {err:?}");
        assert!(err.to_string().contains(expected), "{url}: {err}");
    }
    assert!(server.seen().is_empty());
}

#[tokio::test]
async fn rate_limits_and_server_errors_carry_their_status() {
    let in_an_hour = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(3600));
    let server = Server::start(move |req, _| {
        let (status, headers): (&str, Vec<(&str, &str)>) = match req.target.as_str() {
            "/seconds" => ("429 Too Many Requests", vec![("Retry-After", "120")]),
            "/date" => (
                "429 Too Many Requests",
                vec![("Retry-After", in_an_hour.as_str())],
            ),
            "/busy" => ("503 Service Unavailable", vec![("Retry-After", "soon")]),
            "/gone" => ("404 Not Found", vec![]),
            _ => ("500 Internal Server Error", vec![]),
        };
        Reply::Bytes(response(status, &headers, b"error page"))
    })
    .await;
    let fetcher = Fetcher::new(&config(|_| {})).unwrap();
    let status = |err: FetchError| match err {
        FetchError::Status {
            status,
            retry_after,
        } => (status, retry_after),
        other => panic!("{other:?}"),
    };

    let err = fetch_err(&fetcher, &server.url("/seconds")).await;
    assert!(err.is_transient());
    assert_eq!(
        err.to_string(),
        "the site answered HTTP 429 (Too Many Requests)"
    );
    assert_eq!(status(err), (429, Some(Duration::from_secs(120))));

    let (code, wait) = status(fetch_err(&fetcher, &server.url("/date")).await);
    assert_eq!(code, 429);
    let wait = wait.expect("an HTTP date is a delay");
    assert!(
        wait > Duration::from_secs(3590) && wait <= Duration::from_secs(3600),
        "{wait:?}"
    );

    let err = fetch_err(&fetcher, &server.url("/boom")).await;
    assert!(err.is_transient());
    assert_eq!(status(err), (500, None));
    assert_eq!(
        status(fetch_err(&fetcher, &server.url("/busy")).await),
        (503, None)
    );
    let err = fetch_err(&fetcher, &server.url("/gone")).await;
    assert!(!err.is_transient());
    assert_eq!(status(err), (404, None));
}

#[tokio::test]
async fn a_closed_port_is_a_transient_connect_error() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let fetcher = Fetcher::new(&config(|_| {})).unwrap();
    let url = Url::parse(&format!("http://127.0.0.1:{port}/")).unwrap();
    let err = fetch_err(&fetcher, &url).await;
    assert!(matches!(err, FetchError::Connect(_)), "{err:?}");
    assert!(err.is_transient());
    assert!(
        err.to_string()
            .starts_with("cannot reach the site: Connection refused"),
        "{err}"
    );

    // A name that does not resolve says which name.
    let names = fetcher_with_names(&config(|_| {}), &[]);
    let err = fetch_err(&names, &Url::parse("http://nowhere.test/").unwrap()).await;
    assert!(err.is_transient());
    assert_eq!(
        err.to_string(),
        "cannot reach the site: nowhere.test has no address"
    );
}

const PROXY_CHILD: &str = "PRICEWATCH_TEST_PROXY_CHILD";

/// Proxy variables are process-global, so they are set only in a child
/// process that runs [`proxy_variables_child`] alone.
#[test]
fn proxy_variables_are_ignored() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["fetch::proxy_variables_child", "--exact", "--nocapture"])
        .env(PROXY_CHILD, "1")
        .env("HTTP_PROXY", &proxy)
        .env("http_proxy", &proxy)
        .env("ALL_PROXY", &proxy)
        .env("all_proxy", &proxy)
        .env_remove("NO_PROXY")
        .env_remove("no_proxy")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "child failed:\n{stdout}\n{stderr}"
    );
}

#[tokio::test]
async fn proxy_variables_child() {
    if std::env::var_os(PROXY_CHILD).is_none() {
        return;
    }
    assert!(std::env::var_os("HTTP_PROXY").is_some());
    let server = Server::start(|_, _| ok("direct")).await;
    let fetcher = Fetcher::new(&config(|_| {})).unwrap();
    let page = page(&fetcher, &server.url("/")).await;
    assert_eq!(&page.body[..], b"direct");
    assert_eq!(server.seen().len(), 1);
}
