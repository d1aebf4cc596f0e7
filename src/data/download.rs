//! Fetching MNIST, Fashion-MNIST and CIFAR-10: every file checked against a known SHA-256 and
//! size, and never left half-written.
//!
//! [`download`] takes a [`Plan`]: a base URL, the list of files ([`RemoteFile`]: name, SHA-256,
//! size), optionally a local folder ([`LocalSource`], e.g. the Debian package
//! `dataset-fashion-mnist` in `/usr/share/datasets/fashion-mnist`) to copy from instead of the
//! network, and optionally an archive to unpack ([`Unpack`]). For each file:
//!
//! 1. if the target folder already holds it with a known hash, it is skipped;
//! 2. else if the local folder holds it with its known hash, it is copied;
//! 3. else it is fetched from `base_url + name`.
//!
//! A copy or fetch streams into a temporary file in the target folder (`.NAME.tmp-PID-N`)
//! while hashing, refuses more bytes than the expected size, checks the size and the hash,
//! syncs the file and renames it into place. Any failure deletes the temporary file, so the
//! folder holds either no file or the whole, checked one. Both `http://` and `https://` (rustls)
//! URLs work. The library never prints: it reports what it does through a callback
//! ([`Event`]).
//!
//! An archive (CIFAR-10's `cifar-10-binary.tar.gz`, a gzip-compressed tar file) is unpacked
//! only after it is in place and checked as above. Each member the plan names is written the
//! same way, into a temporary file renamed into place once it holds as many bytes as the
//! member's tar header says (and the plan, when it gives a size); members the plan does not
//! name are skipped, and so nothing is written under a path the archive chooses. The archive
//! is then removed. A later run finds the members in place, each with its size, and fetches
//! nothing.
//!
//! The hashes of [`Known`] datasets, and where each comes from:
//!
//! * Fashion-MNIST, official files: SHA-256 and sizes as listed by TensorFlow Datasets
//!   (`tensorflow_datasets/url_checksums/fashion_mnist.txt` in `tensorflow/datasets`). Their
//!   MD5s match the ones in Zalando's README.
//! * Fashion-MNIST, Debian package `dataset-fashion-mnist` 0.0~git20200523.55506a9-1: computed
//!   from the package's files. Debian re-compressed them (the gzip header lost the file name,
//!   hence 23-24 bytes smaller), so they differ from the official ones byte for byte and have
//!   their own hashes; both are accepted in the target folder.
//! * MNIST: SHA-256 and sizes as listed by TensorFlow Datasets
//!   (`tensorflow_datasets/url_checksums/mnist.txt`). The two test files' hashes were also
//!   computed here from a copy of the original files whose MD5s match torchvision's.
//! * CIFAR-10, `cifar-10-binary.tar.gz` from the authors' page
//!   (<https://www.cs.toronto.edu/~kriz/cifar.html>): SHA-256 and size as listed by TensorFlow
//!   Datasets (`tensorflow_datasets/url_checksums/cifar10.txt`, whose `cifar10` builder reads
//!   this very file); projects unrelated to it list the same SHA-256 beside the MD5 of the
//!   authors' page and of torchvision (`c32a1d4ab5d03f1284b67883e8d87530`). It could not be
//!   computed here: the machine this was written on does not reach the authors' server.

use std::fs::{self, File};
use std::io::{BufReader, Read, Write};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use flate2::bufread::GzDecoder;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::io::{create_dir, temp_path, write_error};

/// One file to fetch: its name (appended to the base URL and used in the target folder), the
/// SHA-256 of its bytes (lower-case hex) and its size in bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteFile {
    pub name: String,
    pub sha256: String,
    pub size: u64,
}

impl RemoteFile {
    pub fn new(name: &str, sha256: &str, size: u64) -> RemoteFile {
        RemoteFile {
            name: name.into(),
            sha256: sha256.to_ascii_lowercase(),
            size,
        }
    }
}

/// A local folder holding the same files (with possibly different bytes, e.g. re-compressed),
/// copied instead of fetched when present with the hashes of `files`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalSource {
    pub dir: PathBuf,
    pub files: Vec<RemoteFile>,
}

