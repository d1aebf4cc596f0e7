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
        unpack: None,
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
            unpack: None,
        };
        let e = download(&p, dir.path(), &mut quiet()).unwrap_err();
        assert!(matches!(e, Error::Invalid(_)), "{f:?}: {e}");
    }
}

#[test]
fn known_datasets_list_their_files_with_valid_hashes() {
    for k in Known::ALL {
        assert_eq!(Known::parse(k.name()), Some(k));
        let p = k.plan(Some(Path::new(DEBIAN_FASHION_MNIST_DIR)));
        assert_eq!(p.files.len(), if k == Known::Cifar10 { 1 } else { 4 });
        assert!(p.base_url.ends_with('/'));
        for f in p.files.iter().chain(p.local.iter().flat_map(|l| &l.files)) {
            check_spec(f).unwrap();
        }
        assert_eq!(p.local.is_some(), k == Known::FashionMnist);
        assert_eq!(p.unpack.is_some(), k == Known::Cifar10);
        if let Some(u) = &p.unpack {
            check_unpack(u, &p.files).unwrap();
        }
    }
    // CIFAR-10: the binary tarball of the authors' page, its six batches of 10,000 records
    // and the class names.
    let p = Known::Cifar10.plan(None);
    assert_eq!(
        join_url(&p.base_url, &p.files[0].name),
        "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
    );
    let u = p.unpack.unwrap();
    let names: Vec<&str> = u.members.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "data_batch_1.bin",
            "data_batch_2.bin",
            "data_batch_3.bin",
            "data_batch_4.bin",
            "data_batch_5.bin",
            "test_batch.bin",
            "batches.meta.txt"
        ]
    );
    assert_eq!(u.members[0].size, Some(30_730_000));
    assert_eq!(u.folder, "cifar-10-batches-bin");
    assert_eq!(Known::parse("CIFAR-10"), Some(Known::Cifar10));
}

/// A member of a tarball made by the tests: a file with these bytes, or a symbolic link.
enum TarEntry<'a> {
    File(&'a str, &'a [u8]),
    Link(&'a str),
}

/// A gzip-compressed tar file of `entries`.
fn tar_gz(entries: &[TarEntry]) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut b = tar::Builder::new(gz);
    for e in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        match *e {
            TarEntry::File(path, bytes) => {
                h.set_size(bytes.len() as u64);
                b.append_data(&mut h, path, bytes).unwrap();
            }
            TarEntry::Link(path) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_size(0);
                b.append_link(&mut h, path, "/etc/passwd").unwrap();
            }
        }
    }
    b.into_inner().unwrap().finish().unwrap()
}

/// A plan fetching `archive` (named `set.tar.gz`) from `server` and unpacking `a.bin` (of
/// `a_size` bytes, when given) and `names.txt` out of its folder `batches/`.
fn unpack_plan(server: &Server, archive: &[u8], a_size: Option<u64>) -> Plan {
    Plan {
        unpack: Some(Unpack {
            archive: "set.tar.gz".into(),
            folder: "batches".into(),
            members: vec![
                Member {
                    name: "a.bin".into(),
                    size: a_size,
                },
                Member {
                    name: "names.txt".into(),
                    size: None,
                },
            ],
        }),
        ..plan(server, vec![spec("set.tar.gz", archive)])
    }
}

#[test]
fn an_archive_is_checked_then_unpacked_member_by_member_then_removed() {
    let a = big();
    let archive = tar_gz(&[
        TarEntry::File("batches/readme.html", b"<p>not named: skipped</p>"),
        TarEntry::File("./batches/a.bin", &a),
        TarEntry::File("other/names.txt", b"not in the folder: skipped"),
        TarEntry::File("batches/names.txt", b"cat\ndog\n"),
    ]);
    let server = Server::start(&[("set.tar.gz", Reply::Ok(archive.clone()))], 5);
    let dir = tempfile::tempdir().unwrap();
    let p = unpack_plan(&server, &archive, Some(a.len() as u64));
    let mut events = Vec::new();
    let out = download(&p, dir.path(), &mut |e| {
        if !matches!(e, Event::Progress { .. }) {
            events.push(format!("{e:?}"));
        }
    })
    .unwrap();
    assert_eq!(out.fetched, ["set.tar.gz"]);
    assert_eq!(out.unpacked, ["a.bin", "names.txt"]);
    assert_eq!(
        names(dir.path()),
        ["a.bin", "names.txt"],
        "the archive is removed"
    );
    assert_eq!(fs::read(dir.path().join("a.bin")).unwrap(), a);
    assert_eq!(
        fs::read(dir.path().join("names.txt")).unwrap(),
        b"cat\ndog\n"
    );
    assert!(
        events[2].starts_with("Unpacking { name: \"a.bin\""),
        "{events:?}"
    );

    // Unpacked before: nothing is fetched again.
    let out = download(&p, dir.path(), &mut quiet()).unwrap();
    assert_eq!(out.skipped, ["a.bin", "names.txt"]);
    assert_eq!(server.requests().len(), 1);
    // A member of another size than the plan's is unpacked again, from a new archive.
    fs::write(dir.path().join("a.bin"), b"short").unwrap();
    let out = download(&p, dir.path(), &mut quiet()).unwrap();
    assert_eq!(out.unpacked, ["a.bin", "names.txt"]);
    assert_eq!(fs::read(dir.path().join("a.bin")).unwrap(), a);
    assert_eq!(server.requests().len(), 2);
}

