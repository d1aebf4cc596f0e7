//! `cnn serve` in a real browser: headless Chromium loads the page with `?selftest`, which
//! draws a stroke through the pad's pointer events, waits for the prediction and the layer
//! grids, and explains cells of the convolutions and the pooling layer; the page writes what
//! it found into `#selftest-result`, read here from `--dump-dom`. The number the page
//! computed for each cell (from the kernel, the receptive field and the bias) is checked
//! against the server's own value for the image the page sent.
//!
//! Without Chromium the test prints a notice and passes locally; under CI (env `CI` set,
//! where `.ci/run` installs Debian's `chromium`) a missing or failing browser fails it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::server::{agent, answer, train_resnet, train_small, Served};
use serde_json::Value;

/// The browser's path, from `PATH`.
fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        for dir in std::env::split_paths(&path) {
            let p = dir.join(name);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

/// Runs headless Chromium with `args` then `url` (flags that work in a container, a fresh
/// profile), killing it after `limit`; returns its stdout.
fn run_chromium(
    browser: &Path,
    profile: &Path,
    args: &[&str],
    url: &str,
    limit: Duration,
) -> String {
    let mut child = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            // Timers and network run on virtual time, so the page's waits take no real time;
            // the dump is taken when the budget is spent and the network is quiet.
            "--virtual-time-budget=30000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("the browser {} cannot start: {e}", browser.display()));
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut { stdout }, &mut s).unwrap();
        s
    });
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "chromium exited with {status}");
            break;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    reader.join().unwrap()
}

