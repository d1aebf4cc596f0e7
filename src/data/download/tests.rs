//! Offline tests: a tiny HTTP/1.1 server on 127.0.0.1 serves small fake files.

use super::*;
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// How the server answers one path.
#[derive(Clone)]
enum Reply {
    /// 200 with these bytes.
    Ok(Vec<u8>),
    /// 200 announcing `len` bytes, sending only these, then closing.
    Truncated(Vec<u8>, usize),
}

/// A server answering at most `max` requests, stopping when dropped or after 30 s. Unknown
/// paths get a 404.
struct Server {
    base: String,
    requests: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

impl Server {
    fn start(routes: &[(&str, Reply)], max: usize) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let base = format!("http://{}/files/", listener.local_addr().unwrap());
        let routes: HashMap<String, Reply> = routes
            .iter()
            .map(|(p, r)| (format!("/files/{p}"), r.clone()))
            .collect();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (log, flag) = (requests.clone(), stop.clone());
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(30);
            let mut served = 0;
            while served < max && !flag.load(Ordering::SeqCst) && Instant::now() < deadline {
                let (stream, _) = match listener.accept() {
                    Ok(s) => s,
                    Err(_) => {
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    }
                };
                served += 1;
                stream.set_nonblocking(false).unwrap();
                stream
                    .set_read_timeout(Some(Duration::from_secs(5)))
                    .unwrap();
                let mut reader = BufReader::new(stream);
                let mut first = String::new();
                if reader.read_line(&mut first).is_err() {
                    continue;
                }
                loop {
                    let mut line = String::new();
                    match reader.read_line(&mut line) {
                        Ok(0) | Err(_) => break,
                        Ok(_) if line == "\r\n" => break,
                        Ok(_) => {}
                    }
                }
                let path = first.split_whitespace().nth(1).unwrap_or("").to_string();
                log.lock().unwrap().push(path.clone());
                let mut stream = reader.into_inner();
                let (head, body) = match routes.get(&path) {
                    Some(Reply::Ok(bytes)) => (
                        format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n", bytes.len()),
                        bytes.clone(),
                    ),
                    Some(Reply::Truncated(bytes, len)) => (
                        format!("HTTP/1.1 200 OK\r\nContent-Length: {len}\r\n"),
                        bytes.clone(),
                    ),
                    None => (
                        "HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n".to_string(),
                        b"not found".to_vec(),
                    ),
                };
                let _ = stream.write_all(format!("{head}Connection: close\r\n\r\n").as_bytes());
                let _ = stream.write_all(&body);
                let _ = stream.flush();
            }
        });
        Server {
            base,
            requests,
            stop,
        }
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

fn sha(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn spec(name: &str, bytes: &[u8]) -> RemoteFile {
    RemoteFile::new(name, &sha(bytes), bytes.len() as u64)
}

fn big() -> Vec<u8> {
    (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect()
}

fn plan(server: &Server, files: Vec<RemoteFile>) -> Plan {
    Plan {
        base_url: server.base.clone(),
        files,
        local: None,
    }
}

/// The names in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn quiet() -> impl FnMut(Event) {
    |_| {}
}

#[test]
fn fetches_checks_and_places_every_file_then_skips_them() {
    let (a, b) = (b"hello".to_vec(), big());
    let server = Server::start(
        &[
            ("a.gz", Reply::Ok(a.clone())),
            ("b.gz", Reply::Ok(b.clone())),
        ],
        10,
    );
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("sub");
    let p = plan(&server, vec![spec("a.gz", &a), spec("b.gz", &b)]);
    let mut last = 0;
    let mut events = Vec::new();
    let out = download(&p, &target, &mut |e| {
        if let Event::Progress { bytes } = e {
            last = bytes;
        } else {
            events.push(format!("{e:?}"));
        }
    })
    .unwrap();
    assert_eq!(out.fetched, ["a.gz", "b.gz"]);
    assert_eq!(last, b.len() as u64);
    assert!(events[0].contains("Fetching"), "{events:?}");
    assert_eq!(fs::read(target.join("a.gz")).unwrap(), a);
    assert_eq!(fs::read(target.join("b.gz")).unwrap(), b);
    assert_eq!(names(&target), ["a.gz", "b.gz"]);
    assert_eq!(server.requests(), ["/files/a.gz", "/files/b.gz"]);

    let out = download(&p, &target, &mut quiet()).unwrap();
    assert_eq!(out.skipped, ["a.gz", "b.gz"]);
    assert!(out.fetched.is_empty());
    assert_eq!(server.requests().len(), 2, "the second run fetched nothing");
}

#[test]
fn a_present_file_with_a_wrong_hash_is_fetched_again() {
    let a = b"right".to_vec();
    let server = Server::start(&[("a.gz", Reply::Ok(a.clone()))], 2);
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("a.gz"), b"wrong").unwrap();
    let out = download(
        &plan(&server, vec![spec("a.gz", &a)]),
        dir.path(),
        &mut quiet(),
    )
    .unwrap();
    assert_eq!(out.fetched, ["a.gz"]);
    assert_eq!(fs::read(dir.path().join("a.gz")).unwrap(), a);
}