/// What to download: `base_url` (ending in `/`, or the name is appended after one) plus
/// each file's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub base_url: String,
    pub files: Vec<RemoteFile>,
    pub local: Option<LocalSource>,
    /// An archive among `files` to unpack once it is in place.
    pub unpack: Option<Unpack>,
}

/// A gzip-compressed tar file of a [`Plan`] to unpack: its members `folder/NAME`, for the
/// `members` named, go into the target folder as `NAME`; the archive is removed after.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unpack {
    /// The archive's name: one of the plan's files.
    pub archive: String,
    /// The folder of the archive holding the members (`cifar-10-batches-bin`).
    pub folder: String,
    pub members: Vec<Member>,
}

/// A file to take out of an [`Unpack`]'s archive: its name and, when known, its size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub name: String,
    pub size: Option<u64>,
}

/// The datasets `cnn download` knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Known {
    Mnist,
    FashionMnist,
    Cifar10,
}

/// Where Debian's `dataset-fashion-mnist` package puts its files.
pub const DEBIAN_FASHION_MNIST_DIR: &str = "/usr/share/datasets/fashion-mnist";

/// The largest file [`download`] accepts or unpacks, whatever a plan or an archive says (the
/// largest real one, CIFAR-10's tarball, is 170 MB).
pub const MAX_FILE_SIZE: u64 = 256 << 20;

