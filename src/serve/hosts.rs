//! Which `Host` and `Origin` headers the server answers: a guard against DNS rebinding.
//!
//! A page on any site can have the visitor's browser send requests to a name its owner
//! controls, then point that name at 127.0.0.1 (DNS rebinding). The browser then takes the
//! server for the page's own origin and lets the page read the answers, among them
//! `/api/misclassified`'s raw pixels of the `--data` images. The browser still sends the
//! page's name in `Host`, so the server answers only the names it is reached by:
//!
//! - `localhost`;
//! - any IP address written as such (`127.0.0.1`, `[::1]`, the machine's LAN address when
//!   bound to `0.0.0.0`): an address cannot be rebound, so the browser sends one only when
//!   its user typed it;
//! - the `--host` given, and each `--allow-host NAME` (a name the machine is reached by: its
//!   host name, a reverse proxy's).
//!
//! With or without a port, case aside. Other names get 421 Misdirected Request. A request
//! without `Host` (HTTP/1.0) comes from no browser and is answered.
//!
//! A `POST` whose `Origin` is present and not one of those (another site's form or script,
//! or `null`) gets 403 Forbidden: a page elsewhere cannot make the server work for it, even
//! without reading the answer.
//!
//! Both refusals carry the API's error body, `{"error": "one line"}`.

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;

/// The host names the server answers besides `localhost` and IP addresses: lowercase,
/// without a trailing dot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowedHosts {
    names: Vec<String>,
}

impl AllowedHosts {
    /// `localhost`, IP addresses, the address the server was asked to listen on (`--host`)
    /// and `extra` (`--allow-host`).
    pub fn new(host: &str, extra: &[String]) -> AllowedHosts {
        let names = std::iter::once(host)
            .chain(extra.iter().map(String::as_str))
            .map(normalise)
            .filter(|n| !n.is_empty())
            .collect();
        AllowedHosts { names }
    }

    /// Whether a `Host` value (`name`, `name:port`, `[v6]:port`) names this server.
    pub fn allows(&self, authority: &str) -> bool {
        let Some(name) = host_name(authority) else {
            return false;
        };
        let name = normalise(name);
        name == "localhost" || name.parse::<IpAddr>().is_ok() || self.names.contains(&name)
    }

    /// Whether an `Origin` value (`http://name:port`) is this server's.
    fn allows_origin(&self, origin: &str) -> bool {
        match origin.split_once("://") {
            Some((scheme, authority)) if scheme == "http" || scheme == "https" => {
                !authority.contains('/') && self.allows(authority)
            }
            // `null` (a sandboxed frame, a file:// page) and anything else.
            _ => false,
        }
    }
}

/// Lowercase, without the trailing dot of a fully qualified name or an IPv6 address's
/// brackets.
fn normalise(name: &str) -> String {
    let name = name.trim();
    let name = name
        .strip_prefix('[')
        .and_then(|n| n.strip_suffix(']'))
        .unwrap_or(name);
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// The name of a `Host` value without its port: `[::1]:8080` -> `[::1]`, `a.b:80` -> `a.b`.
/// `None` for a value no client sends (empty, a port that is not a number, user info).
fn host_name(authority: &str) -> Option<&str> {
    let authority = authority.trim();
    if authority.is_empty() || authority.contains('@') {
        return None;
    }
    let (name, port) = if authority.starts_with('[') {
        let end = authority.find(']')?;
        let (name, rest) = authority.split_at(end + 1);
        (name, rest.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (authority, None),
        }
    };
    if name.is_empty() || (name.contains(':') && !name.starts_with('[')) {
        return None;
    }
    match port {
        Some(p) if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) => None,
        _ => Some(name),
    }
}

/// The middleware: answers the request if its `Host` (and, for a `POST`, its `Origin`) is
/// allowed; 421 or 403 with the API's error body if not.
pub(super) async fn guard(
    State(allowed): State<Arc<AllowedHosts>>,
    request: Request,
    next: Next,
) -> Response {
    let headers = request.headers();
    let host = match headers.get(header::HOST) {
        None => None,
        Some(v) => Some(v.to_str().unwrap_or("")),
    };
    // A request line in absolute form (`GET http://name/ HTTP/1.1`) names a host too.
    let named = host
        .into_iter()
        .chain(request.uri().authority().map(|a| a.as_str()));
    for name in named {
        if !allowed.allows(name) {
            return refuse(
                StatusCode::MISDIRECTED_REQUEST,
                format!(
                    "this server answers requests for localhost, its IP addresses and the \
                     names given by --host and --allow-host, not `{name}`; start `cnn serve` \
                     with --allow-host NAME to add one"
                ),
            );
        }
    }
    let safe = matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    if !safe {
        if let Some(origin) = headers.get(header::ORIGIN) {
            let origin = origin.to_str().unwrap_or("");
            if !allowed.allows_origin(origin) {
                return refuse(
                    StatusCode::FORBIDDEN,
                    format!(
                        "a {} from another site's page (Origin `{origin}`) is refused",
                        request.method()
                    ),
                );
            }
        }
    }
    next.run(request).await
}

/// An error answer as the API gives them: the status and `{"error": "one line"}`.
fn refuse(status: StatusCode, message: String) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn localhost_ip_addresses_and_the_names_given_are_allowed_with_or_without_a_port() {
        let a = AllowedHosts::new("127.0.0.1", &["box.lan".into(), "Proxy.Example.".into()]);
        for ok in [
            "localhost",
            "LOCALHOST:8080",
            "localhost.:1",
            "127.0.0.1",
            "127.0.0.1:51234",
            "[::1]",
            "[::1]:8080",
            "192.168.1.20:8080",
            "box.lan:8080",
            "proxy.example",
        ] {
            assert!(a.allows(ok), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:8080",
            "localhost.evil.example",
            "127.0.0.1.evil.example",
            "box.lan.evil.example",
            "",
            "localhost:http",
            "user@localhost",
            "::1",
        ] {
            assert!(!a.allows(bad), "{bad}");
        }
    }

    #[test]
    fn the_host_given_counts_when_it_is_a_name() {
        assert!(AllowedHosts::new("myhost", &[]).allows("MyHost:8080"));
        assert!(!AllowedHosts::new("127.0.0.1", &[]).allows("myhost:8080"));
    }

    #[test]
    fn origins_are_allowed_like_hosts_and_null_is_not() {
        let a = AllowedHosts::new("127.0.0.1", &[]);
        assert!(a.allows_origin("http://127.0.0.1:8080"));
        assert!(a.allows_origin("http://localhost:8080"));
        assert!(!a.allows_origin("http://evil.example"));
        assert!(!a.allows_origin("https://evil.example:8080"));
        assert!(!a.allows_origin("null"));
        assert!(!a.allows_origin("file://"));
    }
}