#[test]
fn a_wrong_hash_is_an_error_naming_the_url_and_both_hashes_and_leaves_nothing() {
    let served = big();
    let mut expected = served.clone();
    expected[1000] ^= 1;
    let server = Server::start(&[("a.gz", Reply::Ok(served.clone()))], 2);
    let dir = tempfile::tempdir().unwrap();
    let e = download(
        &plan(&server, vec![spec("a.gz", &expected)]),
        dir.path(),
        &mut quiet(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains(&format!("{}a.gz", server.base)), "{e}");
    assert!(
        e.contains(&sha(&served)) && e.contains(&sha(&expected)),
        "{e}"
    );
    assert!(names(dir.path()).is_empty(), "{:?}", names(dir.path()));
}

#[test]
fn a_truncated_response_is_an_error_and_leaves_nothing() {
    let full = big();
    let server = Server::start(
        &[("a.gz", Reply::Truncated(full[..5000].to_vec(), full.len()))],
        2,
    );
    let dir = tempfile::tempdir().unwrap();
    let e = download(
        &plan(&server, vec![spec("a.gz", &full)]),
        dir.path(),
        &mut quiet(),
    )
    .unwrap_err();
    assert!(matches!(e, Error::Download { .. }), "{e}");
    assert!(e.to_string().contains("a.gz"), "{e}");
    assert!(names(dir.path()).is_empty(), "{:?}", names(dir.path()));
}

#[test]
fn a_response_longer_than_expected_is_refused() {
    let served = big();
    let server = Server::start(&[("a.gz", Reply::Ok(served.clone()))], 2);
    let dir = tempfile::tempdir().unwrap();
    let e = download(
        &plan(&server, vec![spec("a.gz", &served[..100])]),
        dir.path(),
        &mut quiet(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("200000 bytes, expected 100"), "{e}");
    assert!(names(dir.path()).is_empty());
}

#[test]
fn a_404_is_an_error_naming_the_url() {
    let server = Server::start(&[], 2);
    let dir = tempfile::tempdir().unwrap();
    let e = download(
        &plan(&server, vec![spec("missing.gz", b"x")]),
        dir.path(),
        &mut quiet(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains(&format!("{}missing.gz", server.base)), "{e}");
    assert!(e.contains("404"), "{e}");
    assert!(names(dir.path()).is_empty());
}

#[test]
fn files_of_the_local_folder_are_copied_instead_of_fetched() {
    // The local (Debian-like) files differ from the official ones, as Debian's do.
    let (official, local) = (b"official bytes".to_vec(), b"repacked bytes!".to_vec());
    let server = Server::start(&[("a.gz", Reply::Ok(official.clone()))], 5);
    let deb = tempfile::tempdir().unwrap();
    fs::write(deb.path().join("a.gz"), &local).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut p = plan(&server, vec![spec("a.gz", &official)]);
    p.local = Some(LocalSource {
        dir: deb.path().to_path_buf(),
        files: vec![spec("a.gz", &local)],
    });
    let out = download(&p, dir.path(), &mut quiet()).unwrap();
    assert_eq!(out.copied, ["a.gz"]);
    assert_eq!(fs::read(dir.path().join("a.gz")).unwrap(), local);
    assert_eq!(names(dir.path()), ["a.gz"]);
    // The copy is accepted on a second run too.
    let out = download(&p, dir.path(), &mut quiet()).unwrap();
    assert_eq!(out.skipped, ["a.gz"]);
    assert!(server.requests().is_empty(), "{:?}", server.requests());

    // A local file with another hash is not copied: the official one is fetched.
    let dir2 = tempfile::tempdir().unwrap();
    fs::write(deb.path().join("a.gz"), b"corrupted bytes").unwrap();
    let mut mismatch = false;
    let out = download(&p, dir2.path(), &mut |e| {
        mismatch |= matches!(e, Event::LocalMismatch { .. })
    })
    .unwrap();
    assert!(mismatch);
    assert_eq!(out.fetched, ["a.gz"]);
    assert_eq!(fs::read(dir2.path().join("a.gz")).unwrap(), official);
    assert_eq!(names(dir2.path()), ["a.gz"]);
}

#[test]
fn file_specs_that_could_escape_the_folder_or_are_huge_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let h = sha(b"x");
    for f in [
        RemoteFile::new("../a", &h, 1),
        RemoteFile::new("a/b", &h, 1),
        RemoteFile::new(".hidden", &h, 1),
        RemoteFile::new("a", &h, MAX_FILE_SIZE + 1),
        RemoteFile::new("a", "abc", 1),
    ] {
        let p = Plan {
            base_url: "http://127.0.0.1:9/".into(),
            files: vec![f.clone()],
            local: None,
        };
        let e = download(&p, dir.path(), &mut quiet()).unwrap_err();
        assert!(matches!(e, Error::Invalid(_)), "{f:?}: {e}");
    }
}

#[test]
fn known_datasets_list_four_idx_files_with_valid_hashes() {
    for k in [Known::Mnist, Known::FashionMnist] {
        assert_eq!(Known::parse(k.name()), Some(k));
        let p = k.plan(Some(Path::new(DEBIAN_FASHION_MNIST_DIR)));
        assert_eq!(p.files.len(), 4);
        assert!(p.base_url.ends_with('/'));
        for f in p.files.iter().chain(p.local.iter().flat_map(|l| &l.files)) {
            check_spec(f).unwrap();
        }
        assert_eq!(p.local.is_some(), k == Known::FashionMnist);
    }
}