impl Known {
    /// The dataset's name on the command line and its default folder name.
    pub fn name(self) -> &'static str {
        match self {
            Known::Mnist => "mnist",
            Known::FashionMnist => "fashion-mnist",
            Known::Cifar10 => "cifar10",
        }
    }

    /// Every dataset, in the order `cnn download` lists them.
    pub const ALL: [Known; 3] = [Known::Mnist, Known::FashionMnist, Known::Cifar10];

    /// Parses `mnist`, `fashion-mnist` (also `fashion_mnist`) or `cifar10` (also `cifar-10`).
    pub fn parse(s: &str) -> Option<Known> {
        match s.to_ascii_lowercase().as_str() {
            "mnist" => Some(Known::Mnist),
            "fashion-mnist" | "fashion_mnist" | "fashionmnist" => Some(Known::FashionMnist),
            "cifar10" | "cifar-10" | "cifar_10" => Some(Known::Cifar10),
            _ => None,
        }
    }

    /// Where the official files are served.
    pub fn base_url(self) -> &'static str {
        match self {
            // Serves the original files of yann.lecun.com (the same bytes, same hashes).
            Known::Mnist => "https://ossci-datasets.s3.amazonaws.com/mnist/",
            Known::FashionMnist => "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
            Known::Cifar10 => "https://www.cs.toronto.edu/~kriz/",
        }
    }

    /// The official files with their SHA-256 and size (see the module doc for the sources).
    pub fn files(self) -> Vec<RemoteFile> {
        match self {
            Known::Mnist => vec![
                RemoteFile::new(
                    "train-images-idx3-ubyte.gz",
                    "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
                    9_912_422,
                ),
                RemoteFile::new(
                    "train-labels-idx1-ubyte.gz",
                    "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
                    28_881,
                ),
                RemoteFile::new(
                    "t10k-images-idx3-ubyte.gz",
                    "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
                    1_648_877,
                ),
                RemoteFile::new(
                    "t10k-labels-idx1-ubyte.gz",
                    "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
                    4_542,
                ),
            ],
            Known::FashionMnist => vec![
                RemoteFile::new(
                    "train-images-idx3-ubyte.gz",
                    "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
                    26_421_880,
                ),
                RemoteFile::new(
                    "train-labels-idx1-ubyte.gz",
                    "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
                    29_515,
                ),
                RemoteFile::new(
                    "t10k-images-idx3-ubyte.gz",
                    "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
                    4_422_102,
                ),
                RemoteFile::new(
                    "t10k-labels-idx1-ubyte.gz",
                    "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
                    5_148,
                ),
            ],
            Known::Cifar10 => vec![RemoteFile::new(
                CIFAR10_ARCHIVE,
                "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd",
                170_052_171,
            )],
        }
    }

    /// What to take out of the archive, for a dataset that comes as one: CIFAR-10's five
    /// training batches, its test batch (10,000 records of 3,073 bytes each) and its class
    /// names.
    pub fn unpack(self) -> Option<Unpack> {
        match self {
            Known::Mnist | Known::FashionMnist => None,
            Known::Cifar10 => {
                let batch = |name: String| Member {
                    name,
                    size: Some(10_000 * super::cifar::RECORD as u64),
                };
                let mut members: Vec<Member> =
                    super::cifar::train_names().into_iter().map(batch).collect();
                members.push(batch(super::cifar::TEST_FILE.into()));
                members.push(Member {
                    name: super::cifar::META.into(),
                    size: None,
                });
                Some(Unpack {
                    archive: CIFAR10_ARCHIVE.into(),
                    folder: super::cifar::SUBFOLDER.into(),
                    members,
                })
            }
        }
    }

    /// The files of the Debian package holding this dataset, if there is one.
    pub fn debian_files(self) -> Option<Vec<RemoteFile>> {
        match self {
            Known::Mnist | Known::Cifar10 => None,
            // dataset-fashion-mnist 0.0~git20200523.55506a9-1 (re-compressed by Debian).
            Known::FashionMnist => Some(vec![
                RemoteFile::new(
                    "train-images-idx3-ubyte.gz",
                    "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
                    26_421_856,
                ),
                RemoteFile::new(
                    "train-labels-idx1-ubyte.gz",
                    "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
                    29_491,
                ),
                RemoteFile::new(
                    "t10k-images-idx3-ubyte.gz",
                    "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
                    4_422_079,
                ),
                RemoteFile::new(
                    "t10k-labels-idx1-ubyte.gz",
                    "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",
                    5_125,
                ),
            ]),
        }
    }

    /// The plan for this dataset: official URL and files, and Debian's folder
    /// `debian_dir` (normally [`DEBIAN_FASHION_MNIST_DIR`]) as a local source when the
    /// dataset has a Debian package.
    pub fn plan(self, debian_dir: Option<&Path>) -> Plan {
        let local = match (debian_dir, self.debian_files()) {
            (Some(dir), Some(files)) => Some(LocalSource {
                dir: dir.to_path_buf(),
                files,
            }),
            _ => None,
        };
        Plan {
            base_url: self.base_url().into(),
            files: self.files(),
            local,
            unpack: self.unpack(),
        }
    }
}

/// The name of CIFAR-10's binary tarball on the authors' page.
pub const CIFAR10_ARCHIVE: &str = "cifar-10-binary.tar.gz";

/// What [`download`] is doing, for progress display.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event<'a> {
    /// `name` is already in the target folder with a known hash.
    Skipped { name: &'a str },
    /// Copying `name` (`size` bytes) from the local folder.
    Copying {
        name: &'a str,
        from: &'a Path,
        size: u64,
    },
    /// A local copy of `name` exists but its hash is not the expected one; fetching instead.
    LocalMismatch { name: &'a str, from: &'a Path },
    /// Fetching `name` (`size` bytes) from `url`.
    Fetching {
        name: &'a str,
        url: &'a str,
        size: u64,
    },
    /// Taking `name` (`size` bytes) out of the archive `from`.
    Unpacking {
        name: &'a str,
        from: &'a Path,
        size: u64,
    },
    /// `bytes` of the current file done so far.
    Progress { bytes: u64 },
    /// `name` is in place and checked.
    Done { name: &'a str },
}

/// How each file got into place.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    pub skipped: Vec<String>,
    pub copied: Vec<String>,
    pub fetched: Vec<String>,
    /// The members taken out of the plan's archive (which is then removed).
    pub unpacked: Vec<String>,
}