#[test]
fn an_archive_with_a_wrong_hash_is_not_unpacked() {
    let archive = tar_gz(&[
        TarEntry::File("batches/a.bin", b"abc"),
        TarEntry::File("batches/names.txt", b"x"),
    ]);
    let mut expected = archive.clone();
    expected[20] ^= 1;
    let server = Server::start(&[("set.tar.gz", Reply::Ok(archive.clone()))], 2);
    let dir = tempfile::tempdir().unwrap();
    let e = download(
        &unpack_plan(&server, &expected, None),
        dir.path(),
        &mut quiet(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("set.tar.gz: SHA-256 is"), "{e}");
    assert!(names(dir.path()).is_empty(), "{:?}", names(dir.path()));
}

#[test]
fn a_member_that_is_missing_of_the_wrong_size_or_no_file_fails_and_is_not_put_in_place() {
    // The error, and what the folder holds after it.
    let fails = |entries: &[TarEntry], a_size: Option<u64>| -> (String, Vec<String>) {
        let archive = tar_gz(entries);
        let server = Server::start(&[("set.tar.gz", Reply::Ok(archive.clone()))], 2);
        let dir = tempfile::tempdir().unwrap();
        let p = unpack_plan(&server, &archive, a_size);
        let e = download(&p, dir.path(), &mut quiet()).unwrap_err();
        assert!(matches!(e, Error::Download { .. }), "{e}");
        (e.to_string(), names(dir.path()))
    };
    let names_txt = TarEntry::File("batches/names.txt", b"x");
    // The plan's size differs from the header's.
    let (e, left) = fails(
        &[TarEntry::File("batches/a.bin", b"abc"), names_txt],
        Some(4),
    );
    assert!(
        e.contains("set.tar.gz: batches/a.bin is 3 bytes, expected 4"),
        "{e}"
    );
    assert_eq!(left, ["set.tar.gz"], "no a.bin, no temporary file");
    // A member missing.
    let names_txt = TarEntry::File("batches/names.txt", b"x");
    let (e, left) = fails(&[names_txt], None);
    assert!(e.contains("the archive holds no batches/a.bin"), "{e}");
    assert_eq!(left, ["names.txt", "set.tar.gz"]);
    // A link where a member should be.
    let names_txt = TarEntry::File("batches/names.txt", b"x");
    let (e, left) = fails(&[TarEntry::Link("batches/a.bin"), names_txt], None);
    assert!(e.contains("batches/a.bin is not a regular file"), "{e}");
    assert_eq!(left, ["set.tar.gz"]);
}

#[test]
fn an_archive_cut_short_leaves_no_partial_member() {
    let a = big();
    let whole = tar_gz(&[
        TarEntry::File("batches/names.txt", b"x"),
        TarEntry::File("batches/a.bin", &a),
    ]);
    // Checked against its own hash, so that only the unpacking finds it cut.
    let cut = whole[..whole.len() / 2].to_vec();
    let server = Server::start(&[("set.tar.gz", Reply::Ok(cut.clone()))], 2);
    let dir = tempfile::tempdir().unwrap();
    let e = download(&unpack_plan(&server, &cut, None), dir.path(), &mut quiet())
        .unwrap_err()
        .to_string();
    assert!(e.contains("set.tar.gz"), "{e}");
    assert_eq!(names(dir.path()), ["names.txt", "set.tar.gz"], "{e}");
}

#[test]
fn an_unpack_plan_must_name_one_of_its_files_and_plain_member_names() {
    let dir = tempfile::tempdir().unwrap();
    let member = |name: &str| Member {
        name: name.into(),
        size: None,
    };
    for (archive, m) in [
        ("other.tar.gz", "a"),
        ("a.tar.gz", "../a"),
        ("a.tar.gz", ".a"),
    ] {
        let p = Plan {
            base_url: "http://127.0.0.1:9/".into(),
            files: vec![spec("a.tar.gz", b"x")],
            local: None,
            unpack: Some(Unpack {
                archive: archive.into(),
                folder: "f".into(),
                members: vec![member(m)],
            }),
        };
        let e = download(&p, dir.path(), &mut quiet()).unwrap_err();
        assert!(matches!(e, Error::Invalid(_)), "{archive} {m}: {e}");
    }
}
