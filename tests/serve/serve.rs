//! `cnn serve`: the server run as a process on a free loopback port, asked over HTTP.
//!
//! Expected values come from the other commands of the same binary: `cnn predict --json`
//! for the probabilities, `cnn evaluate --json` for the confusion matrix, and the run
//! folder's own metrics.jsonl for the epochs.

use std::io::{BufRead, BufReader, Read};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::BIN;
use crate::server::{
    agent, answer, demo_pngs, raw_get, raw_post_zeros, train_resnet, train_small, Served,
};
use serde_json::Value;

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

#[test]
fn the_page_its_assets_and_the_model_description_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let run = train_small(dir.path(), 1);
    let s = Served::start(&run, &[]);
    let a = agent();
    let page = a.get(&s.url).call().unwrap();
    assert_eq!(page.content_type(), "text/html");
    let html = page.into_string().unwrap();
    assert!(html.contains("<canvas id=\"pad\""), "{html}");
    for (path, kind) in [("app.js", "text/javascript"), ("style.css", "text/css")] {
        let r = a.get(&s.at(path)).call().unwrap();
        assert_eq!(r.content_type(), kind);
        assert!(r.into_string().unwrap().len() > 1000);
    }
    let m = json(
        &a.get(&s.at("api/model"))
            .call()
            .unwrap()
            .into_string()
            .unwrap(),
    );
    assert_eq!(m["classes"].as_array().unwrap().len(), 10);
    assert_eq!(m["input"], serde_json::json!([1, 28, 28]));
    let kinds: Vec<&str> = m["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["Conv2D", "MaxPool2D", "Conv2D", "Dense"]);
    // The geometry the page needs to explain a cell: padding=same on a 3x3 kernel adds one
    // zero above and to the left; the second convolution is valid with stride 2.
    assert_eq!(
        m["layers"][0]["conv"],
        serde_json::json!({"kh": 3, "kw": 3, "stride": 1, "pad_top": 1, "pad_left": 1})
    );
    assert_eq!(m["layers"][2]["conv"]["stride"], 2);
    assert_eq!(m["layers"][2]["activation"], "leaky_relu");
    assert_eq!(m["layers"][1]["pool"]["max"], true);
    // `cnn summary`'s table: 4 filters x (1 x 3 x 3 + 1) = 40 parameters.
    assert!(m["summary"].as_str().unwrap().contains("40"));
    // Each layer's own explanation, shown under its heading: `cnn summary --explain`'s lines.
    assert!(
        m["layers"][0]["explain"][1]
            .as_str()
            .unwrap()
            .starts_with("params = 3*3*1*4 + 4 = 40"),
        "{}",
        m["layers"][0]["explain"]
    );
    let w = json(
        &a.get(&s.at("api/weights?layer=0"))
            .call()
            .unwrap()
            .into_string()
            .unwrap(),
    );
    assert_eq!(w["weight_shape"], serde_json::json!([4, 1, 3, 3]));
    assert_eq!(w["weight"].as_array().unwrap().len(), 36);
    assert_eq!(w["bias"].as_array().unwrap().len(), 4);
}

