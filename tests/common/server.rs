//! Helpers of the `cnn serve` tests (tests/serve): a small model trained on the built-in
//! demo set, and the server run as a process on a free port.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::common::{run, BIN};

/// A small network for the demo set (1x28x28, 10 classes): quick to train, and it has
/// every kind of layer the page explains (a padded convolution, max pooling, Dense).
pub const SMALL_CONFIG: &str = "\
4
Input shape=1x28x28
Conv2D filters=4 kernel=3x3 stride=1 padding=same activation=relu
MaxPool2D pool=2x2 stride=2
Conv2D filters=6 kernel=3x3 stride=2 padding=valid activation=leaky_relu
Dense units=10 activation=softmax
";

/// Trains `SMALL_CONFIG` for `epochs` on the demo set into `dir/run` and returns the run
/// folder.
pub fn train_small(dir: &Path, epochs: usize) -> PathBuf {
    let cfg = dir.join("small.cfg");
    std::fs::write(&cfg, SMALL_CONFIG).unwrap();
    let out = dir.join("run");
    let epochs = epochs.to_string();
    let (code, _, stderr) = run(&[&"train", &cfg, &"--epochs", &epochs, &"--out", &out]);
    assert_eq!(code, 0, "cnn train failed: {stderr}");
    out
}

/// Trains the built-in `resnet-small` (a graph: three Shortcuts and a one-layer Route) for
/// one epoch on the demo set (with no warm-up, which its config asks for and needs a second
/// epoch) into `dir/resnet` and returns the run folder.
pub fn train_resnet(dir: &Path) -> PathBuf {
    let out = dir.join("resnet");
    let (code, _, stderr) = run(&[
        &"train",
        &"resnet-small",
        &"--data",
        &"demo",
        &"--epochs",
        &"1",
        &"--warmup",
        &"0",
        &"--out",
        &out,
    ]);
    assert_eq!(code, 0, "cnn train resnet-small failed: {stderr}");
    out
}

/// `cnn serve` running as a child process; killed when dropped.
pub struct Served {
    pub child: Child,
    /// `http://127.0.0.1:PORT/`, read from the line the server prints.
    pub url: String,
    pub port: u16,
    /// The server's stdout, kept open: closing it would end the server at its next line
    /// (`cnn` dies quietly of SIGPIPE, as command-line tools do).
    _stdout: BufReader<std::process::ChildStdout>,
}

impl Served {
    /// Starts `cnn serve PATH --port 0 EXTRA...` and waits for the URL it prints.
    pub fn start(path: &Path, extra: &[&str]) -> Served {
        let mut child = Command::new(BIN)
            .arg("serve")
            .arg(path)
            .args(["--port", "0"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cnn serve starts");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let Some(url) = line.split_whitespace().find(|w| w.starts_with("http://")) else {
            let mut err = String::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            let _ = child.kill();
            panic!("cnn serve printed no URL: {line:?}; stderr: {err}");
        };
        let url = url.to_string();
        let port = url
            .trim_end_matches('/')
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("the URL has a port");
        Served {
            child,
            url,
            port,
            _stdout: stdout,
        }
    }

    pub fn at(&self, path: &str) -> String {
        format!("{}{}", self.url, path.trim_start_matches('/'))
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP client that hands 4xx and 5xx back as answers rather than errors.
pub fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(60))
        .build()
}

/// (status, body) of a request, whatever the status.
pub fn answer(r: Result<ureq::Response, ureq::Error>) -> (u16, String) {
    match r {
        Ok(resp) => (resp.status(), resp.into_string().unwrap()),
        Err(ureq::Error::Status(code, resp)) => (code, resp.into_string().unwrap()),
        Err(e) => panic!("request failed: {e}"),
    }
}

/// Sends `request_line` and headers exactly as written (no client normalises the path)
/// and returns the status code and the body.
pub fn raw_get(port: u16, target: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

/// PNG images of the demo set's test split, one per class, written by `cnn data export`.
pub fn demo_pngs(dir: &Path) -> Vec<PathBuf> {
    let out = dir.join("pngs");
    let (code, _, stderr) = run(&[
        &"data",
        &"export",
        &"demo",
        &"--split",
        &"test",
        &"--per-class",
        &"1",
        &"--out",
        &out,
    ]);
    assert_eq!(code, 0, "cnn data export failed: {stderr}");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "png"))
        .collect();
    files.sort();
    files
}

/// POSTs `len` zero bytes to `target`, announced by Content-Length or, if `chunked`, sent in
/// chunks of 64 KiB with no length given. A writer thread sends the body while this thread
/// reads the answer, so a server that answers before the end of the body (413) is heard
/// even though it then stops reading. Returns the status code and the body.
pub fn raw_post_zeros(port: u16, target: &str, len: usize, chunked: bool) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let length = if chunked {
        "Transfer-Encoding: chunked".to_string()
    } else {
        format!("Content-Length: {len}")
    };
    write!(
        s,
        "POST {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n{length}\r\n\r\n"
    )
    .unwrap();
    let mut w = s.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        let chunk = vec![0u8; 64 << 10];
        let mut left = len;
        while left > 0 {
            let n = left.min(chunk.len());
            let ok = if chunked {
                write!(w, "{n:x}\r\n")
                    .and_then(|()| w.write_all(&chunk[..n]))
                    .and_then(|()| w.write_all(b"\r\n"))
            } else {
                w.write_all(&chunk[..n])
            };
            if ok.is_err() {
                return; // the server has answered and closed: expected past the limit
            }
            left -= n;
        }
        if chunked {
            let _ = w.write_all(b"0\r\n\r\n");
        }
    });
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                raw.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&raw);
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let want = head.lines().find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse::<usize>().unwrap())
                    });
                    if want.is_some_and(|n| body.len() >= n) {
                        break;
                    }
                }
            }
            Err(e) => panic!(
                "reading the answer: {e} (got {:?})",
                String::from_utf8_lossy(&raw)
            ),
        }
    }
    let _ = s.shutdown(std::net::Shutdown::Both);
    let _ = writer.join();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}
