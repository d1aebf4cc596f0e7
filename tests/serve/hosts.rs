//! `cnn serve` answers only the names it is reached by (DNS rebinding) and refuses POSTs
//! from a foreign Origin.

use crate::models::tiny_model_file as model_file;

// ---------------------------------------------------------------------------------------
// cnn serve: Host and Origin

/// Sends `head` (a request line and headers, without the blank line) and `body` as they are
/// and returns the status code and the body of the answer.
fn raw_request(port: u16, head: &str, body: &[u8]) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    write!(
        s,
        "{head}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    s.write_all(body).unwrap();
    let mut text = Vec::new();
    s.read_to_end(&mut text).unwrap();
    let text = String::from_utf8_lossy(&text).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

fn get(port: u16, path: &str, host: &str) -> (u16, String) {
    raw_request(port, &format!("GET {path} HTTP/1.1\r\nHost: {host}"), &[])
}

/// The one-line JSON error of a refused request, which must hold nothing else.
fn refusal(body: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_else(|_| panic!("{body}"));
    let o = v.as_object().unwrap();
    assert_eq!(o.len(), 1, "{body}");
    let msg = o["error"].as_str().unwrap().to_string();
    assert!(!msg.contains('\n'));
    msg
}

/// DNS rebinding: a page whose name was pointed at 127.0.0.1 reaches the server with its
/// own name in Host, and is answered 421 with a JSON error and none of the data (before the
/// fix: 200 and the raw pixels of the --data images). The names the server is reached by
/// are answered, with or without the port.
#[test]
fn serve_answers_a_foreign_host_421_and_its_own_names_200() {
    let tmp = tempfile::tempdir().unwrap();
    let model = model_file(tmp.path());
    let s = crate::server::Served::start(&model, &["--data", "demo"]);
    let port = s.port;
    let cell = "/api/misclassified?truth=0&predicted=1";
    for path in [cell, "/api/model", "/", "/api/confusion"] {
        for host in [format!("evil.example:{port}"), "evil.example".into()] {
            let (status, body) = get(port, path, &host);
            assert_eq!(status, 421, "{path} {host}: {body}");
            let msg = refusal(&body);
            assert!(msg.contains("--allow-host"), "{msg}");
        }
    }
    for host in [
        format!("localhost:{port}"),
        format!("127.0.0.1:{port}"),
        "localhost".into(),
        "127.0.0.1".into(),
    ] {
        let (status, body) = get(port, cell, &host);
        assert_eq!(status, 200, "{host}: {body}");
        assert!(
            body.starts_with('{') && !body.contains("\"error\""),
            "{body}"
        );
    }
}

/// A POST from another site's page (a foreign Origin) is refused with 403 and a JSON error;
/// the page's own POST (Origin the server's address) is answered.
#[test]
fn serve_refuses_a_post_from_a_foreign_origin_and_answers_its_own() {
    let tmp = tempfile::tempdir().unwrap();
    let model = model_file(tmp.path());
    let s = crate::server::Served::start(&model, &[]);
    let port = s.port;
    let png = std::fs::read(&crate::server::demo_pngs(tmp.path())[0]).unwrap();
    // Both forms of a prediction: batched, and with every layer's output (the page's).
    let post = |target: &str, origin: &str| {
        raw_request(
            port,
            &format!(
                "POST {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\
                 Content-Type: image/png\r\nOrigin: {origin}"
            ),
            &png,
        )
    };
    for target in ["/api/predict", "/api/predict?layers=1"] {
        for origin in ["http://evil.example", "http://evil.example:8080", "null"] {
            let (status, body) = post(target, origin);
            assert_eq!(status, 403, "{target} {origin}: {body}");
            assert!(refusal(&body).contains(origin), "{body}");
        }
        for origin in [
            format!("http://127.0.0.1:{port}"),
            format!("http://localhost:{port}"),
        ] {
            let (status, body) = post(target, &origin);
            assert_eq!(status, 200, "{target} {origin}: {body}");
            assert!(body.contains("probabilities"), "{body}");
        }
        // A foreign Host is refused before the image is looked at.
        let (status, body) = raw_request(
            port,
            &format!("POST {target} HTTP/1.1\r\nHost: evil.example:{port}"),
            &png,
        );
        assert_eq!(status, 421, "{target}: {body}");
    }
    // No Origin (curl, scripts): answered.
    let (status, body) = raw_request(
        port,
        &format!("POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1:{port}"),
        &png,
    );
    assert_eq!(status, 200, "{body}");
}

/// `--allow-host NAME` (repeatable) adds names the server answers.
#[test]
fn serve_allow_host_adds_names() {
    let tmp = tempfile::tempdir().unwrap();
    let model = model_file(tmp.path());
    let s = crate::server::Served::start(
        &model,
        &["--allow-host", "box.lan", "--allow-host", "Proxy.Example"],
    );
    let port = s.port;
    for host in [format!("box.lan:{port}"), "proxy.example".into()] {
        let (status, body) = get(port, "/api/model", &host);
        assert_eq!(status, 200, "{host}: {body}");
    }
    let (status, _) = get(port, "/api/model", "other.lan");
    assert_eq!(status, 421);
}