/// A prediction equals `cnn predict`'s for the same image bit for bit: the server batches
/// requests, and inference gives each image the bits it gets alone whatever the batch. With
/// `layers=1` (the page) the same probabilities come with every layer's output.
#[test]
fn predictions_equal_cnn_predicts_bit_for_bit_with_or_without_every_layer() {
    let dir = tempfile::tempdir().unwrap();
    let run = train_small(dir.path(), 1);
    let model = run.join("model.safetensors");
    let pngs = demo_pngs(dir.path());
    assert_eq!(pngs.len(), 10);
    let out = Command::new(BIN)
        .arg("predict")
        .arg(&model)
        .args(&pngs)
        .args(["--json", "--top", "10"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let expected: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(json)
        .collect();
    let s = Served::start(&model, &[]);
    let a = agent();
    for (png, want) in pngs.iter().zip(&expected) {
        let bytes = std::fs::read(png).unwrap();
        let (status, body) = answer(a.post(&s.at("api/predict")).send_bytes(&bytes));
        assert_eq!(status, 200, "{body}");
        let batched = json(&body);
        assert!(batched.get("layers").is_none() && batched.get("input").is_none());
        let (status, body) = answer(a.post(&s.at("api/predict?layers=1")).send_bytes(&bytes));
        assert_eq!(status, 200, "{body}");
        let got = json(&body);
        for key in ["class", "index", "classes", "probabilities", "version"] {
            assert_eq!(got[key], batched[key], "{key}");
        }
        assert_eq!(got["class"], want["class"], "{}", png.display());
        assert_eq!(got["index"], want["index"]);
        let classes = got["classes"].as_array().unwrap();
        let probs = got["probabilities"].as_array().unwrap();
        assert_eq!(classes.len(), 10);
        // cnn predict lists (class, probability) pairs, most probable first.
        for pair in want["probabilities"].as_array().unwrap() {
            let name = &pair[0];
            let p_cli = pair[1].as_f64().unwrap();
            let i = classes.iter().position(|c| c == name).unwrap();
            let p_api = probs[i].as_f64().unwrap();
            // Both print the same f32: the same shortest decimal, the same f64 read back.
            assert_eq!(p_cli, p_api, "{name}: cnn predict, /api/predict");
        }
        // Every layer's output comes back, with its shape.
        let layers = got["layers"].as_array().unwrap();
        assert_eq!(layers.len(), 4);
        assert_eq!(layers[0]["shape"], serde_json::json!([4, 28, 28]));
        assert_eq!(layers[0]["values"].as_array().unwrap().len(), 4 * 28 * 28);
        assert_eq!(layers[2]["shape"], serde_json::json!([6, 6, 6]));
        assert_eq!(got["input"]["values"].as_array().unwrap().len(), 784);
    }
}

#[test]
fn each_error_answers_4xx_with_a_one_line_json_error() {
    let dir = tempfile::tempdir().unwrap();
    let run = train_small(dir.path(), 1);
    let s = Served::start(&run, &[]);
    let a = agent();
    let predict = s.at("api/predict");
    let check = |(status, body): (u16, String), want: u16, says: &str| {
        assert_eq!(status, want, "{body}");
        let e = json(&body);
        let msg = e["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no error in {body}"));
        assert!(!msg.contains('\n'));
        assert!(msg.contains(says), "{msg:?} should say {says:?}");
    };
    // Not an image at all, and an empty body.
    check(
        answer(a.post(&predict).send_string("hello, not a picture")),
        400,
        "not a PNG, JPEG or BMP",
    );
    check(answer(a.post(&predict).send_bytes(&[])), 400, "not a PNG");
    // A PNG of the wrong size, then the same scaled with ?resize=1.
    let small = common_png(10, 12);
    check(
        answer(a.post(&predict).send_bytes(&small)),
        422,
        "is 12x10 (height x width) and the model takes 28x28",
    );
    let (status, body) = answer(a.post(&s.at("api/predict?resize=1")).send_bytes(&small));
    assert_eq!(status, 200, "{body}");
    // A PNG whose header claims 100000 x 100000 pixels: refused before any pixel buffer.
    let huge = png_header_only(100_000, 100_000);
    check(
        answer(a.post(&s.at("api/predict?resize=1")).send_bytes(&huge)),
        422,
        "the upload: not a readable PNG (it is too large",
    );
    // A truncated PNG.
    let mut cut = common_png(28, 28);
    cut.truncate(cut.len() / 2);
    let (status, _) = answer(a.post(&predict).send_bytes(&cut));
    assert_eq!(status, 422);
    // Over 10 MB: told by its Content-Length, and sent chunked (no length given).
    // The answer comes before the rest of the body is read (see raw_post_zeros).
    for chunked in [false, true] {
        check(
            raw_post_zeros(s.port, "/api/predict", 11 << 20, chunked),
            413,
            "over the limit of 10 MB",
        );
    }
    // Unknown layers and endpoints, and --data endpoints without --data.
    check(
        answer(a.get(&s.at("api/weights?layer=1")).call()),
        404,
        "has no weights",
    );
    check(
        answer(a.get(&s.at("api/weights?layer=99")).call()),
        404,
        "no layer 99",
    );
    check(
        answer(a.get(&s.at("api/nothing")).call()),
        404,
        "no such page",
    );
    check(
        answer(a.get(&s.at("api/confusion")).call()),
        404,
        "no --data",
    );
    // The server is still well after all that.
    let (status, _) = answer(a.post(&predict).send_bytes(&common_png(28, 28)));
    assert_eq!(status, 200);
}

#[test]
fn a_form_upload_is_read_as_its_file_and_a_cell_out_of_range_is_a_400_naming_the_range() {
    let dir = tempfile::tempdir().unwrap();
    let run = train_small(dir.path(), 1);
    let s = Served::start(&run, &["--data", "demo"]);
    let a = agent();
    let png = common_png(28, 28);
    let (status, raw) = answer(a.post(&s.at("api/predict")).send_bytes(&png));
    assert_eq!(status, 200, "{raw}");
    // As `curl -F note=hello -F image=@digit.png` sends it: a text field, then the file.
    let boundary = "------------------------d74496d66958873e";
    let mut form = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhello\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"image\"; \
         filename=\"digit.png\"\r\nContent-Type: image/png\r\n\r\n"
    )
    .into_bytes();
    form.extend_from_slice(&png);
    form.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let (status, body) = answer(
        a.post(&s.at("api/predict"))
            .set(
                "Content-Type",
                &format!("multipart/form-data; boundary={boundary}"),
            )
            .send_bytes(&form),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body)["probabilities"], json(&raw)["probabilities"]);
    // A body that is no image says how to send one.
    let (status, body) = answer(a.post(&s.at("api/predict")).send_string("image=digit.png"));
    assert_eq!(status, 400);
    assert!(
        json(&body)["error"]
            .as_str()
            .unwrap()
            .contains("curl --data-binary @digit.png"),
        "{body}"
    );
    // A confusion cell beyond the 10 classes.
    for query in ["truth=99&predicted=0", "truth=0&predicted=10"] {
        let (status, body) = answer(a.get(&s.at(&format!("api/misclassified?{query}"))).call());
        assert_eq!(status, 400, "{query}: {body}");
        let msg = json(&body)["error"].as_str().unwrap().to_string();
        assert!(
            msg.ends_with("is out of range: the model's classes are 0 to 9"),
            "{msg}"
        );
    }
    let (status, _) = answer(a.get(&s.at("api/misclassified?truth=9&predicted=0")).call());
    assert_eq!(status, 200);
}