/// Standard base64 (the page's `btoa`) to bytes.
fn base64(text: &str) -> Vec<u8> {
    const ABC: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for c in text.bytes().filter(|&c| c != b'=') {
        let v = ABC.iter().position(|&a| a == c).expect("base64 digit") as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

fn unescape_html(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&amp;", "&")
}

/// Loads `url` (the page with `?selftest`) in headless Chromium and returns the report the
/// page's self-test wrote.
fn selftest_report(browser: &Path, profile: &Path, url: &str) -> Value {
    let dom = run_chromium(
        browser,
        profile,
        &["--dump-dom"],
        url,
        Duration::from_secs(120),
    );
    let start = dom
        .find("<pre id=\"selftest-result\"")
        .expect("the page has its self-test element");
    let text = &dom[start..];
    let text = &text[text.find('>').unwrap() + 1..text.find("</pre>").unwrap()];
    assert!(
        !text.is_empty(),
        "the self-test wrote nothing (the page's script did not run?)"
    );
    let report: Value = serde_json::from_str(&unescape_html(text)).unwrap();
    assert_eq!(report["ok"], true, "the page's self-test failed: {report}");
    report
}

/// The browser, or `None` (with a notice) where there is none and this is not CI.
fn browser_or_skip() -> Option<PathBuf> {
    let browser = chromium();
    if browser.is_none() {
        if std::env::var_os("CI").is_some() {
            panic!(
                "chromium is not installed: the browser test cannot run (.ci/run installs \
                 Debian's chromium package; under CI this is a failure, not a skip)"
            );
        }
        eprintln!("NOTICE: chromium not found on PATH; the headless-browser test of cnn serve is skipped (apt-get install chromium to run it)");
    }
    browser
}

#[test]
fn the_page_draws_predicts_shows_the_layers_and_explains_a_number_equal_to_the_apis() {
    let Some(browser) = browser_or_skip() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let run = train_small(dir.path(), 2);
    let s = Served::start(&run, &[]);
    let report = selftest_report(&browser, &dir.path().join("profile"), &s.at("?selftest"));
    // A chain: no graph beside the layers, the page as it always was.
    assert_eq!(report["edges"], serde_json::json!([]), "{report}");
    assert_eq!(report["joins"], serde_json::json!([]), "{report}");
    // Every feature map of the three spatial layers has its grid: 4 + 4 + 6 channels.
    assert_eq!(report["grids"], 14, "{report}");
    assert_eq!(report["layers"], 4);
    // The image the page sent, asked again: same class, and the layer values the page used.
    let png = base64(report["sent_png"].as_str().unwrap());
    let (status, body) = answer(agent().post(&s.at("api/predict?layers=1")).send_bytes(&png));
    assert_eq!(status, 200, "{body}");
    let api: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(report["class"], api["class"]);
    assert!(
        report["predicted"]
            .as_str()
            .unwrap()
            .starts_with(api["class"].as_str().unwrap()),
        "{report}"
    );
    let explained = report["explained"].as_array().unwrap();
    assert_eq!(
        explained.len(),
        3,
        "two convolutions and a pooling layer: {report}"
    );
    for e in explained {
        let layer = e["layer"].as_u64().unwrap() as usize;
        let (k, y, x) = (
            e["k"].as_u64().unwrap(),
            e["y"].as_u64().unwrap(),
            e["x"].as_u64().unwrap(),
        );
        let shape: Vec<u64> = api["layers"][layer]["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        let at = ((k * shape[1] + y) * shape[2] + x) as usize;
        let server = api["layers"][layer]["values"][at].as_f64().unwrap();
        let page = e["page"].as_f64().unwrap();
        assert_eq!(e["api"].as_f64().unwrap(), server, "{e}");
        assert!(
            (page - server).abs() <= 1e-4 * server.abs().max(1.0),
            "layer {layer} ({k}, {y}, {x}): the page computed {page}, the layer gave {server}"
        );
        // The page picked the largest value of the map, so the sum is not trivially zero.
        assert!(server > 0.0, "{e}");
    }
    // The logits' bars start at one zero line: a negative logit's bar ends there, a
    // positive one's starts there, each as long as its value says (on one scale).
    let bars = report["logit_bars"].as_array().unwrap();
    assert_eq!(bars.len(), 10, "{report}");
    let values: Vec<f64> = bars.iter().map(|b| b["value"].as_f64().unwrap()).collect();
    assert!(
        values.iter().any(|&v| v < 0.0),
        "a model this small has negative logits: {values:?}"
    );
    let px_per_unit = bars
        .iter()
        .map(|b| {
            (b["right"].as_f64().unwrap() - b["left"].as_f64().unwrap())
                / b["value"].as_f64().unwrap().abs()
        })
        .fold(0.0, f64::max);
    for b in bars {
        let (v, left, right, zero) = (
            b["value"].as_f64().unwrap(),
            b["left"].as_f64().unwrap(),
            b["right"].as_f64().unwrap(),
            b["zero"].as_f64().unwrap(),
        );
        let (start, end) = if v < 0.0 {
            (right, left)
        } else {
            (left, right)
        };
        assert!(
            (start - zero).abs() <= 1.0,
            "{b}: the bar starts at the zero line"
        );
        let length = (end - start).abs();
        assert!(
            (length - v.abs() * px_per_unit).abs() <= 1.5,
            "{b}: {length} px for {v} at {px_per_unit} px a unit"
        );
        if v < 0.0 {
            assert!(end < start, "{b}: a negative logit's bar goes left");
        }
    }
    // The loss axis is labelled at a 1-2-5 step (0, 0.5, 1, ...), from 0.
    let ticks: Vec<f64> = report["ticks"]["Loss"]
        .as_array()
        .unwrap_or_else(|| panic!("no loss ticks: {report}"))
        .iter()
        .map(|t| t.as_f64().unwrap())
        .collect();
    assert!(ticks.len() >= 3 && ticks[0] == 0.0, "{ticks:?}");
    let step = ticks[1] - ticks[0];
    let mantissa = step / 10f64.powf(step.log10().floor());
    assert!(
        [1.0, 2.0, 5.0].iter().any(|m| (mantissa - m).abs() < 1e-6),
        "step {step}: {ticks:?}"
    );
    for (i, t) in ticks.iter().enumerate() {
        assert!((t - i as f64 * step).abs() < 1e-9, "{ticks:?}");
    }
    // The page at 1280x800 and at phone width renders (the screenshots are PNGs of that size).
    for (w, h) in [(1280, 800), (390, 844)] {
        let shot = dir.path().join(format!("shot-{w}.png"));
        run_chromium(
            &browser,
            &dir.path().join(format!("profile-{w}")),
            &[
                &format!("--window-size={w},{h}"),
                &format!("--screenshot={}", shot.display()),
            ],
            &s.at("?selftest"),
            Duration::from_secs(120),
        );
        let img = image::open(&shot).unwrap();
        assert_eq!((img.width(), img.height()), (w, h));
    }
}

/// A graph network's page: the edges beside the layers are those `/api/model`'s `reads`
/// give (an arc for each value read from further up than the line above, with what the
/// reader does with it), and a Shortcut cell and a Route cell are explained with the
/// server's own value.
#[test]
fn the_page_draws_a_residual_networks_graph_and_explains_a_shortcut_and_a_route_cell() {
    let Some(browser) = browser_or_skip() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let run = train_resnet(dir.path());
    let s = Served::start(&run, &[]);
    let report = selftest_report(&browser, &dir.path().join("profile"), &s.at("?selftest"));
    let edges = report["edges"].as_array().unwrap();
    let arcs: Vec<(i64, i64, &str)> = edges
        .iter()
        .filter(|e| e["arc"] == true)
        .map(|e| {
            (
                e["from"].as_i64().unwrap(),
                e["to"].as_i64().unwrap(),
                e["kind"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        arcs,
        [
            (2, 7, "add"),
            (7, 12, "branch"),
            (11, 15, "add"),
            (15, 20, "add")
        ],
        "{report}"
    );
    // Every layer reads something: 23 layers, 3 Shortcuts with two values each.
    assert_eq!(edges.len(), 26, "{report}");
    let along = |from: i64, to: i64| {
        edges
            .iter()
            .any(|e| e["from"] == from && e["to"] == to && e["arc"] == false)
    };
    assert!(along(6, 7) && along(12, 13) && along(-1, 0), "{report}");
    assert!(
        !along(11, 12),
        "the Route does not read the line above: {report}"
    );

    let joins = report["joins"].as_array().unwrap();
    assert_eq!(joins.len(), 2, "{report}");
    for j in joins {
        let (page, api) = (j["page"].as_f64().unwrap(), j["api"].as_f64().unwrap());
        assert!(
            (page - api).abs() <= 1e-6 * api.abs().max(1.0),
            "{j}: the page computed {page}, the layer gave {api}"
        );
        assert!(api > 0.0, "{j}");
    }
    let shortcut = joins[0]["text"].as_str().unwrap();
    assert_eq!(joins[0]["layer"], 7);
    for part in ["a = layer 6", "b = layer 2", "a + b = ", "relu(", "✓ equal"] {
        assert!(shortcut.contains(part), "{part:?} in {shortcut}");
    }
    let route = joins[1]["text"].as_str().unwrap();
    assert_eq!(joins[1]["layer"], 12);
    assert!(route.contains("of layer 7"), "{route}");
}