/// Downloads (or copies, or skips) every file of `plan` into `dir` (created if missing). See
/// the module documentation.
pub fn download(plan: &Plan, dir: &Path, on_event: &mut dyn FnMut(Event)) -> Result<Outcome> {
    for f in &plan.files {
        check_spec(f)?;
    }
    if let Some(u) = &plan.unpack {
        check_unpack(u, &plan.files)?;
        // Unpacked before: the members are what a run leaves, the archive is gone.
        if u.members.iter().all(|m| in_place(dir, m)) {
            let mut outcome = Outcome::default();
            for m in &u.members {
                on_event(Event::Skipped { name: &m.name });
                outcome.skipped.push(m.name.clone());
            }
            return Ok(outcome);
        }
    }
    create_dir(dir)?;
    let agent = ureq::AgentBuilder::new()
        .timeout_connect(Duration::from_secs(30))
        .timeout_read(Duration::from_secs(60))
        .redirects(5)
        .build();
    let mut outcome = Outcome::default();
    for f in &plan.files {
        let target = dir.join(&f.name);
        let local = plan.local.as_ref().and_then(|l| {
            l.files
                .iter()
                .find(|lf| lf.name == f.name)
                .map(|lf| (l, lf))
        });
        // Already there, with the official hash or the local source's?
        if target.is_file() {
            let (size, hash) = hash_file(&target)?;
            let ok = |s: &RemoteFile| s.size == size && s.sha256 == hash;
            if ok(f) || local.is_some_and(|(_, lf)| ok(lf)) {
                on_event(Event::Skipped { name: &f.name });
                outcome.skipped.push(f.name.clone());
                continue;
            }
        }
        if let Some((l, lf)) = local {
            let src = l.dir.join(&lf.name);
            if src.is_file() {
                check_spec(lf)?;
                on_event(Event::Copying {
                    name: &f.name,
                    from: &src,
                    size: lf.size,
                });
                let reader = File::open(&src).map_err(|e| Error::io(&src, e))?;
                let what = src.display().to_string();
                match save_checked(reader, &target, lf.size, Some(&lf.sha256), &what, on_event) {
                    Ok(()) => {
                        on_event(Event::Done { name: &f.name });
                        outcome.copied.push(f.name.clone());
                        continue;
                    }
                    Err(Error::Download { .. }) => {
                        on_event(Event::LocalMismatch {
                            name: &f.name,
                            from: &src,
                        });
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        let url = join_url(&plan.base_url, &f.name);
        on_event(Event::Fetching {
            name: &f.name,
            url: &url,
            size: f.size,
        });
        let response = agent.get(&url).call().map_err(|e| match e {
            ureq::Error::Status(code, r) => download_err(
                &url,
                format!("the server answered {code} {}", r.status_text()),
            ),
            // The transport error's own text repeats the URL: keep its kind and message.
            ureq::Error::Transport(t) => match t.message() {
                Some(m) => download_err(&url, format!("{}: {m}", t.kind())),
                None => download_err(&url, t.kind().to_string()),
            },
        })?;
        if let Some(len) = response
            .header("Content-Length")
            .and_then(|v| v.trim().parse::<u64>().ok())
        {
            if len != f.size {
                return Err(download_err(
                    &url,
                    format!("the server announces {len} bytes, expected {}", f.size),
                ));
            }
        }
        save_checked(
            response.into_reader(),
            &target,
            f.size,
            Some(&f.sha256),
            &url,
            on_event,
        )?;
        on_event(Event::Done { name: &f.name });
        outcome.fetched.push(f.name.clone());
    }
    if let Some(u) = &plan.unpack {
        let archive = dir.join(&u.archive);
        outcome.unpacked = unpack(&archive, u, dir, on_event)?;
        fs::remove_file(&archive).map_err(|e| Error::io(&archive, e))?;
    }
    Ok(outcome)
}

/// True when `dir` holds the member `m` as a regular file, of its size when the plan gives
/// one.
fn in_place(dir: &Path, m: &Member) -> bool {
    fs::metadata(dir.join(&m.name))
        .is_ok_and(|meta| meta.is_file() && m.size.is_none_or(|s| s == meta.len()))
}

/// Refuses an [`Unpack`] whose archive is not among the plan's `files`, or whose member
/// names could write outside the folder.
fn check_unpack(u: &Unpack, files: &[RemoteFile]) -> Result<()> {
    if !files.iter().any(|f| f.name == u.archive) {
        return Err(Error::Invalid(format!(
            "the archive to unpack, \"{}\", is not one of the files to download",
            u.archive.escape_debug()
        )));
    }
    for m in &u.members {
        check_name(&m.name)?;
        if m.size.is_some_and(|s| s > MAX_FILE_SIZE) {
            return Err(Error::Invalid(format!(
                "{}: more than the {MAX_FILE_SIZE} bytes allowed",
                m.name
            )));
        }
    }
    Ok(())
}

/// Takes the members of `u` out of the gzip-compressed tar file `archive` (already checked
/// against its SHA-256) into `dir`, each into a temporary file renamed into place when it
/// holds every byte its header announces (and the plan's size, when it gives one). Returns
/// the members' names, in the plan's order.
///
/// # Errors
/// [`Error::Download`] naming the archive when it is not a readable gzip-compressed tar
/// file, when a member is not a regular file or not of its size, or when a member is
/// missing; write errors as [`save_checked`] gives them.
fn unpack(
    archive: &Path,
    u: &Unpack,
    dir: &Path,
    on_event: &mut dyn FnMut(Event),
) -> Result<Vec<String>> {
    let what = archive.display().to_string();
    let bad = |msg: String| download_err(&what, msg);
    let file = File::open(archive).map_err(|e| Error::io(archive, e))?;
    let mut tar = tar::Archive::new(GzDecoder::new(BufReader::new(file)));
    let mut done = vec![false; u.members.len()];
    let entries = tar
        .entries()
        .map_err(|e| bad(format!("not a readable tar.gz archive: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| bad(format!("not a readable tar.gz archive: {e}")))?;
        let path = entry
            .path()
            .map_err(|e| bad(format!("a member's name is unreadable: {e}")))?
            .into_owned();
        let Some(k) = member_index(&path, u) else {
            continue;
        };
        let m = &u.members[k];
        let inside = format!("{}/{}", u.folder, m.name);
        if !entry.header().entry_type().is_file() {
            return Err(bad(format!("{inside} is not a regular file")));
        }
        let size = entry
            .header()
            .size()
            .map_err(|e| bad(format!("{inside}: unreadable size: {e}")))?;
        if size > MAX_FILE_SIZE || m.size.is_some_and(|s| s != size) {
            let expected = m
                .size
                .map_or(format!("at most {MAX_FILE_SIZE}"), |s| s.to_string());
            return Err(bad(format!(
                "{inside} is {size} bytes, expected {expected}"
            )));
        }
        on_event(Event::Unpacking {
            name: &m.name,
            from: archive,
            size,
        });
        let from = format!("{what}: {inside}");
        save_checked(&mut entry, &dir.join(&m.name), size, None, &from, on_event)?;
        on_event(Event::Done { name: &m.name });
        done[k] = true;
    }
    let missing: Vec<String> = u
        .members
        .iter()
        .zip(&done)
        .filter(|(_, &d)| !d)
        .map(|(m, _)| format!("{}/{}", u.folder, m.name))
        .collect();
    if !missing.is_empty() {
        return Err(bad(format!("the archive holds no {}", missing.join(", "))));
    }
    Ok(u.members.iter().map(|m| m.name.clone()).collect())
}

/// Which member of `u` the archive's `path` is: `folder/NAME` (after any leading `./`) for a
/// member `NAME`.
fn member_index(path: &Path, u: &Unpack) -> Option<usize> {
    let parts: Vec<&std::ffi::OsStr> = path
        .components()
        .filter(|c| !matches!(c, Component::CurDir))
        .map(|c| match c {
            Component::Normal(p) => Some(p),
            _ => None,
        })
        .collect::<Option<_>>()?;
    match parts[..] {
        [folder, name] if folder == u.folder.as_str() => {
            u.members.iter().position(|m| name == m.name.as_str())
        }
        _ => None,
    }
}

fn download_err(url: &str, msg: impl Into<String>) -> Error {
    Error::Download {
        url: url.into(),
        msg: msg.into(),
    }
}

/// `base` + `name`, with one `/` between them.
fn join_url(base: &str, name: &str) -> String {
    if base.ends_with('/') {
        format!("{base}{name}")
    } else {
        format!("{base}/{name}")
    }
}

/// Refuses a file name that could write outside the folder.
fn check_name(name: &str) -> Result<()> {
    let plain = !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains(['/', '\\'])
        && !name.starts_with('.');
    if !plain {
        return Err(Error::Invalid(format!(
            "download file name \"{}\" must be a plain file name",
            name.escape_debug()
        )));
    }
    Ok(())
}

/// Refuses a file spec that could write outside the folder or is too large.
fn check_spec(f: &RemoteFile) -> Result<()> {
    check_name(&f.name)?;
    if f.size > MAX_FILE_SIZE {
        return Err(Error::Invalid(format!(
            "{}: {} bytes is more than the {MAX_FILE_SIZE} allowed",
            f.name, f.size
        )));
    }
    if f.sha256.len() != 64 || !f.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::Invalid(format!(
            "{}: \"{}\" is not a SHA-256 in hex",
            f.name,
            f.sha256.escape_debug()
        )));
    }
    Ok(())
}

/// Size and SHA-256 (hex) of a file.
fn hash_file(path: &Path) -> Result<(u64, String)> {
    let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 << 10];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok((size, hex(&hasher.finalize())))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Streams `reader` into a temporary file beside `target`, hashing it, refusing more than
/// `expected` bytes; checks the size and, when given, the SHA-256 `sha256` (lower-case
/// hex), syncs, renames into place. On any failure the temporary file is removed. `what`
/// (URL or path) names the source in errors: a size or hash mismatch, or a read error, is an
/// [`Error::Download`].
fn save_checked(
    mut reader: impl Read,
    target: &Path,
    expected: u64,
    sha256: Option<&str>,
    what: &str,
    on_event: &mut dyn FnMut(Event),
) -> Result<()> {
    // A download is checked before it is put in place, so it goes into a file: a device,
    // FIFO or directory at `target` is refused rather than replaced (see crate::io).
    let real = match crate::io::target(target)? {
        crate::io::Target::Replace(real) => real,
        crate::io::Target::WriteThrough => {
            return Err(Error::Write {
                path: target.into(),
                source: std::io::Error::other("it is a device or a FIFO, not a file"),
                kept: false,
            })
        }
    };
    let tmp = temp_path(&real);
    let result = (|| -> Result<()> {
        let mut out = File::create(&tmp).map_err(|e| write_error(target, e))?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 64 << 10];
        let mut size = 0u64;
        loop {
            let n = reader
                .read(&mut buf)
                .map_err(|e| download_err(what, format!("read failed after {size} bytes: {e}")))?;
            if n == 0 {
                break;
            }
            size += n as u64;
            if size > expected {
                return Err(download_err(
                    what,
                    format!("more than the expected {expected} bytes"),
                ));
            }
            hasher.update(&buf[..n]);
            out.write_all(&buf[..n])
                .map_err(|e| write_error(target, e))?;
            on_event(Event::Progress { bytes: size });
        }
        if size != expected {
            return Err(download_err(
                what,
                format!("got {size} bytes, expected {expected}"),
            ));
        }
        let got = hex(&hasher.finalize());
        if let Some(want) = sha256.filter(|&want| want != got) {
            return Err(download_err(
                what,
                format!("SHA-256 is {got}, expected {want}"),
            ));
        }
        out.flush().map_err(|e| write_error(target, e))?;
        out.sync_all().map_err(|e| write_error(target, e))?;
        drop(out);
        fs::rename(&tmp, &real).map_err(|e| write_error(target, e))?;
        crate::io::sync_dir(&real);
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests;