/// A grey PNG of `w` x `h` with a diagonal stroke.
fn common_png(w: u32, h: u32) -> Vec<u8> {
    let img = image::GrayImage::from_fn(w, h, |x, y| image::Luma([if x == y { 255 } else { 0 }]));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

/// A PNG signature and an IHDR chunk claiming `w` x `h` grey pixels, with no image data.
fn png_header_only(w: u32, h: u32) -> Vec<u8> {
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 0, 0, 0, 0]);
    let crc = crc32(&ihdr);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend_from_slice(&13u32.to_be_bytes());
    png.extend_from_slice(&ihdr);
    png.extend_from_slice(&crc.to_be_bytes());
    png
}

/// CRC-32 (the PNG chunk checksum), bit by bit.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[test]
fn path_escapes_are_refused_even_encoded() {
    let dir = tempfile::tempdir().unwrap();
    let run = train_small(dir.path(), 1);
    let s = Served::start(&run, &[]);
    // Sent byte for byte: an HTTP client would resolve the dots itself.
    for target in [
        "/../Cargo.toml",
        "/../../../../etc/passwd",
        "/%2e%2e/Cargo.toml",
        "/%2e%2e/%2e%2e/etc/passwd",
        "/..%2fCargo.toml",
        "/..%2f..%2f..%2fetc%2fpasswd",
        "/api/..%2f..%2fCargo.toml",
        "/web/app.js",
        "/src/main.rs",
        "/%2fetc%2fpasswd",
        "//etc/passwd",
        "/app.js/../../Cargo.toml",
    ] {
        let (status, body) = raw_get(s.port, target);
        assert!((400..500).contains(&status), "{target}: {status} {body}");
        assert!(
            !body.contains("[package]") && !body.contains("root:"),
            "{target}: {body}"
        );
    }
    // And what the run folder holds is not served either.
    let (status, _) = raw_get(s.port, "/metrics.jsonl");
    assert_eq!(status, 404);
}

/// A prediction: (status, the probabilities' JSON text or the error, `x-cnn-batch`).
fn predict_batched(a: &ureq::Agent, url: &str, png: &[u8]) -> (u16, String, usize) {
    match a.post(url).send_bytes(png) {
        Ok(r) => {
            let batch = r
                .header("x-cnn-batch")
                .and_then(|v| v.parse().ok())
                .expect("an x-cnn-batch header");
            let p = json(&r.into_string().unwrap());
            (200, p["probabilities"].to_string(), batch)
        }
        Err(e) => {
            let (status, body) = answer(Err(e));
            (status, body, 0)
        }
    }
}

/// 16 clients send 125 predictions each at once: every one succeeds, the server gathers
/// requests that arrive together into one forward pass (the batch sizes of `x-cnn-batch` and
/// `/api/model`), and a batched answer equals, bit for bit, the answer for the same image
/// sent alone.
#[test]
fn two_thousand_predictions_over_16_connections_succeed_batched_as_alone() {
    let dir = tempfile::tempdir().unwrap();
    let run = train_small(dir.path(), 1);
    let s = Served::start(&run, &[]);
    let pngs: Vec<Vec<u8>> = demo_pngs(dir.path())
        .iter()
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    let url = s.at("api/predict");
    // One at a time first: each alone in its pass.
    let a = agent();
    let alone: Vec<String> = pngs
        .iter()
        .map(|png| {
            let (status, probs, batch) = predict_batched(&a, &url, png);
            assert_eq!((status, batch), (200, 1), "{probs}");
            probs
        })
        .collect();
    let (pngs, alone) = (Arc::new(pngs), Arc::new(alone));
    let ok = Arc::new(AtomicUsize::new(0));
    let largest = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let threads: Vec<_> = (0..16)
        .map(|t| {
            let (pngs, alone, url) = (Arc::clone(&pngs), Arc::clone(&alone), url.clone());
            let (ok, largest) = (Arc::clone(&ok), Arc::clone(&largest));
            std::thread::spawn(move || {
                // One agent per thread: its own keep-alive connection.
                let a = agent();
                for i in 0..125 {
                    let image = (t + i) % pngs.len();
                    let (status, probs, batch) = predict_batched(&a, &url, &pngs[image]);
                    assert_eq!(status, 200, "thread {t}, request {i}: {probs}");
                    assert_eq!(
                        probs, alone[image],
                        "image {image} in a batch of {batch} and alone"
                    );
                    largest.fetch_max(batch, Ordering::Relaxed);
                    ok.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("a client thread failed");
    }
    assert_eq!(ok.load(Ordering::Relaxed), 2000);
    let largest = largest.load(Ordering::Relaxed);
    eprintln!(
        "2000 predictions over 16 connections in {:?}, batches of up to {largest}",
        start.elapsed()
    );
    assert!((2..=16).contains(&largest), "batches of up to {largest}");
    let m = json(
        &a.get(&s.at("api/model"))
            .call()
            .unwrap()
            .into_string()
            .unwrap(),
    );
    let b = &m["batching"];
    assert_eq!(b["wait_ms"], 2.0);
    assert_eq!(b["max_batch"], 32);
    assert_eq!(b["workers"], 2);
    assert_eq!(b["images"], 2010);
    assert_eq!(b["largest"].as_u64(), Some(largest as u64));
    assert!(b["passes"].as_u64().unwrap() < 2010, "{b}");
}

/// `--batch-wait-ms 0` turns batching off: each prediction is a pass of its own, however
/// many arrive together; `--max-batch` caps a batch.
#[test]
fn no_wait_means_no_batching_and_max_batch_caps_a_batch() {
    let dir = tempfile::tempdir().unwrap();
    let run = train_small(dir.path(), 1);
    let png = Arc::new(common_png(28, 28));
    for (flags, most) in [(["--batch-wait-ms", "0"], 1), (["--max-batch", "3"], 3)] {
        let s = Served::start(&run, &flags);
        let url = s.at("api/predict");
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (png, url) = (Arc::clone(&png), url.clone());
                std::thread::spawn(move || {
                    let a = agent();
                    (0..30)
                        .map(|_| {
                            let (status, probs, batch) = predict_batched(&a, &url, &png);
                            assert_eq!(status, 200, "{probs}");
                            (probs, batch)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let answers: Vec<(String, usize)> = threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        assert!(answers.iter().all(|(p, _)| *p == answers[0].0), "{flags:?}");
        let largest = answers.iter().map(|a| a.1).max().unwrap();
        assert!(largest <= most, "{flags:?}: a batch of {largest}");
        let m = json(
            &agent()
                .get(&s.at("api/model"))
                .call()
                .unwrap()
                .into_string()
                .unwrap(),
        );
        assert_eq!(m["batching"]["images"], 240, "{flags:?}");
        assert!(m["batching"]["largest"].as_u64().unwrap() <= most as u64);
    }
}

/// The batcher's flags take numbers in range only: anything else is a usage error (exit 2)
/// naming the flag, before the model is read.
#[test]
fn batching_flags_out_of_range_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    for (flag, value, says) in [
        ("--max-batch", "0", "at least 1"),
        ("--max-batch", "-3", "must be positive"),
        ("--max-batch", "1025", "at most 1024"),
        ("--max-batch", "many", "expected a whole number"),
        (
            "--batch-wait-ms",
            "-1",
            "from 0 (no batching) to 1000 milliseconds",
        ),
        (
            "--batch-wait-ms",
            "1000.5",
            "from 0 (no batching) to 1000 milliseconds",
        ),
        (
            "--batch-wait-ms",
            "NaN",
            "from 0 (no batching) to 1000 milliseconds",
        ),
        (
            "--batch-wait-ms",
            "2ms",
            "expected a number of milliseconds",
        ),
        ("--workers", "0", "at least 1"),
        ("--workers", "65", "at most 64"),
    ] {
        let out = Command::new(BIN)
            .arg("serve")
            .arg(dir.path())
            .args([flag, value])
            .output()
            .unwrap();
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(out.status.code(), Some(2), "{flag} {value}: {err}");
        assert!(
            err.contains(flag) && err.contains(says),
            "{flag} {value}: {err}"
        );
    }
}

/// Reads server-sent events from `url` in a thread; each `event: epoch` message's data is
/// sent on the channel.
fn listen(url: String) -> std::sync::mpsc::Receiver<(String, String)> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let resp = agent().get(&url).call().unwrap();
        assert_eq!(resp.content_type(), "text/event-stream");
        let mut event = String::new();
        for line in BufReader::new(resp.into_reader()).lines() {
            let Ok(line) = line else { return };
            if let Some(e) = line.strip_prefix("event:") {
                event = e.trim().to_string();
            } else if let Some(d) = line.strip_prefix("data:") {
                if tx.send((event.clone(), d.trim().to_string())).is_err() {
                    return;
                }
            }
        }
    });
    rx
}

#[test]
fn metrics_and_events_grow_and_the_model_reloads_while_a_run_trains() {
    let dir = tempfile::tempdir().unwrap();
    let run = train_small(dir.path(), 1);
    let s = Served::start(&run, &[]);
    let a = agent();
    let epochs = |a: &ureq::Agent| -> Vec<Value> {
        json(
            &a.get(&s.at("api/metrics"))
                .call()
                .unwrap()
                .into_string()
                .unwrap(),
        )
        .as_array()
        .unwrap()
        .clone()
    };
    assert_eq!(epochs(&a).len(), 1);
    let version = |a: &ureq::Agent| {
        json(
            &a.get(&s.at("api/model"))
                .call()
                .unwrap()
                .into_string()
                .unwrap(),
        )["version"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(version(&a), 1);
    let events = listen(s.at("api/events"));
    // The run goes on for two more epochs, writing into the folder being served.
    let out = Command::new(BIN)
        .arg("train")
        .arg("--resume")
        .arg(&run)
        .args(["--epochs", "3"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while got.len() < 2 && Instant::now() < deadline {
        if let Ok((event, data)) = events.recv_timeout(Duration::from_millis(200)) {
            assert_eq!(event, "epoch");
            got.push(json(&data));
        }
    }
    let on_disk: Vec<Value> = std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(json)
        .collect();
    assert_eq!(on_disk.len(), 3);
    assert_eq!(
        got,
        on_disk[1..],
        "one message per new epoch, as metrics.jsonl has them"
    );
    assert_eq!(epochs(&a), on_disk);
    // The model file changed under the server: it serves the new one.
    assert!(version(&a) > 1);
    // Nothing was written into the run folder by the server.
    let names: Vec<String> = std::fs::read_dir(&run)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(names.is_empty(), "{names:?}");
}

#[test]
fn with_data_the_confusion_matrix_equals_cnn_evaluates_and_its_cells_give_their_images() {
    let dir = tempfile::tempdir().unwrap();
    let run = train_small(dir.path(), 1);
    let model = run.join("model.safetensors");
    let out = Command::new(BIN)
        .arg("evaluate")
        .arg(&model)
        .arg("--json")
        .output()
        .unwrap();
    assert!(out.status.success());
    let eval = json(&String::from_utf8(out.stdout).unwrap());
    let s = Served::start(&run, &["--data", "demo"]);
    let a = agent();
    let cm = json(
        &a.get(&s.at("api/confusion"))
            .call()
            .unwrap()
            .into_string()
            .unwrap(),
    );
    let k = 10;
    let flat: Vec<u64> = cm["counts"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|row| row.as_array().unwrap().iter().map(|v| v.as_u64().unwrap()))
        .collect();
    let want: Vec<u64> = eval["confusion_matrix"]["counts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(flat, want);
    assert_eq!(cm["images"], eval["images"]);
    assert!((cm["accuracy"].as_f64().unwrap() - eval["accuracy"].as_f64().unwrap()).abs() < 1e-12);
    // The largest off-diagonal cell: its images, as many as it counts.
    let (cell, &n) = flat
        .iter()
        .enumerate()
        .filter(|(i, _)| i / k != i % k)
        .max_by_key(|(_, &n)| n)
        .unwrap();
    assert!(n > 0, "a model after one epoch makes mistakes");
    let (t, p) = (cell / k, cell % k);
    let images = json(
        &a.get(&s.at(&format!(
            "api/misclassified?truth={t}&predicted={p}&limit=500"
        )))
        .call()
        .unwrap()
        .into_string()
        .unwrap(),
    );
    assert_eq!(images["total"].as_u64().unwrap(), n);
    assert_eq!(images["images"].as_array().unwrap().len() as u64, n);
    assert_eq!(images["images"][0]["pixels"].as_array().unwrap().len(), 784);
}

#[test]
fn ctrl_c_stops_the_server_cleanly_even_with_an_event_stream_open() {
    let dir = tempfile::tempdir().unwrap();
    let run = train_small(dir.path(), 1);
    let mut s = Served::start(&run, &[]);
    let _events = listen(s.at("api/events"));
    std::thread::sleep(Duration::from_millis(300));
    let pid = s.child.id() as libc::pid_t;
    // SAFETY: signals our own child process, which is still running.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(st) = s.child.try_wait().unwrap() {
            break st;
        }
        assert!(
            Instant::now() < deadline,
            "cnn serve did not stop within 10 s of Ctrl-C"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(130));
    let mut err = String::new();
    s.child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(err.trim(), "cnn serve: stopped by Ctrl-C");
}

#[test]
fn a_path_that_is_no_run_folder_or_model_is_a_one_line_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nowhere");
    let out = Command::new(BIN)
        .arg("serve")
        .arg(&missing)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("error: ") && err.contains("no such file or folder"),
        "{err}"
    );
    // An empty folder is no run folder.
    let out = Command::new(BIN)
        .arg("serve")
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("holds no model.safetensors or checkpoint.safetensors"),
        "{err}"
    );
    // A file that is no model.
    let junk = dir.path().join("junk.safetensors");
    std::fs::write(&junk, "not a model").unwrap();
    let out = Command::new(BIN).arg("serve").arg(&junk).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("junk.safetensors"), "{err}");
}

#[test]
fn a_port_in_use_is_a_usage_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let run = train_small(dir.path(), 1);
    let s = Served::start(&run, &[]);
    let out = Command::new(BIN)
        .arg("serve")
        .arg(&run)
        .args(["--port", &s.port.to_string()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains(&format!("cannot listen on 127.0.0.1:{}", s.port)),
        "{err}"
    );
}

/// A graph network: `/api/model` says which layers each layer reads (a Shortcut the line
/// above and its `from`, a Route the layers it names), and `?layers=1` gives what the page
/// explains a cell from: a Shortcut's output is act(a + b) of the two outputs it reads, a
/// one-layer Route's output is the layer it names, value for value.
#[test]
fn a_graph_networks_layers_say_what_they_read_and_a_shortcut_adds_them() {
    let dir = tempfile::tempdir().unwrap();
    let run = train_resnet(dir.path());
    let s = Served::start(&run, &[]);
    let a = agent();
    let m = json(
        &a.get(&s.at("api/model"))
            .call()
            .unwrap()
            .into_string()
            .unwrap(),
    );
    let layers = m["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 23);
    let reads = |i: usize| -> Vec<Value> { layers[i]["reads"].as_array().unwrap().clone() };
    assert_eq!(reads(0), [Value::Null], "the first layer reads the input");
    assert_eq!(reads(3), [2]);
    for (i, expected) in [(7, vec![6, 2]), (15, vec![14, 11]), (20, vec![19, 15])] {
        assert_eq!(layers[i]["kind"], "Shortcut");
        assert_eq!(layers[i]["activation"], "relu");
        assert_eq!(reads(i), expected, "layer {i}");
    }
    assert_eq!(layers[12]["kind"], "Route");
    assert_eq!(reads(12), [7]);
    assert_eq!(reads(13), [12], "the projection reads the Route");

    let png = std::fs::read(&demo_pngs(dir.path())[0]).unwrap();
    let (status, body) = answer(a.post(&s.at("api/predict?layers=1")).send_bytes(&png));
    assert_eq!(status, 200, "{body}");
    let p = json(&body);
    let values = |i: usize| -> Vec<f32> {
        p["layers"][i]["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect()
    };
    for (i, [x, y]) in [(7, [6, 2]), (15, [14, 11]), (20, [19, 15])] {
        let (out, a, b) = (values(i), values(x), values(y));
        assert_eq!(out.len(), a.len());
        assert!(out.iter().any(|&v| v > 0.0) && out.iter().all(|&v| v >= 0.0));
        for (j, ((o, a), b)) in out.iter().zip(&a).zip(&b).enumerate() {
            let z = (a + b).max(0.0);
            assert!(
                (o - z).abs() <= 1e-6 * z.abs().max(1.0),
                "layer {i}[{j}]: {o} is not relu({a} + {b})"
            );
        }
    }
    assert_eq!(values(12), values(7), "the Route passes layer 7 on");
}
